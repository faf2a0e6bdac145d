"""The one JSON parser that decides what is valid JSON, and request envelopes validated with it,
whatever the protocol."""

from __future__ import annotations

from typing import Any, TypeVar

import orjson
from pydantic import BaseModel, ValidationError

from app.core.errors import InvalidRequest, Loc, MalformedRequest, Problem


def parse_json(body: bytes) -> dict[str, Any]:
    try:
        obj = orjson.loads(body)
    except orjson.JSONDecodeError as error:
        raise MalformedRequest.at(("body",), f"invalid JSON: {error}", "json_invalid") from None
    if not isinstance(obj, dict):
        raise InvalidRequest.at(("body",), "the body must be a JSON object", "model_type")
    return obj


EnvelopeT = TypeVar("EnvelopeT", bound=BaseModel)


def validated(model: type[EnvelopeT], obj: dict[str, Any], loc: Loc = ()) -> EnvelopeT:
    """``obj`` as a protocol's request model; every problem pydantic finds, under ``loc``."""
    try:
        return model.model_validate(obj)
    except ValidationError as error:
        raise InvalidRequest(
            [
                Problem((*loc, *e["loc"]), e["msg"], e["type"])
                for e in error.errors(include_url=False, include_input=False, include_context=False)
            ]
        ) from None
