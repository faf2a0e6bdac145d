"""Parameters that are not the function's: what other servers' clients send, and the rule for the rest.

At every level (the request, each input, each output) a key is one of:

* the level's own (the function's parameters and the protocol's at request level, ``binary_data_size``
  on an input, ``binary_data`` on an output), or one every level accepts: MLServer's ``content_type``
  (its codecs write it; the tensor's datatype says the same);
* refused, naming why: an extension this server does not provide (shared memory, classification);
* close to one of the level's own names (``difflib``, case ignored): refused with a 400 that names the
  close one, since a misspelled parameter must not pass silently;
* anything else: ignored, and named in the reply's ``parameters.ignored_parameters``.
"""

from __future__ import annotations

import difflib
from collections.abc import Collection, Mapping
from typing import Any

from app.core.errors import InvalidRequest, Loc

CONTENT_TYPE = "content_type"
"""MLServer's codec hint (``"np"``, ``"pd"``...), at request and input level: accepted, and read
no further (the tensor's datatype and shape say how to read it)."""
PRIORITY = "priority"
"""Triton's request priority (an unsigned integer): accepted; this server has one queue, first come
first served."""
TIMEOUT = "timeout"
"""Triton's request timeout in microseconds (0: none): the request's deadline, with
``X-Request-Timeout`` and the server's limit (the shortest wins)."""
IGNORED = "ignored_parameters"
"""The reply's parameter naming what was ignored."""

MAX_PARAMETERS = 64
"""Keys one ``parameters`` object may hold: no client sends more; each key costs a comparison."""
MAX_COMPARED_NAME = 128
"""Keys longer than this are not compared (no name they could be close to is near that long)."""
MAX_LISTED = 16
"""Ignored keys named in the reply, at most (each cut to ``MAX_COMPARED_NAME`` characters)."""
CLOSE = 0.75
"""``difflib``'s similarity from which a key counts as a misspelling. Measured on every parameter
of the catalogue: typos score 0.75 to 1.0 (``gard`` 0.75, ``reduciton`` 0.89, ``Grad`` 1.0 as case is
ignored), while what KServe's and Triton's clients send score at most 0.6 (``test-bool`` 0.56,
``sequence_id`` 0.53)."""

_NO_SHARED_MEMORY = "the shared-memory extensions are not provided: send the tensor as data or binary data"
REFUSED: Mapping[str, str] = {
    "shared_memory_region": _NO_SHARED_MEMORY,
    "shared_memory_byte_size": _NO_SHARED_MEMORY,
    "shared_memory_offset": _NO_SHARED_MEMORY,
    "classification": "the classification extension is not provided",
}


def close_to(key: str, names: Collection[str]) -> str | None:
    """The name of ``names`` that ``key`` is a likely misspelling of, case ignored; None if none."""
    if len(key) > MAX_COMPARED_NAME:
        return None
    lowered = {name.lower(): name for name in names}
    match = difflib.get_close_matches(key.lower(), lowered, n=1, cutoff=CLOSE)
    return lowered[match[0]] if match else None


def sort_parameters(given: Mapping[str, Any], own: Collection[str], loc: Loc, ignored: list[str]) -> dict[str, Any]:
    """The level's own parameters of ``given`` (``loc`` names the ``parameters`` object); refuses
    what must be refused, appends the rest's locations to ``ignored``."""
    if len(given) > MAX_PARAMETERS:
        raise InvalidRequest.at(loc, f"holds {len(given)} keys; at most {MAX_PARAMETERS}", "too_many_parameters")
    kept: dict[str, Any] = {}
    for key, value in given.items():
        if key in own:
            kept[key] = value
        elif key == CONTENT_TYPE:
            if not isinstance(value, str):
                raise InvalidRequest.at((*loc, key), "must be a string (MLServer's content type)", "invalid_param")
        elif key in REFUSED:
            raise InvalidRequest.at((*loc, key), f"not accepted: {REFUSED[key]}", "param_refused")
        else:
            close = close_to(key, own)
            if close is not None:
                raise InvalidRequest.at((*loc, key), f"unknown parameter; did you mean {close!r}?", "unknown_param")
            ignored.append(".".join(str(part) for part in (*loc, key[:MAX_COMPARED_NAME])))
    return kept


def listed(ignored: list[str]) -> list[str]:
    """The ignored keys as the reply names them: the first ``MAX_LISTED``."""
    return ignored[:MAX_LISTED]


def microseconds_timeout(value: Any, loc: Loc) -> float | None:
    """Triton's ``timeout`` (microseconds, 0 for none) in seconds."""
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise InvalidRequest.at(loc, "must be a non-negative integer of microseconds", "invalid_param")
    return value / 1_000_000 if value else None


def check_priority(value: Any, loc: Loc) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise InvalidRequest.at(loc, "must be a non-negative integer", "invalid_param")
