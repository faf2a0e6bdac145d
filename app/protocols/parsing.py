"""JSON text to Python objects: the one parser that decides what is valid JSON, whatever the
protocol, in this process or apart from it.

``orjson`` parses a body in one call that holds the interpreter lock throughout (1.3 s for 34 MB of
numbers), and turning its lists into arrays holds it again: done in the server's process, in
whatever thread, that stalls its event loop and every other request with it. So a large text is
parsed in a process of its own (``parse_apart``, run by ``app.serving.apart``): there its tensors'
lists are decoded as well (``predecode``), and what comes back is the object with each large list
of numbers already an array (or the error it gave, to be answered at its place), which crosses
processes as its bytes, not as millions of Python numbers.
"""

from __future__ import annotations

import re
from typing import Any

import orjson

from app.core.errors import InvalidRequest, MalformedRequest, ServiceError
from app.core.limits import TensorLimits
from app.protocols.scan import BodyScan, scan_body
from app.protocols.tensors import Predecoded, decode_nested, nested_size

PREDECODE_FROM = 4096
"""Lists of at least this many numbers are decoded in the parse process; smaller ones, as cheap as
their structure around them, are left to the decoder."""

_BARE_NON_FINITE = (b"NaN", b"Infinity")
_STRING_OR_BARE_TOKEN = re.compile(rb'"(?:[^"\\]|\\.)*"|-?Infinity|NaN')


def _quoted(match: re.Match[bytes]) -> bytes:
    token = match.group(0)
    return token if token[:1] == b'"' else b'"' + token + b'"'


def parse_object(text: bytes, bare_non_finite: bool = False) -> dict[str, Any]:
    """The JSON object ``text`` holds: 400 for text that is not JSON, 422 for JSON that is not an
    object. ``bare_non_finite``: bare ``NaN``/``Infinity``/``-Infinity`` tokens (which Python
    clients such as tritonclient write for non-finite tensor data) are first quoted, outside
    strings, into the strings this service reads as non-finite values."""
    try:
        obj = orjson.loads(text)
    except orjson.JSONDecodeError as error:
        if not (bare_non_finite and any(token in text for token in _BARE_NON_FINITE)):
            raise MalformedRequest.at(("body",), f"invalid JSON: {error}", "json_invalid") from None
        return parse_object(_STRING_OR_BARE_TOKEN.sub(_quoted, text))
    if not isinstance(obj, dict):
        raise InvalidRequest.at(("body",), "the body must be a JSON object", "model_type")
    return obj


def parse_apart(text: bytes, limits: TensorLimits, bare_non_finite: bool = False) -> dict[str, Any]:
    """What the parse process runs: the object, its large lists of numbers decoded."""
    obj = parse_object(text, bare_non_finite)
    predecode(obj, limits, scan_body(text))
    return obj


def predecode(value: Any, limits: TensorLimits, scan: BodyScan) -> Any:
    """``value`` (a dict or list, changed in place, and returned) with every list of at least
    ``PREDECODE_FROM`` numbers (nested or flat, where a tensor's data can be) replaced by its
    ``Predecoded`` form; lists of objects are walked into."""
    if isinstance(value, dict):
        for key, item in value.items():
            if isinstance(item, (dict, list)):
                value[key] = predecode(item, limits, scan)
        return value
    if not value:
        return value
    first = value[0]
    if isinstance(first, dict):
        for index, item in enumerate(value):
            if isinstance(item, (dict, list)):
                value[index] = predecode(item, limits, scan)
        return value
    if nested_size(value) < PREDECODE_FROM:
        return value
    try:
        return Predecoded(decode_nested(value, (), limits, scan), None)
    except ServiceError as error:
        return Predecoded(None, error)
