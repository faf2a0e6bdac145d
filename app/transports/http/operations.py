"""What production adds around the routes: request ids, metrics, access logs, auth and CORS."""

from __future__ import annotations

from collections.abc import Iterable
from typing import TYPE_CHECKING, TypedDict

from starlette.middleware import Middleware
from starlette.middleware.cors import CORSMiddleware

from app.core.config import Settings
from app.telemetry.metrics import Metrics
from app.transports.http.auth import ApiKeyAuth
from app.transports.http.compute_routes import ComputeLane, ComputeRoute
from app.transports.http.errors import ErrorPipeline
from app.transports.http.middleware import HeadAsGet, RequestObservability

if TYPE_CHECKING:
    from app.telemetry.tracing import Tracing

CORS_HEADERS = [
    "authorization",
    "content-type",
    "x-api-key",
    "x-request-id",
    "x-request-timeout",
    "traceparent",
    "tracestate",
]
CORS_EXPOSED = ["x-request-id", "server-timing", "retry-after", "traceparent"]


class DocsUrls(TypedDict):
    docs_url: None
    redoc_url: None
    openapi_url: str | None


def docs_urls(settings: Settings) -> DocsUrls:
    """``FastAPI`` arguments that serve or hide the schema. FastAPI's own ``/docs`` and ``/redoc``
    load their scripts from a CDN, so they are always off; ``install_docs_pages`` serves them
    offline when ``settings.docs`` is on."""
    return DocsUrls(docs_url=None, redoc_url=None, openapi_url="/openapi.json" if settings.docs else None)


def middleware(
    settings: Settings,
    metrics: Metrics | None,
    errors: ErrorPipeline,
    compute: Iterable[ComputeRoute],
    tracing: Tracing | None = None,
) -> list[Middleware]:
    """The app's layers, outermost first: request id, metrics, access log and, with ``tracing``,
    the server span; CORS (so preflights need no key); auth; the ``compute`` routes' own lane past
    the router; ``HEAD`` served as ``GET`` (logged and counted as ``HEAD``). Auth and CORS are left
    out entirely when off."""
    layers = [
        Middleware(
            RequestObservability, metrics=metrics, access_log=settings.access_log, errors=errors, tracing=tracing
        )
    ]
    if settings.cors_origins:
        layers.append(
            Middleware(
                CORSMiddleware,
                allow_origins=settings.cors_origins,
                allow_methods=["GET", "POST"],
                allow_headers=CORS_HEADERS,
                expose_headers=CORS_EXPOSED,
                max_age=600,
            )
        )
    if settings.api_keys:
        layers.append(Middleware(ApiKeyAuth, keys=settings.api_keys, open_paths=settings.open_paths, errors=errors))
    layers.append(Middleware(ComputeLane, routes=compute))
    layers.append(Middleware(HeadAsGet))
    return layers
