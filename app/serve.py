"""The server command: ``python -m app.serve`` (what the container, ``scripts/serve`` and the
README run). Runs uvicorn on ``app.main:app`` with the process settings (``TORCHFN_HOST``,
``TORCHFN_PORT``, ``TORCHFN_WORKERS``, ``TORCHFN_SHUTDOWN_GRACE_S``, logging, the connection
limits of ``app.transports.http.protocol``), and exits 0 after
a graceful shutdown on SIGTERM: readiness fails at once, in-flight and queued requests finish
within the grace period, then the lifespan stops the compute service."""

from __future__ import annotations

import contextlib
import logging
import math
import os
import shutil
import sys
import tempfile
from collections.abc import Iterator

import uvicorn
from pydantic import ValidationError
from uvicorn.supervisors import Multiprocess

from app.compute.catalogue.plugins import PluginError, build_catalogue
from app.core.allocator import allocator_environment
from app.core.config import Settings
from app.core.lifecycle import work_abandoned
from app.core.logs import logging_config
from app.core.runtime import fit_open_files_limit
from app.telemetry.metrics import MULTIPROCESS_ENV
from app.transports.http.protocol import ConnectionLimits, LimitedConfig

APP = "app.main:app"
STARTUP_FAILURE = 3
BAD_SETTINGS = 2
WORKER_HEALTHCHECK_S = 60
"""How long the supervisor of several workers waits for a worker's ping answer before it kills
and replaces it. uvicorn's 5 s is shorter than importing torch takes on a busy machine, which
had workers killed while still starting."""


class _Server(uvicorn.Server):
    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        """uvicorn re-raises the stop signal once shut down, so the process would die of SIGTERM
        (status -15) after a clean shutdown; a completed graceful shutdown exits normally instead."""
        with super().capture_signals():
            yield
            self._captured_signals.clear()


def config(settings: Settings) -> uvicorn.Config:
    limits = ConnectionLimits(
        max_head_bytes=settings.max_head_bytes,
        max_headers=settings.max_headers,
        head_timeout_s=settings.head_timeout_s,
        max_connections=settings.max_connections,
    )
    return LimitedConfig(
        APP,
        limits,
        host=settings.host,
        port=settings.port,
        workers=settings.workers,
        timeout_graceful_shutdown=math.ceil(settings.shutdown_grace_s),  # uvicorn takes whole seconds
        log_config=logging_config(settings),
        log_level=settings.log_level,
        access_log=False,  # the app logs each request itself, with its request id
        server_header=False,
        timeout_worker_healthcheck=WORKER_HEALTHCHECK_S,
    )


@contextlib.contextmanager
def _multiprocess_metrics(workers: int) -> Iterator[None]:
    """Several workers share their metrics through files in a fresh directory (unless one is given)."""
    if workers == 1 or os.environ.get(MULTIPROCESS_ENV):
        yield
        return
    directory = tempfile.mkdtemp(prefix="torchfn-metrics-")
    os.environ[MULTIPROCESS_ENV] = directory
    try:
        yield
    finally:
        shutil.rmtree(directory, ignore_errors=True)


def start_with_allocator_tunables() -> None:
    """glibc reads its allocator's tunables when a process starts: start again with them, as the
    same process (``execve``), when they are not set (``app.core.runtime.ALLOCATOR_TUNABLES``)."""
    environment = allocator_environment(os.environ)
    if environment is not None:
        os.execve(sys.executable, sys.orig_argv, environment)


def main() -> int:
    try:
        settings = Settings()
    except ValidationError as error:
        for problem in error.errors():
            field = ".".join(str(part) for part in problem["loc"])
            name = f"TORCHFN_{field.upper()}" if field else "settings"
            print(f"invalid setting {name}: {problem['msg']}", file=sys.stderr)
        return BAD_SETTINGS
    try:
        build_catalogue(settings)  # the app builds it again in each worker; this fails fast, once
    except PluginError as error:
        print(f"invalid setting TORCHFN_PLUGINS: {error}", file=sys.stderr)
        return BAD_SETTINGS
    if settings.tracing:
        from app.telemetry.tracing import tracing_from_environment  # the SDK is imported only when tracing is on

        try:
            tracing_from_environment()  # the app builds it again in each worker; this fails fast, once
        except RuntimeError as error:
            print(f"invalid setting OTEL_TRACES_EXPORTER or OTEL_EXPORTER_OTLP_PROTOCOL: {error}", file=sys.stderr)
            return BAD_SETTINGS
    grpc_connections = settings.grpc_max_connections if settings.grpc_port else 0
    too_few_files = fit_open_files_limit(settings.max_connections + grpc_connections)
    if too_few_files is not None:
        names = (
            "TORCHFN_MAX_CONNECTIONS and TORCHFN_GRPC_MAX_CONNECTIONS"
            if grpc_connections
            else "TORCHFN_MAX_CONNECTIONS"
        )
        print(f"invalid setting {names}: {too_few_files}", file=sys.stderr)
        return BAD_SETTINGS
    server_config = config(settings)
    with _multiprocess_metrics(settings.workers):
        if settings.workers > 1:
            Multiprocess(server_config, sockets=[server_config.bind_socket()]).run()
            return 0
        server = _Server(server_config)
        server.run()
        status = 0 if server.started else STARTUP_FAILURE
    if work_abandoned():
        # A computation outlived the grace period: the interpreter's exit would wait for it
        # (torch's thread pool is joined by its static destructors), so leave at once.
        logging.shutdown()
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(status)
    return status


if __name__ == "__main__":
    start_with_allocator_tunables()
    sys.exit(main())
