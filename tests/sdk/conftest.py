"""Fixtures for the real-client suite: a `tidepool serve` daemon and an official SDK client.

The daemon is started once per session on 127.0.0.1:0 with a fresh data directory; the
port is read from its `listening on http://ADDR` stdout line. Every test works in its own
uniquely named namespaces, so tests do not see each other's data. The daemon's stderr is
kept in a log file whose tail is shown when it fails to start or dies.

Run through tests/sdk/run.sh (builds the daemon first), or directly with
`target/sdk-venv/bin/python -m pytest -q tests/sdk` after `cargo build --bin tidepool`.
`TIDEPOOL_BIN` overrides the daemon binary.
"""

from __future__ import annotations

import os
import pathlib
import queue
import re
import signal
import subprocess
import threading
import uuid
from typing import Iterator, List, Optional

import pytest

# The SDK raises if a region is set together with a custom base_url (see the reference, section 2).
for _var in ("TURBOPUFFER_REGION", "TURBOPUFFER_BASE_URL", "TURBOPUFFER_API_KEY", "TURBOPUFFER_CUSTOM_HEADERS"):
    os.environ.pop(_var, None)

import turbopuffer  # noqa: E402  (imported after the environment is cleaned)

ROOT = pathlib.Path(__file__).resolve().parents[2]
BIN = pathlib.Path(os.environ.get("TIDEPOOL_BIN") or ROOT / "target" / "debug" / "tidepool")
API_KEY = "local-dev"
START_TIMEOUT_S = 60.0
STOP_TIMEOUT_S = 20.0
LISTENING = re.compile(r"listening on (http://\S+)")
# The local embedding model (scripts/models.sh installs it; scripts/test.sh runs that first). The
# session's daemon serves it as "minilm" when it is installed; test_embed.py fails without it.
MODEL_DIR = pathlib.Path(os.environ.get("TIDEPOOL_TEST_MODELS") or ROOT / "target" / "test-models") / "all-minilm-l6-v2"


class Daemon:
    """One `tidepool serve` process on a data directory; can be stopped and started again."""

    def __init__(self, data_dir: pathlib.Path, log_path: pathlib.Path) -> None:
        self.data_dir = data_dir
        self.log_path = log_path
        self.proc: Optional[subprocess.Popen[str]] = None
        self.url: Optional[str] = None
        self.stdout_lines: List[str] = []

    def start(self) -> str:
        if not BIN.exists():
            pytest.fail(f"daemon binary {BIN} is missing; run `cargo build --bin tidepool` (run.sh does)")
        self.data_dir.mkdir(parents=True, exist_ok=True)
        log = open(self.log_path, "a", encoding="utf-8")
        env = dict(os.environ)
        env.setdefault("RUST_LOG", "info")
        env.setdefault("RUST_BACKTRACE", "1")
        self.proc = subprocess.Popen(
            [str(BIN), "serve", "--data-dir", str(self.data_dir), "--listen", "127.0.0.1:0"]
            + (["--model", f"minilm={MODEL_DIR}"] if (MODEL_DIR / "model.safetensors").is_file() else []),
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=log,
            text=True,
            env=env,
        )
        log.close()
        found: "queue.Queue[Optional[str]]" = queue.Queue()

        def pump(stream) -> None:  # keeps draining stdout so the daemon never blocks on it
            announced = False
            for line in stream:
                self.stdout_lines.append(line.rstrip("\n"))
                m = LISTENING.search(line)
                if m and not announced:
                    announced = True
                    found.put(m.group(1))
            if not announced:
                found.put(None)

        threading.Thread(target=pump, args=(self.proc.stdout,), daemon=True).start()
        try:
            url = found.get(timeout=START_TIMEOUT_S)
        except queue.Empty:
            url = None
        if url is None:
            self.stop()
            pytest.fail(
                f"tidepool serve did not print 'listening on http://ADDR' within {START_TIMEOUT_S:.0f}s "
                f"(exit code {self.proc.returncode}).\nstdout: {self.stdout_lines[-20:]}\n"
                f"stderr tail:\n{self.log_tail()}"
            )
        self.url = url.rstrip("/")
        return self.url

    def stop(self) -> int:
        """SIGTERM and wait (SIGKILL after a timeout); returns the exit code."""
        proc = self.proc
        if proc is None:
            return 0
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(timeout=STOP_TIMEOUT_S)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        self.proc = None
        return proc.returncode

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def log_tail(self, n: int = 40) -> str:
        try:
            return "\n".join(self.log_path.read_text(encoding="utf-8", errors="replace").splitlines()[-n:])
        except OSError:
            return "(no log)"

    def client(self, **kwargs) -> turbopuffer.Turbopuffer:
        assert self.url is not None, "daemon not started"
        return turbopuffer.Turbopuffer(api_key=API_KEY, base_url=self.url, **kwargs)


@pytest.fixture(scope="session")
def daemon(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Daemon]:
    root = tmp_path_factory.mktemp("tidepool")
    d = Daemon(root / "data", root / "daemon.log")
    d.start()
    yield d
    code = d.stop()
    # SIGTERM is a clean shutdown: anything else means the daemon crashed or hung.
    assert code in (0, -signal.SIGTERM), f"daemon exited with {code}; stderr tail:\n{d.log_tail()}"


@pytest.fixture(scope="session")
def tpuf(daemon: Daemon) -> Iterator[turbopuffer.Turbopuffer]:
    """The SDK client as an application would build it (default retries and timeouts)."""
    client = daemon.client()
    yield client
    client.close()


@pytest.fixture(autouse=True)
def _daemon_still_alive(request: pytest.FixtureRequest) -> Iterator[None]:
    """Fails the test that made the shared daemon exit, with its stderr tail."""
    yield
    if "daemon" in request.fixturenames:
        d: Daemon = request.getfixturevalue("daemon")
        if d.proc is not None and not d.alive():
            pytest.fail(f"the daemon exited (code {d.proc.returncode}); stderr tail:\n{d.log_tail()}")


@pytest.fixture
def ns_name(request: pytest.FixtureRequest) -> str:
    """A namespace name unique to this test run: `sdk-<test>-<random>` within [A-Za-z0-9-_.]."""
    test = re.sub(r"[^A-Za-z0-9]+", "-", request.node.name).strip("-")[:60]
    return f"sdk-{test}-{uuid.uuid4().hex[:8]}"


@pytest.fixture
def ns(tpuf: turbopuffer.Turbopuffer, ns_name: str):
    """A fresh (not yet created) namespace; deleted after the test if it exists."""
    handle = tpuf.namespace(ns_name)
    yield handle
    try:
        handle.delete_all()
    except turbopuffer.NotFoundError:
        pass
    except turbopuffer.APIError:
        pass  # cleanup is best effort; the test's own assertions decide
