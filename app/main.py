"""The application factory. ``app`` at the bottom is for ``uvicorn app.main:app`` only."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import TYPE_CHECKING

from fastapi import FastAPI

from app.compute.catalogue.plugins import build_catalogue
from app.compute.observer import ComputeObserver, Observers
from app.compute.service import ComputeService
from app.core.config import Settings
from app.core.lifecycle import abandon_running_work, drain_on_stop_signals, shutdown_time_left
from app.core.limits import TensorLimits
from app.core.logs import flush_log_lines
from app.core.runtime import tune_process
from app.serving.codec import DecodeOptions
from app.serving.health import Health
from app.serving.road import Road
from app.telemetry.metrics import Metrics, MetricsObserver
from app.transports.grpc.server import GrpcServer
from app.transports.http.app import ServiceApp
from app.transports.http.compute_routes import install_compute_routes
from app.transports.http.errors import ErrorPipeline
from app.transports.http.oip_docs import install_oip_openapi
from app.transports.http.openapi import install_docs_pages, install_openapi
from app.transports.http.operations import docs_urls, middleware
from app.transports.http.routes import explore, functions, health, landing, native, oip
from app.transports.http.routes import metrics as metrics_route

if TYPE_CHECKING:
    from app.telemetry.tracing import Tracing

STOP_SLACK_S = 0.5
"""Of the second beyond the grace period that stopping may take, what the compute service gets."""

DESCRIPTION = """
Every activation and loss function of `torch.nn`, over HTTP, with torch's exact numbers
and, on request, gradients. See `GET /functions` for the catalogue and a worked example of
each function; every example below can be sent as it is.
"""


def create_app(settings: Settings | None = None, tracing: Tracing | None = None) -> FastAPI:
    """``tracing``: the requests' tracing when ``settings.tracing`` is on (None: as the ``OTEL_*``
    variables configure it; a test passes its own)."""
    settings = settings or Settings()
    catalogue = build_catalogue(settings)  # raises PluginError: app.serve reports it (exit status 2)
    metrics = Metrics() if settings.metrics else None
    if not settings.tracing:
        tracing = None
    elif tracing is None:
        from app.telemetry.tracing import tracing_from_environment  # the SDK is imported only when tracing is on

        tracing = tracing_from_environment()  # raises RuntimeError: app.serve reports it (exit status 2)
    options = DecodeOptions(
        catalogue=catalogue,
        limits=TensorLimits(max_elements=settings.max_tensor_elements, max_rank=settings.max_rank),
        max_total_elements=settings.max_total_elements,
        default_dtype=settings.default_dtype,
    )

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        observers: list[ComputeObserver] = [MetricsObserver(metrics)] if metrics else []
        if tracing is not None:
            observers.append(tracing.observer)
        compute = ComputeService(settings, Observers(observers) if observers else None)
        await compute.start()
        if tracing is not None:
            tracing.open(compute.device)
        if metrics is not None:
            metrics.read_queue_depth = lambda: compute.queue_depth
            metrics.device_memory = compute.device_memory
            metrics.budget_memory = compute.memory.figures
            metrics.fold_periodically()
        tune_process(settings)
        app.state.compute = compute
        app.state.health = Health(compute)
        app.state.road = road = Road(compute, options, settings)
        restore_signals = drain_on_stop_signals()
        grpc_server = None
        if settings.grpc_port:
            grpc_server = GrpcServer(
                settings, app.state.road, app.state.health, catalogue, metrics, app.title, app.version, tracing
            )
            app.state.grpc_port = await grpc_server.start()
        try:
            yield
        finally:
            restore_signals()
            if grpc_server is not None:  # its calls in flight have what is left of the grace period
                await grpc_server.stop()
            # The server has already spent the grace period on in-flight requests; a computation
            # still running gets what is left of a second beyond it, then the process exits anyway.
            road.close()
            if not await compute.stop(within=shutdown_time_left(settings.shutdown_grace_s + STOP_SLACK_S)):
                abandon_running_work()
            if metrics is not None:
                metrics.stop_folding()
                metrics.process_exit()
            if tracing is not None:
                await tracing.close()  # the spans left are exported, for a moment at most
            flush_log_lines()  # the last access lines, before a worker dies of its stop signal

    errors = ErrorPipeline(settings.max_reported_errors)
    compute_routes = [*native.routes, *oip.infer_routes]
    app = ServiceApp(
        title="torch functions service",
        version="0.1.0",
        description=DESCRIPTION,
        lifespan=lifespan,
        # FastAPI's own OpenTelemetry instrumentation stays off: the service traces its requests
        # itself (TORCHFN_TRACING, the one switch), every route and phase included.
        telemetry={"tracing": False, "metrics": False, "logs": False},
        middleware=middleware(settings, metrics, errors, compute_routes, tracing),
        **docs_urls(settings),
    )
    app.state.settings = settings
    app.state.catalogue = catalogue
    app.state.metrics = metrics
    app.state.tracing = tracing  # None when off; every transport's (the gRPC face's too)
    app.state.errors = errors
    errors.install(app)
    install_compute_routes(app, compute_routes)
    app.include_router(functions.router)
    app.include_router(health.router)
    app.include_router(oip.router)
    if metrics is not None:
        app.include_router(metrics_route.router)
    if settings.explorer:
        explore.install(app)
    landing.install(app, settings)
    operations = [(route.path, route.operation) for route in compute_routes]
    install_openapi(app, operations, [*native.MODELS, *oip.MODELS], catalogue)
    install_oip_openapi(app)
    if app.openapi_url is not None:
        install_docs_pages(app, app.openapi_url)
    return app


app = create_app()
