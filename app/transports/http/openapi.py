"""OpenAPI for the compute routes (plain ASGI endpoints: FastAPI documents only its own routes),
and the pages that show it, served with no network: Swagger UI's and ReDoc's files come from the
pinned ``fastapi-offline`` package, not from a CDN."""

from __future__ import annotations

import base64
import copy
import hashlib
import re
from collections.abc import Mapping, Sequence
from functools import cache
from importlib.resources import files
from typing import Any

from fastapi import FastAPI, Request
from fastapi.openapi.docs import get_redoc_html, get_swagger_ui_html
from fastapi.openapi.utils import get_openapi
from fastapi.responses import HTMLResponse, Response
from fastapi.staticfiles import StaticFiles
from pydantic import BaseModel

from app.compute.catalogue import Catalogue, FunctionSpec

_REF = "#/components/schemas/{model}"

DOCS_ASSETS = "/static/docs"
"""Where Swagger UI's and ReDoc's scripts, styles and favicon are served (``fastapi_offline/static``)."""

_REDOC_BRANDING_LOGO = b"https://cdn.redoc.ly/redoc/logo-mini.svg"
_EMPTY_IMAGE = b"data:image/svg+xml,%3Csvg xmlns='http://www.w3.org/2000/svg'/%3E"


@cache
def redoc_script() -> bytes:
    """ReDoc's bundle with its one reference to the outside, the sidebar's "API docs by Redocly"
    logo (always drawn, no option hides it), replaced by an empty image."""
    script = (files("fastapi_offline") / "static" / "redoc.standalone.js").read_bytes()
    return script.replace(_REDOC_BRANDING_LOGO, _EMPTY_IMAGE)


_INLINE_SCRIPT = re.compile(rb"<script>(.*?)</script>", re.DOTALL)
DOCS_POLICY = (
    "default-src 'self'; script-src {scripts}; worker-src 'self' blob:; connect-src 'self'; "
    "img-src 'self' data:; font-src 'self' data:; style-src 'self' 'unsafe-inline'; object-src 'none'; "
    "base-uri 'self'; form-action 'none'; frame-ancestors 'self'"
)
"""The pages' Content-Security-Policy: this origin only. Swagger UI's page starts it with an
inline script, allowed by its hash (the page is generated, so is the hash); both libraries set
inline styles, and ReDoc runs its search in a worker made from a ``blob:``."""


def with_policy(page: HTMLResponse) -> HTMLResponse:
    """``page`` with ``DOCS_POLICY``, its inline scripts allowed by their SHA-256."""
    hashes = [
        f"'sha256-{base64.b64encode(hashlib.sha256(script).digest()).decode('ascii')}'"
        for script in _INLINE_SCRIPT.findall(bytes(page.body))
    ]
    page.headers["Content-Security-Policy"] = DOCS_POLICY.format(scripts=" ".join(["'self'", *hashes]))
    return page


def request_body(model: type[BaseModel], specs: Sequence[FunctionSpec], first: str) -> dict[str, Any]:
    """A documented JSON request body (OpenAPI's Request Body Object) with one working example per
    function, ``first`` first."""
    ordered = sorted(specs, key=lambda spec: spec.name != first)
    examples = {spec.name: {"summary": spec.summary, "value": dict(spec.example)} for spec in ordered}
    return {
        "required": True,
        "content": {"application/json": {"schema": {"$ref": _REF.format(model=model.__name__)}, "examples": examples}},
    }


TIMEOUT_HEADER: dict[str, Any] = {
    "name": "X-Request-Timeout",
    "in": "header",
    "required": False,
    "description": "Seconds this request may wait for compute; 503 with Retry-After when it is not served "
    "in time. The server's own limit applies when it is shorter.",
    "schema": {"type": "number", "exclusiveMinimum": 0},
}
"""The optional per-request deadline header of every compute route (``app.transports.http.headers``)."""


def compute_operation(
    operation_id: str,
    summary: str,
    tag: str,
    request_body: dict[str, Any],
    responses: Mapping[int | str, dict[str, Any]],
    parameters: Sequence[dict[str, Any]] = (),
) -> dict[str, Any]:
    """A compute route's OpenAPI operation. ``responses``: by status, a ``model`` (a pydantic
    model, referenced from the components) and a ``description``, and any further ``content``."""
    documented: dict[str, Any] = {}
    for status, response in responses.items():
        content: dict[str, Any] = {
            "application/json": {"schema": {"$ref": _REF.format(model=response["model"].__name__)}}
        }
        content.update(response.get("content", {}))
        documented[str(status)] = {"description": response["description"], "content": content}
    return {
        "tags": [tag],
        "summary": summary,
        "operationId": operation_id,
        "parameters": [*parameters, TIMEOUT_HEADER],
        "requestBody": request_body,
        "responses": documented,
    }


_EXAMPLES_OF = {"/activate": "activation", "/loss": "loss"}
CHAINED_EXAMPLE = {
    "summary": "An activation chained into a loss: binary_cross_entropy(sigmoid(input), target), "
    "grad['input'] with respect to the logits",
    "value": {
        "function": "binary_cross_entropy",
        "input": [[2.0, -1.0, 0.5]],
        "target": [[1.0, 0.0, 1.0]],
        "activation": {"function": "sigmoid", "params": {}},
        "grad": True,
    },
}


def _add_plugin_examples(schema: dict[str, Any], catalogue: Catalogue) -> None:
    """The compute routes' examples (torch's functions, written at import) and the plugins'."""
    for path, kind in _EXAMPLES_OF.items():
        operation = schema.get("paths", {}).get(path, {}).get("post", {})
        examples = operation.get("requestBody", {}).get("content", {}).get("application/json", {}).get("examples")
        if examples is not None:
            for spec in catalogue.of_kind(kind):  # type: ignore[arg-type]
                examples.setdefault(spec.name, {"summary": spec.summary, "value": dict(spec.example)})
            if kind == "loss":
                examples["sigmoid_then_binary_cross_entropy"] = CHAINED_EXAMPLE


def install_openapi(
    app: FastAPI,
    operations: Sequence[tuple[str, dict[str, Any]]],
    models: Sequence[type[BaseModel]],
    catalogue: Catalogue,
) -> None:
    """Generate the schema once: FastAPI's routes, then the compute routes' ``operations`` (path,
    POST operation), with the ``models`` they reference and the examples of ``catalogue``'s plugins."""

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            schema = get_openapi(
                title=app.title,
                version=app.version,
                description=app.description,
                routes=app.routes,
                tags=app.openapi_tags,
            )
            generated = schema.get("paths", {})
            # copies: the operations are the routes' own, shared by every app of the process, and
            # this app's plugins' examples are added to them below
            paths: dict[str, Any] = {path: {"post": copy.deepcopy(operation)} for path, operation in operations}
            paths.update((path, item) for path, item in generated.items() if path not in paths)
            schema["paths"] = paths
            components = schema.setdefault("components", {}).setdefault("schemas", {})
            for model in models:
                model_schema = model.model_json_schema(ref_template=_REF)
                components.update(model_schema.pop("$defs", {}))
                components[model.__name__] = model_schema
            _add_plugin_examples(schema, catalogue)
            app.openapi_schema = schema
        return app.openapi_schema

    app.openapi = openapi  # type: ignore[method-assign]


def install_docs_pages(app: FastAPI, openapi_url: str) -> None:
    """``/docs`` (Swagger UI) and ``/redoc``, loading their files from this service only."""

    @app.get(f"{DOCS_ASSETS}/redoc.js", include_in_schema=False)
    async def redoc_bundle() -> Response:
        return Response(redoc_script(), media_type="text/javascript", headers={"Cache-Control": "max-age=3600"})

    app.mount(DOCS_ASSETS, StaticFiles(packages=[("fastapi_offline", "static")]), name="docs-assets")

    def assets(request: Request) -> str:
        return f"{request.scope.get('root_path', '')}{DOCS_ASSETS}"

    @app.get("/docs", include_in_schema=False)
    async def swagger_ui(request: Request) -> HTMLResponse:
        root = assets(request)
        return with_policy(
            get_swagger_ui_html(
                openapi_url=f"{request.scope.get('root_path', '')}{openapi_url}",
                title=f"{app.title} - Swagger UI",
                swagger_js_url=f"{root}/swagger-ui-bundle.js",
                swagger_css_url=f"{root}/swagger-ui.css",
                swagger_favicon_url=f"{root}/favicon.png",
                # no badge fetched from the public validator
                swagger_ui_parameters={"validatorUrl": None},
            )
        )

    @app.get("/redoc", include_in_schema=False)
    async def redoc(request: Request) -> HTMLResponse:
        root = assets(request)
        return with_policy(
            get_redoc_html(
                openapi_url=f"{request.scope.get('root_path', '')}{openapi_url}",
                title=f"{app.title} - ReDoc",
                redoc_js_url=f"{root}/redoc.js",
                redoc_favicon_url=f"{root}/favicon.png",
                with_google_fonts=False,
            )
        )
