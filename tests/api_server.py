"""Serves an app with uvicorn on a free port in a thread, for tests that need real
HTTP (chunked or slow bodies, raw sockets, schemathesis)."""

from __future__ import annotations

import contextlib
import threading
import time
from collections.abc import Iterator
from typing import Any

import uvicorn
from starlette.types import ASGIApp

from tests.processes import free_port


@contextlib.contextmanager
def serving(app: ASGIApp, **config: Any) -> Iterator[str]:
    """`app` (lifespan included) behind uvicorn on 127.0.0.1; yields its base URL.
    `config` goes to uvicorn.Config (e.g. limit_concurrency)."""
    port = free_port()
    server = uvicorn.Server(
        uvicorn.Config(app, host="127.0.0.1", port=port, log_config=None, **config)
    )
    # uvicorn installs no signal handlers outside the main thread.
    thread = threading.Thread(target=server.run, name=f"uvicorn-{port}", daemon=True)
    thread.start()
    deadline = time.monotonic() + 60
    while not server.started:
        assert thread.is_alive(), "uvicorn stopped while starting"
        assert time.monotonic() < deadline, "uvicorn did not start within 60 s"
        time.sleep(0.05)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(timeout=30)
