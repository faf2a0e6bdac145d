"""Request envelopes validated, whatever the protocol (the JSON is parsed by
``app.protocols.parsing``)."""

from __future__ import annotations

from typing import Any, TypeVar

from pydantic import AfterValidator, BaseModel, ValidationError
from pydantic_core import PydanticCustomError

from app.core.errors import InvalidRequest, Loc, Problem

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
