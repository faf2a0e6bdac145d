"""OpenAPI for the routes that read their body themselves (to decode tensors in bulk)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from fastapi import FastAPI
from fastapi.openapi.utils import get_openapi
from pydantic import BaseModel

from app.compute.catalogue import FunctionSpec

_REF = "#/components/schemas/{model}"


def request_body(model: type[BaseModel], specs: Sequence[FunctionSpec], first: str) -> dict[str, Any]:
    """A documented JSON request body with one working example per function, ``first`` first."""
    ordered = sorted(specs, key=lambda spec: spec.name != first)
    examples = {spec.name: {"summary": spec.summary, "value": dict(spec.example)} for spec in ordered}
    return {
        "requestBody": {
            "required": True,
            "content": {
                "application/json": {"schema": {"$ref": _REF.format(model=model.__name__)}, "examples": examples}
            },
        }
    }


def timeout_header() -> dict[str, Any]:
    """The optional per-request deadline header of the compute routes (see ``app.api.timing``)."""
    return {
        "parameters": [
            {
                "name": "X-Request-Timeout",
                "in": "header",
                "required": False,
                "description": "Seconds this request may wait for compute; 503 with Retry-After when it is not served "
                "in time. The server's own limit applies when it is shorter.",
                "schema": {"type": "number", "exclusiveMinimum": 0},
            }
        ]
    }


def install_openapi(app: FastAPI, models: Sequence[type[BaseModel]]) -> None:
    """Generate the schema once, adding the request models the routes reference."""

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            schema = get_openapi(
                title=app.title,
                version=app.version,
                description=app.description,
                routes=app.routes,
                tags=app.openapi_tags,
            )
            components = schema.setdefault("components", {}).setdefault("schemas", {})
            for model in models:
                model_schema = model.model_json_schema(ref_template=_REF)
                components.update(model_schema.pop("$defs", {}))
                components[model.__name__] = model_schema
            app.openapi_schema = schema
        return app.openapi_schema

    app.openapi = openapi  # type: ignore[method-assign]
