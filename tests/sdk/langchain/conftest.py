"""LangChain's turbopuffer integration tests (langchain-turbopuffer 0.2.0's own integration tests and
LangChain's standard vector-store suite), run against the local daemon with only the connection
changed: the vendored tests build `Turbopuffer()`, which reads TURBOPUFFER_BASE_URL and
TURBOPUFFER_API_KEY, set here to the daemon that ../conftest.py starts.

They run in their own virtualenv (target/langchain-venv, from requirements.txt beside this file),
because langchain-turbopuffer needs turbopuffer<2 while the main suite pins 3.1.0; tests/sdk/run.sh
runs both. Under the main suite's virtualenv, where langchain is not installed, nothing here is
collected.
"""

from __future__ import annotations

import os
from typing import Iterator

import pytest

try:
    import langchain_turbopuffer  # noqa: F401
except ImportError:  # the main SDK suite's virtualenv
    collect_ignore_glob = ["test_*.py"]


@pytest.fixture(scope="session", autouse=True)
def _connect_to_the_daemon(daemon) -> Iterator[None]:
    """Points every `Turbopuffer()` the vendored tests build at the local daemon."""
    saved = {k: os.environ.get(k) for k in ("TURBOPUFFER_BASE_URL", "TURBOPUFFER_API_KEY")}
    os.environ["TURBOPUFFER_BASE_URL"] = daemon.url
    os.environ["TURBOPUFFER_API_KEY"] = "local-dev"
    yield
    for k, v in saved.items():
        if v is None:
            os.environ.pop(k, None)
        else:
            os.environ[k] = v
