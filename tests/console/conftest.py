"""Fixtures for the console's browser tests: one `tidepool serve` with API keys (a read-write
and a read-only key of one project), a file:// sync remote and, when installed, the local
model; seeded namespaces; Debian's chromium driven by Playwright; a page per test that fails
the test on any browser console error or uncaught exception and leaves a screenshot.

Run through tests/console/run.sh (installs chromium and Playwright, builds the daemon).
`TIDEPOOL_BIN` overrides the daemon binary, `CHROMIUM` the browser. Screenshots go to
target/console-artifacts/ (`CONSOLE_ARTIFACTS` overrides).
"""

from __future__ import annotations

import json
import os
import pathlib
import random
import re
import subprocess
import threading
import urllib.request
from typing import Iterator, List

import pytest
from playwright.sync_api import Page, sync_playwright

ROOT = pathlib.Path(__file__).resolve().parents[2]
BIN = pathlib.Path(os.environ.get("TIDEPOOL_BIN") or ROOT / "target" / "debug" / "tidepool")
CHROMIUM = os.environ.get("CHROMIUM", "/usr/bin/chromium")
ARTIFACTS = pathlib.Path(os.environ.get("CONSOLE_ARTIFACTS") or ROOT / "target" / "console-artifacts")
MODEL_DIR = pathlib.Path(os.environ.get("TIDEPOOL_TEST_MODELS") or ROOT / "target" / "test-models") / "all-minilm-l6-v2"
RW_KEY, RO_KEY = "console-rw-key", "console-ro-key"
DIMS, ROWS = 16, 240
CATEGORIES = ["tools", "games", "science", "network", "audio"]
LISTENING = re.compile(r"listening on (http://\S+)")


def vector_of(i: int) -> List[float]:
    """The stored vector of document `i` (deterministic)."""
    rng = random.Random(i)
    return [round(rng.uniform(-1, 1), 4) for _ in range(DIMS)]


def category_of(i: int) -> str:
    return CATEGORIES[i % len(CATEGORIES)]


def description_of(i: int) -> str:
    words = ["fast", "small", "library", "daemon", "editor", "player", "tool", "viewer", "parser", "server"]
    rng = random.Random(1000 + i)
    return " ".join(rng.choice(words) for _ in range(8)) + f" marker{i}"


class Node:
    """The daemon and a tiny JSON client for seeding."""

    def __init__(self, url: str) -> None:
        self.url = url

    def call(self, method: str, path: str, body=None, key: str = RW_KEY):
        data = None if body is None else json.dumps(body).encode()
        req = urllib.request.Request(self.url + path, data=data, method=method)
        req.add_header("authorization", f"Bearer {key}")
        if data is not None:
            req.add_header("content-type", "application/json")
        with urllib.request.urlopen(req, timeout=60) as resp:
            return json.loads(resp.read() or b"{}")


def start_daemon(tmp: pathlib.Path, extra: List[str]):
    """`tidepool serve` on 127.0.0.1:0 with a data dir in `tmp`; (process, url, log file)."""
    if not BIN.exists():
        pytest.fail(f"daemon binary {BIN} is missing; run tests/console/run.sh")
    args = [str(BIN), "serve", "--data-dir", str(tmp / "data"), "--listen", "127.0.0.1:0"] + extra
    env = {k: v for k, v in os.environ.items() if not k.startswith("TIDEPOOL_")}
    log = open(tmp / "daemon.log", "w", encoding="utf-8")
    proc = subprocess.Popen(args, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=log, text=True, env=env)
    url = None
    for line in proc.stdout:
        m = LISTENING.search(line)
        if m:
            url = m.group(1)
            break
    if url is None:
        pytest.fail(f"the daemon did not start: {(tmp / 'daemon.log').read_text()[-3000:]}")
    threading.Thread(target=lambda: [None for _ in proc.stdout], daemon=True).start()
    return proc, url, log


def stop_daemon(proc, log) -> None:
    proc.terminate()
    proc.wait(timeout=30)
    log.close()


@pytest.fixture(scope="session")
def node(tmp_path_factory) -> Iterator[Node]:
    """The daemon with keys, sync and (when installed) the model, seeded."""
    tmp = tmp_path_factory.mktemp("console")
    cfg = tmp / "tidepool.toml"
    cfg.write_text(
        f'[[api_keys]]\nkey = "{RW_KEY}"\norg = "acme"\nproject = "edge"\n\n'
        f'[[api_keys]]\nkey = "{RO_KEY}"\norg = "acme"\nproject = "edge"\nread_only = true\n'
    )
    extra = ["--config", str(cfg), "--sync-remote", f"file://{tmp / 'remote'}", "--sync-interval-secs", "1"]
    if has_model():
        extra += ["--model", f"minilm={MODEL_DIR}"]
    proc, url, log = start_daemon(tmp, extra)
    n = Node(url)
    seed(n)
    yield n
    stop_daemon(proc, log)


@pytest.fixture(scope="session")
def open_node(tmp_path_factory) -> Iterator[Node]:
    """A daemon in the open loopback mode (no keys), with one namespace."""
    proc, url, log = start_daemon(tmp_path_factory.mktemp("console-open"), [])
    n = Node(url)
    n.call("POST", "/v2/namespaces/local", {"upsert_rows": [{"id": 1, "body": "works without a key"}],
                                            "schema": {"body": {"type": "string", "full_text_search": True}}})
    yield n
    stop_daemon(proc, log)


def seed(n: Node) -> None:
    rows = [{"id": i, "vector": vector_of(i), "description": description_of(i), "category": category_of(i),
             "price": i * 3 % 100} for i in range(ROWS)]
    schema = {"description": {"type": "string", "full_text_search": True}}
    n.call("POST", "/v2/namespaces/products", {"upsert_rows": rows, "distance_metric": "cosine_distance", "schema": schema})
    n.call("POST", "/v1/namespaces/products/_admin/compact")
    n.call("POST", "/v2/namespaces/notes", {"upsert_rows": [{"id": "a", "body": "offline first"}],
                                            "schema": {"body": {"type": "string", "full_text_search": True}}})
    n.call("PATCH", "/v1/namespaces/notes/metadata", {"labels": {"team": "docs"}, "pinning": True})
    n.call("POST", "/v1/namespaces/products-branch/_admin/copy", {"source_namespace": "products", "branch": True})


def has_model() -> bool:
    return (MODEL_DIR / "model.safetensors").is_file()


@pytest.fixture(scope="session")
def browser():
    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox", "--disable-gpu"])
        yield b
        b.close()


class ConsolePage:
    """A browser tab on the console with the errors it logged."""

    def __init__(self, page: Page, node: Node) -> None:
        self.page = page
        self.node = node
        self.errors: List[str] = []
        page.on("console", lambda m: self.errors.append(f"console.{m.type}: {m.text}") if m.type == "error" else None)
        page.on("pageerror", lambda e: self.errors.append(f"uncaught: {e}"))
        page.on("requestfailed", lambda r: self.errors.append(f"request failed: {r.url} {r.failure}"))

    def open(self, hash_path: str = "#/", key: str = RW_KEY) -> Page:
        """Open the console with `key` already in the tab's session storage."""
        self.page.add_init_script(f"sessionStorage.setItem('tidepool.key', {json.dumps(key)})")
        self.page.goto(f"{self.node.url}/console{hash_path}")
        return self.page

    def shot(self, name: str) -> None:
        ARTIFACTS.mkdir(parents=True, exist_ok=True)
        self.page.screenshot(path=str(ARTIFACTS / f"{name}.png"), full_page=True)


@pytest.fixture
def console(browser, node, request) -> Iterator[ConsolePage]:
    ctx = browser.new_context(viewport={"width": 1280, "height": 860})
    page = ctx.new_page()
    page.set_default_timeout(15_000)
    c = ConsolePage(page, node)
    yield c
    c.shot(f"{request.node.name}-end")
    ctx.close()
    assert c.errors == [], f"the browser logged errors: {c.errors}"
