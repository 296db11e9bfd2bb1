// LangChain.js's TurbopufferVectorStore (@langchain/community, which still speaks turbopuffer's
// legacy v1 vectors API) against a local `tidepool serve`: add, similarity search (with scores
// and a filter), delete. Run by tests/sdk/js/run.sh with node's test runner; TIDEPOOL_BIN names
// the daemon binary, started here on 127.0.0.1:0 with a fresh data directory.
import { test, before, after } from "node:test";
import assert from "node:assert/strict";
import { spawn } from "node:child_process";
import { mkdtempSync, openSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { createInterface } from "node:readline";

import { Embeddings } from "@langchain/core/embeddings";
import { TurbopufferVectorStore } from "@langchain/community/vectorstores/turbopuffer";

const API_KEY = "local-dev";
const DIM = 16;

/** Deterministic embeddings: character trigram counts hashed into DIM buckets. */
class TrigramEmbeddings extends Embeddings {
  constructor() {
    super({});
  }
  embed(text) {
    const v = new Array(DIM).fill(0);
    const s = `  ${text.toLowerCase()} `;
    for (let i = 0; i + 3 <= s.length; i++) {
      let h = 0;
      for (const c of s.slice(i, i + 3)) h = (h * 31 + c.charCodeAt(0)) >>> 0;
      v[h % DIM] += 1;
    }
    return v;
  }
  async embedDocuments(texts) {
    return texts.map((t) => this.embed(t));
  }
  async embedQuery(text) {
    return this.embed(text);
  }
}

let daemon;
let dataDir;
let apiUrl;

before(async () => {
  const bin = process.env.TIDEPOOL_BIN;
  assert.ok(bin, "TIDEPOOL_BIN must name the tidepool binary");
  dataDir = mkdtempSync(join(tmpdir(), "tidepool-js-"));
  // The daemon's log goes to a file (DAEMON_LOG, else beside its data) so the TAP output stays clean.
  const log = openSync(process.env.DAEMON_LOG ?? join(dataDir, "daemon.log"), "a");
  daemon = spawn(bin, ["serve", "--data-dir", join(dataDir, "data"), "--listen", "127.0.0.1:0"], {
    stdio: ["ignore", "pipe", log],
  });
  const url = await new Promise((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error("the daemon did not start within 60 s")), 60_000);
    createInterface({ input: daemon.stdout }).on("line", (line) => {
      const m = line.match(/listening on (http:\/\/\S+)/);
      if (m) {
        clearTimeout(timer);
        resolve(m[1]);
      }
    });
    daemon.on("exit", (code) => reject(new Error(`the daemon exited with ${code}`)));
  });
  apiUrl = `${url.replace(/\/$/, "")}/v1`;
});

after(() => {
  daemon?.kill("SIGTERM");
  if (dataDir) rmSync(dataDir, { recursive: true, force: true });
});

function store(namespace) {
  return new TurbopufferVectorStore(new TrigramEmbeddings(), { apiKey: API_KEY, namespace, apiUrl });
}

const docs = [
  { pageContent: "the quick brown fox", metadata: { source: "fox.txt" } },
  { pageContent: "a lazy sleeping dog", metadata: { source: "dog.txt" } },
  { pageContent: "purple ocean waves", metadata: { source: "sea.txt", topic: "water" } },
];

test("addDocuments then similaritySearch finds the nearest document with its metadata", async () => {
  const s = store(`js-add-search-${process.pid}`);
  const ids = await s.addDocuments(docs);
  assert.equal(ids.length, 3);
  const [hit] = await s.similaritySearch("the quick brown fox", 1);
  assert.equal(hit.pageContent, "the quick brown fox");
  // A metadata key another document of the batch has is sent as null: no value, not returned.
  assert.deepEqual(hit.metadata, { source: "fox.txt" });
});

test("similaritySearchWithScore orders by distance and a v1 filter narrows", async () => {
  const s = store(`js-scores-${process.pid}`);
  await s.addDocuments(docs);
  const scored = await s.similaritySearchWithScore("purple ocean waves", 3);
  assert.equal(scored.length, 3);
  assert.equal(scored[0][0].pageContent, "purple ocean waves");
  const dists = scored.map(([, d]) => d);
  assert.deepEqual([...dists].sort((a, b) => a - b), dists);
  const filtered = await s.similaritySearch("purple ocean waves", 3, { source: ["Eq", "dog.txt"] });
  assert.deepEqual(filtered.map((d) => d.pageContent), ["a lazy sleeping dog"]);
});

test("addVectors with caller ids replaces by id", async () => {
  const s = store(`js-ids-${process.pid}`);
  const e = new TrigramEmbeddings();
  const first = { pageContent: "first", metadata: {} };
  const second = { pageContent: "second", metadata: {} };
  await s.addVectors([await e.embedQuery("first")], [first], { ids: ["doc-1"] });
  await s.addVectors([await e.embedQuery("first")], [second], { ids: ["doc-1"] });
  const hits = await s.similaritySearch("first", 5);
  assert.deepEqual(hits.map((d) => d.pageContent), ["second"]);
});

test("delete({deleteIndex: true}) deletes the namespace", async () => {
  const s = store(`js-delete-${process.pid}`);
  await s.addDocuments(docs);
  await s.delete({ deleteIndex: true });
  await assert.rejects(s.similaritySearch("fox", 1), /Response status 404/);
});
