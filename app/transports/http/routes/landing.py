"""``GET /``: a small page for a person who opens the service in a browser, leading to the docs,
the explorer, the catalogue, the metrics and the Open Inference Protocol's metadata: only those
the settings serve.

The page is package data (``app/static/landing``) with no script and no outside resource; its
Content-Security-Policy allows its one inline style block (by hash) and nothing else."""

from __future__ import annotations

import base64
import hashlib
import html
import re
from collections.abc import Callable
from importlib.resources import files
from pathlib import Path
from string import Template
from typing import NamedTuple

from fastapi import APIRouter, FastAPI, Request
from fastapi.responses import HTMLResponse

from app.core.config import Settings

PAGE = Path(str(files("app"))) / "static" / "landing" / "index.html"


class Link(NamedTuple):
    path: str
    title: str
    what: str
    served: Callable[[Settings], bool]


LINKS = (
    Link("docs", "API docs", "Swagger UI: every endpoint, with a working example of each function", lambda s: s.docs),
    Link("redoc", "API reference", "ReDoc: the same OpenAPI schema as a reference page", lambda s: s.docs),
    Link(
        "explore",
        "Explorer",
        "every function and its gradient, plotted from this service's answers",
        lambda s: s.explorer,
    ),
    Link(
        "functions", "Catalogue", "every activation and loss, with its parameters and an example (JSON)", lambda s: True
    ),
    Link("metrics", "Metrics", "Prometheus text format", lambda s: s.metrics),
    Link("v2", "Open Inference Protocol", "the server's metadata under /v2 (JSON)", lambda s: True),
)


def _style_hash(page: str) -> str:
    (style,) = re.findall(r"<style>(.*?)</style>", page, re.DOTALL)
    return base64.b64encode(hashlib.sha256(style.encode()).digest()).decode()


def _item(link: Link, root: str) -> str:
    return (
        f'        <li><a href="{root}/{link.path}">{html.escape(link.title)}</a> '
        f'<code class="path">/{link.path}</code>: {html.escape(link.what)}</li>'
    )


def router(settings: Settings) -> APIRouter:
    """The route, its page built once for ``settings`` (the links' prefix is each request's root path)."""
    page = PAGE.read_text()
    template = Template(page)
    links = [link for link in LINKS if link.served(settings)]
    policy = (
        f"default-src 'none'; style-src 'sha256-{_style_hash(page)}'; img-src data:; "
        "base-uri 'none'; form-action 'none'; frame-ancestors 'self'"
    )
    landing = APIRouter(include_in_schema=False)

    @landing.get("/")
    async def landing_page(request: Request) -> HTMLResponse:
        root = html.escape(request.scope.get("root_path", "").rstrip("/"))
        body = template.substitute(links="\n".join(_item(link, root) for link in links))
        return HTMLResponse(body, headers={"Content-Security-Policy": policy})

    return landing


def install(app: FastAPI, settings: Settings) -> None:
    app.include_router(router(settings))
