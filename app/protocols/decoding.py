"""The one JSON parser that decides what is valid JSON, and request envelopes validated with it,
whatever the protocol."""

from __future__ import annotations

from typing import Any, TypeVar

import orjson
from pydantic import AfterValidator, BaseModel, ValidationError
from pydantic_core import PydanticCustomError

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


def strings_at_most(limit: int) -> AfterValidator:
    """A validator for a field that may hold a string among other types: a string over ``limit``
    characters is refused with one error (a length limit on the union's string member would make
    pydantic list every member's error)."""

    def check(value: Any) -> Any:
        if isinstance(value, str) and len(value) > limit:
            raise PydanticCustomError(
                "string_too_long", "String should have at most {max_length} characters", {"max_length": limit}
            )
        return value

    return AfterValidator(check)
