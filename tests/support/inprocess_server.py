"""A real uvicorn server on loopback, in a thread of the test process: real sockets and real
disconnects, while the test can still patch the engine (the subprocess server cannot be patched)."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager

import uvicorn
from fastapi import FastAPI

from tests.support.server_process import free_port


@contextmanager
def serving(app: FastAPI, timeout: float = 30.0, tls: tuple[str, str] | None = None) -> Iterator[str]:
    """Serve ``app`` (lifespan included) until the block ends; yields its base URL. ``tls``
    (certificate file, key file) serves HTTPS."""
    port = free_port()
    certfile, keyfile = tls or (None, None)
    config = uvicorn.Config(
        app,
        host="127.0.0.1",
        port=port,
        log_level="warning",
        lifespan="on",
        ssl_certfile=certfile,
        ssl_keyfile=keyfile,
    )
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, name="uvicorn-under-test", daemon=True)
    thread.start()
    try:
        deadline = time.monotonic() + timeout
        while not server.started:
            if not thread.is_alive():
                raise RuntimeError("the server thread exited during start-up")
            if time.monotonic() > deadline:
                raise TimeoutError("the server did not start")
            time.sleep(0.01)
        yield f"{'https' if tls else 'http'}://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(timeout)
