"""What production adds around the routes: request ids, metrics, access logs, auth and CORS."""

from __future__ import annotations

from collections.abc import Iterable
from typing import TypedDict

from fastapi import FastAPI
from starlette.middleware.cors import CORSMiddleware
from starlette.routing import BaseRoute

from app.api.auth import ApiKeyAuth
from app.api.head_requests import HeadAsGet
from app.api.hot_routes import HotRoutes
from app.api.metrics import Metrics
from app.api.middleware import RequestObservability
from app.core.config import Settings

CORS_HEADERS = ["authorization", "content-type", "x-api-key", "x-request-id", "x-request-timeout"]
CORS_EXPOSED = ["x-request-id", "server-timing", "retry-after"]


class DocsUrls(TypedDict):
    docs_url: None
    redoc_url: None
    openapi_url: str | None


def docs_urls(settings: Settings) -> DocsUrls:
    """``FastAPI`` arguments that serve or hide the schema. FastAPI's own ``/docs`` and ``/redoc``
    load their scripts from a CDN, so they are always off; ``install_docs_pages`` serves them
    offline when ``settings.docs`` is on."""
    return DocsUrls(docs_url=None, redoc_url=None, openapi_url="/openapi.json" if settings.docs else None)


def install_middleware(app: FastAPI, settings: Settings, metrics: Metrics | None, hot: Iterable[BaseRoute]) -> None:
    """Outermost first: request id, metrics and access log; then CORS (so preflights need no
    key); then auth; then the ``hot`` routes' own lane past the router; then ``HEAD`` served as
    ``GET`` (logged and counted as ``HEAD``). Auth and CORS are not installed at all when off."""
    app.add_middleware(HeadAsGet)
    app.add_middleware(HotRoutes, routes=hot, exception_handlers=app.exception_handlers)
    if settings.api_keys:
        app.add_middleware(ApiKeyAuth, keys=settings.api_keys, open_paths=settings.open_paths)
    if settings.cors_origins:
        app.add_middleware(
            CORSMiddleware,
            allow_origins=settings.cors_origins,
            allow_methods=["GET", "POST"],
            allow_headers=CORS_HEADERS,
            expose_headers=CORS_EXPOSED,
            max_age=600,
        )
    app.add_middleware(RequestObservability, metrics=metrics, access_log=settings.access_log)
