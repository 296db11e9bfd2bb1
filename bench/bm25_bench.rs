//! BM25 benchmark: tidepool's text index against tantivy on the Debian corpus.
//!
//! Builds one title and one body index (tantivy's `en_stem` analysis: stemming on,
//! no stop words, 39-byte token cap) over `docs.jsonl` as one segment, runs the 500
//! dev title queries (lowercased, non-alphanumerics → spaces, OR of terms over both
//! fields, per-field BM25 k1 = 1.2, b = 0.75 summed, exactly `parse_query(q, ["title",
//! "body"])`), and reports:
//! * top-10 overlap with `queries/tantivy_top10.jsonl` (and with the live peer);
//! * the largest score difference on docs both rankings return;
//! * known-item hit@10 / MRR@10 of `target_id`;
//! * single-thread queries per second (analysis + global stats + pruned top-10),
//!   next to tantivy's (parse + search, timed by `bench/tantivy_peer.py` in the same run).
//!
//! Usage: `bash bench/peers.sh && CARGO_TARGET_DIR=target/bench cargo run --profile profiling --example
//! bm25_bench -- [--data DIR] [--rounds N] [--no-peer]`.
//! Every figure is a best-of-`rounds` wall-clock measurement; nothing here is asserted.

use std::collections::{HashMap, HashSet};
use std::time::Instant;

use tidepool::index::text::{
    search_fields, search_fields_exhaustive, Analyzer, Bm25Params, CorpusStats, FieldQuery, TextIndex,
    TextIndexBuilder,
};
use tidepool::schema::FullTextSearch;

struct Query {
    qid: String,
    text: String,
    target: String,
}

fn read_lines(path: &str) -> Vec<serde_json::Value> {
    let s = std::fs::read_to_string(path).unwrap_or_else(|e| panic!("read {path}: {e}"));
    s.lines().filter(|l| !l.trim().is_empty()).map(|l| serde_json::from_str(l).expect("json line")).collect()
}

/// CPU time of this thread in ns (`/proc/thread-self/schedstat`, first field); 0 if unavailable.
fn thread_cpu_ns() -> u64 {
    std::fs::read_to_string("/proc/thread-self/schedstat")
        .ok()
        .and_then(|s| s.split_whitespace().next().and_then(|x| x.parse().ok()))
        .unwrap_or(0)
}

fn query_text(title: &str) -> String {
    title.to_lowercase().chars().map(|c| if c.is_alphanumeric() { c } else { ' ' }).collect()
}

fn main() {
    let mut data = String::from("../shared/data/debian");
    let mut rounds = 5usize;
    let mut peer = true;
    let mut profile = false;
    let mut args = std::env::args().skip(1);
    while let Some(a) = args.next() {
        match a.as_str() {
            "--data" => data = args.next().expect("--data DIR"),
            "--rounds" => rounds = args.next().and_then(|x| x.parse().ok()).expect("--rounds N"),
            "--no-peer" => peer = false,
            "--profile" => profile = true,
            other => panic!("unknown argument {other}"),
        }
    }

    // Corpus.
    let docs = read_lines(&format!("{data}/docs.jsonl"));
    let ids: Vec<String> = docs.iter().map(|d| d["id"].as_str().expect("id").to_owned()).collect();
    // tantivy's tokenizer splits on non-alphanumeric characters: word_v3.
    let opts = FullTextSearch {
        tokenizer: "word_v3".into(),
        stemming: true,
        remove_stopwords: false,
        ..FullTextSearch::default()
    };
    let t0 = Instant::now();
    let mut tb = TextIndexBuilder::new("title", &opts);
    let mut bb = TextIndexBuilder::new("body", &opts);
    for (row, d) in docs.iter().enumerate() {
        tb.add(row as u32, d["title"].as_str().unwrap_or(""));
        bb.add(row as u32, d["body"].as_str().unwrap_or(""));
    }
    let (title_bytes, body_bytes) = (tb.finish(), bb.finish());
    let build_s = t0.elapsed().as_secs_f64();
    let title = TextIndex::open(&title_bytes).expect("open title");
    let body = TextIndex::open(&body_bytes).expect("open body");

    // Queries and reference.
    let queries: Vec<Query> = read_lines(&format!("{data}/queries/queries.jsonl"))
        .iter()
        .map(|q| Query {
            qid: q["qid"].to_string().trim_matches('"').to_owned(),
            text: query_text(q["text"].as_str().expect("text")),
            target: q["target_id"].as_str().expect("target").to_owned(),
        })
        .collect();
    let mut reference: HashMap<String, (Vec<String>, Vec<f64>)> = HashMap::new();
    for r in read_lines(&format!("{data}/queries/tantivy_top10.jsonl")) {
        let qid = r["qid"].to_string().trim_matches('"').to_owned();
        let rid =
            r["ids"].as_array().expect("ids").iter().map(|x| x.as_str().unwrap_or("").to_owned()).collect();
        let sc = r["scores"].as_array().expect("scores").iter().map(|x| x.as_f64().unwrap_or(0.0)).collect();
        reference.insert(qid, (rid, sc));
    }

    let analyzer = Analyzer::new(&opts);
    let params = Bm25Params::from_options(&opts);
    let run = |q: &Query, exhaustive: bool| -> Vec<(u32, f32)> {
        let terms = analyzer.query_terms(&q.text);
        let (mut st, mut sb) = (CorpusStats::default(), CorpusStats::default());
        st.add_index(&title, &terms);
        sb.add_index(&body, &terms);
        let fq =
            [FieldQuery::plain(&title, &terms, &st, params), FieldQuery::plain(&body, &terms, &sb, params)];
        if exhaustive {
            search_fields_exhaustive(&fq, 10, None).expect("search")
        } else {
            search_fields(&fq, 10, None).expect("search")
        }
    };

    if profile {
        // Pruned queries only, for a profiler.
        let t = Instant::now();
        let mut sink = 0usize;
        for _ in 0..rounds {
            for q in &queries {
                sink += run(q, false).len();
            }
        }
        println!("{sink} rows, {:.0} QPS", (rounds * queries.len()) as f64 / t.elapsed().as_secs_f64());
        return;
    }

    // Quality.
    let mut ours: HashMap<String, Vec<String>> = HashMap::new();
    let (mut overlap, mut mrr, mut hit, mut max_diff, mut same_as_exhaustive) =
        (0f64, 0f64, 0usize, 0f64, 0usize);
    let mut exact_order = 0usize;
    for q in &queries {
        let res = run(q, false);
        if res == run(q, true) {
            same_as_exhaustive += 1;
        }
        let got: Vec<String> = res.iter().map(|(r, _)| ids[*r as usize].clone()).collect();
        if let Some((rid, rsc)) = reference.get(&q.qid) {
            let rs: HashSet<&String> = rid.iter().collect();
            overlap += got.iter().filter(|g| rs.contains(g)).count() as f64 / rid.len().max(1) as f64;
            if got == *rid {
                exact_order += 1;
            }
            for (i, id) in rid.iter().enumerate() {
                if let Some(p) = got.iter().position(|g| g == id) {
                    let d = (f64::from(res[p].1) - rsc[i]).abs();
                    if d > 1e-3 && std::env::var_os("BM25_DEBUG").is_some() {
                        eprintln!("qid {} {:?} id {id}: ours {} tantivy {}", q.qid, q.text, res[p].1, rsc[i]);
                    }
                    max_diff = max_diff.max(d);
                }
            }
        }
        if let Some(p) = got.iter().position(|g| *g == q.target) {
            hit += 1;
            mrr += 1.0 / (p + 1) as f64;
        }
        ours.insert(q.qid.clone(), got);
    }
    let n = queries.len() as f64;

    // Speed (single thread, best of `rounds`): wall clock and this thread's CPU time.
    let time = |exhaustive: bool| {
        let (mut best, mut best_cpu) = (f64::INFINITY, f64::INFINITY);
        for _ in 0..rounds {
            let t = Instant::now();
            let c = thread_cpu_ns();
            let mut sink = 0usize;
            for q in &queries {
                sink += run(q, exhaustive).len();
            }
            std::hint::black_box(sink);
            best_cpu = best_cpu.min((thread_cpu_ns().saturating_sub(c)) as f64 / 1e9);
            best = best.min(t.elapsed().as_secs_f64());
        }
        (n / best, n / best_cpu)
    };
    let (qps, qps_cpu) = time(false);
    let (qps_exh, _) = time(true);

    println!(
        "corpus: {} docs, {} title terms, {} body terms",
        ids.len(),
        title.num_terms(),
        body.num_terms()
    );
    println!(
        "build: {build_s:.2} s (title {} KiB, body {} KiB)",
        title_bytes.len() / 1024,
        body_bytes.len() / 1024
    );
    println!("queries: {}", queries.len());
    println!("top-10 overlap with tantivy_top10.jsonl: {:.4}", overlap / n);
    println!("identical top-10 lists (ids and order): {exact_order}/{}", queries.len());
    println!("max |score - tantivy score| on shared docs: {max_diff:.2e}");
    println!("pruned == exhaustive (ids and scores): {same_as_exhaustive}/{}", queries.len());
    println!("known-item hit@10 {:.3}  MRR@10 {:.4}", hit as f64 / n, mrr / n);
    println!("tidepool QPS (block-max MaxScore): wall {qps:.0}, cpu {qps_cpu:.0}");
    println!("tidepool QPS (exhaustive scoring): {qps_exh:.0}");

    if peer {
        let py = "target/bench-venv/bin/python";
        if !std::path::Path::new(py).exists() {
            println!("peer: {py} missing; run `bash bench/peers.sh` (or pass --no-peer)");
            return;
        }
        let out = std::process::Command::new(py)
            .args(["bench/tantivy_peer.py", &data, &rounds.to_string()])
            .output()
            .expect("run tantivy peer");
        if !out.status.success() {
            println!("peer failed: {}", String::from_utf8_lossy(&out.stderr));
            return;
        }
        let v: serde_json::Value = serde_json::from_slice(&out.stdout).expect("peer json");
        let tq = v["qps"].as_f64().unwrap_or(0.0);
        let tq_cpu = v["qps_cpu"].as_f64().unwrap_or(0.0);
        let mut live = 0f64;
        if let Some(t) = v["top10"].as_object() {
            for (qid, list) in t {
                let theirs: HashSet<&str> = list
                    .as_array()
                    .map(|a| a.iter().filter_map(|x| x.as_str()).collect())
                    .unwrap_or_default();
                if let Some(mine) = ours.get(qid) {
                    live += mine.iter().filter(|m| theirs.contains(m.as_str())).count() as f64
                        / theirs.len().max(1) as f64;
                }
            }
        }
        println!(
            "tantivy {}: build {:.2} s, QPS wall {:.0} cpu {tq_cpu:.0}, hit@10 {:.3}, MRR@10 {:.4}, overlap with reference file {:.4}",
            v["version"].as_str().unwrap_or("?"),
            v["build_s"].as_f64().unwrap_or(0.0),
            tq,
            v["hit10"].as_f64().unwrap_or(0.0),
            v["mrr10"].as_f64().unwrap_or(0.0),
            v["overlap_ref"].as_f64().unwrap_or(0.0),
        );
        println!(
            "tantivy QPS with queries parsed beforehand (search only): {:.0}",
            v["qps_preparsed"].as_f64().unwrap_or(0.0)
        );
        println!("top-10 overlap with the live tantivy run: {:.4}", live / n);
        println!(
            "QPS ratio tidepool / tantivy: cpu {:.2}, wall {:.2} (wall vs search-only: {:.2})",
            qps_cpu / tq_cpu.max(1e-9),
            qps / tq.max(1e-9),
            qps / v["qps_preparsed"].as_f64().unwrap_or(0.0).max(1e-9)
        );
    }
}
