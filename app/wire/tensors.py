"""Tensors on the JSON wire: decode numbers, nested lists and the object form; encode replies.

Decoding never walks elements in Python on the common path: ``numpy.asarray`` builds the
array from the parsed lists in C, and the checks that follow are vectorised. The rare paths
(non-finite values sent as strings, booleans found by the byte scan) are exact, not fast.
"""

from __future__ import annotations

import base64
import binascii
import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np

from app.core.errors import InvalidRequest, Loc, TooLarge

Encoding = Literal["json", "base64"]

NON_FINITE_IN: dict[str, float] = {"NaN": math.nan, "Infinity": math.inf, "-Infinity": -math.inf}

WIRE_DTYPES: dict[str, np.dtype[Any]] = {
    "float64": np.dtype("<f8"),
    "float32": np.dtype("<f4"),
    "float16": np.dtype("<f2"),
    "bfloat16": np.dtype("<u2"),
    "int64": np.dtype("<i8"),
    "int32": np.dtype("<i4"),
    "int16": np.dtype("<i2"),
    "int8": np.dtype("i1"),
    "uint8": np.dtype("u1"),
}
"""Element types of the object form; bfloat16 travels as its raw 16 bits."""


@dataclass(frozen=True)
class Limits:
    max_elements: int
    max_rank: int


def _invalid(loc: Loc, msg: str, type_: str) -> InvalidRequest:
    return InvalidRequest.at(loc, msg, type_)


def _bfloat16_bits_to_float32(bits: np.ndarray) -> np.ndarray:
    return (bits.astype(np.uint32) << 16).view(np.float32)


def _float32_to_bfloat16_bits(values: np.ndarray) -> np.ndarray:
    """Exact for values that already are bfloat16 numbers (as every bfloat16 result is)."""
    return (np.ascontiguousarray(values, dtype=np.float32).view(np.uint32) >> 16).astype(np.uint16)


def decode_tensor(value: Any, loc: Loc, limits: Limits, maybe_booleans: bool = True) -> np.ndarray:
    """A wire tensor as a numpy array: float64 or int64 from JSON numbers, else the sent dtype.

    ``maybe_booleans`` is False when a scan of the raw body proved no ``true``/``false`` sits
    inside a list, so the exact boolean check can be skipped.
    """
    if isinstance(value, bool):
        raise _invalid(loc, "booleans are not tensor elements", "boolean_element")
    if isinstance(value, (int, float)):
        return np.asarray(value, dtype=np.int64 if isinstance(value, int) else np.float64)
    if isinstance(value, str):
        if value in NON_FINITE_IN:
            return np.asarray(NON_FINITE_IN[value], dtype=np.float64)
        raise _invalid(loc, "strings are not tensor elements (except NaN, Infinity, -Infinity)", "string_element")
    if isinstance(value, list):
        return _decode_nested(value, loc, limits, maybe_booleans)
    if isinstance(value, dict):
        return _decode_object(value, loc, limits)
    if value is None:
        raise _invalid(loc, "a tensor is required, got null", "null_tensor")
    raise _invalid(loc, f"not a tensor: {type(value).__name__}", "not_a_tensor")


def _nested_shape(value: list[Any], loc: Loc, limits: Limits) -> list[int]:
    """The shape along the first element of each level: cheap, and bounded by ``max_rank``."""
    shape: list[int] = []
    node: Any = value
    while isinstance(node, list):
        if len(shape) >= limits.max_rank:
            raise _invalid(loc, f"nested deeper than the rank limit {limits.max_rank}", "rank_limit")
        shape.append(len(node))
        if not node:
            break
        node = node[0]
    return shape


def _check_size(shape: Sequence[int], loc: Loc, limits: Limits) -> int:
    count = math.prod(shape)
    if count > limits.max_elements:
        raise TooLarge.at(loc, f"{count} elements exceed the limit of {limits.max_elements}", "too_many_elements")
    return count


def _decode_nested(value: list[Any], loc: Loc, limits: Limits, maybe_booleans: bool) -> np.ndarray:
    shape = _nested_shape(value, loc, limits)
    _check_size(shape, loc, limits)
    try:
        arr = np.asarray(value)
    except (ValueError, TypeError):
        raise _invalid(
            loc, "ragged nested list: every list at the same depth must have the same length", "ragged_tensor"
        ) from None
    if arr.ndim != len(shape) and arr.size:
        raise _invalid(loc, "ragged nested list or non-numeric elements", "ragged_tensor")
    kind = arr.dtype.kind
    if kind == "b":
        raise _invalid(loc, "booleans are not tensor elements", "boolean_element")
    if kind in "fiu":
        if maybe_booleans and kind in "fi" and _contains_boolean(value):
            raise _invalid(loc, "booleans are not tensor elements", "boolean_element")
        if kind == "u":  # only integers beyond int64 end up here
            raise _invalid(loc, "integer out of the int64 range", "integer_overflow")
        return arr
    if kind == "U":
        return _decode_with_non_finite(value, loc, arr.shape)
    return _reject_elements(value, loc)


def _flatten(value: Any) -> list[Any]:
    """Leaves of a nested list, in C order (exact path only)."""
    out: list[Any] = []
    stack = [value]
    while stack:
        node = stack.pop()
        if isinstance(node, list):
            stack.extend(reversed(node))
        else:
            out.append(node)
    return out


def _contains_boolean(value: list[Any]) -> bool:
    return any(leaf is True or leaf is False for leaf in _flatten(value))


def _decode_with_non_finite(value: list[Any], loc: Loc, shape: tuple[int, ...]) -> np.ndarray:
    out = []
    for position, leaf in enumerate(_flatten(value)):
        if isinstance(leaf, str):
            if leaf not in NON_FINITE_IN:
                raise _invalid(
                    (*loc, *_unravel(position, shape)),
                    "strings are not tensor elements (except NaN, Infinity, -Infinity)",
                    "string_element",
                )
            out.append(NON_FINITE_IN[leaf])
        elif isinstance(leaf, bool):
            raise _invalid((*loc, *_unravel(position, shape)), "booleans are not tensor elements", "boolean_element")
        else:
            out.append(leaf)
    return np.asarray(out, dtype=np.float64).reshape(shape)


def _unravel(position: int, shape: tuple[int, ...]) -> tuple[int, ...]:
    return tuple(int(i) for i in np.unravel_index(position, shape)) if shape else ()


def _reject_elements(value: list[Any], loc: Loc) -> np.ndarray:
    for leaf in _flatten(value):
        if leaf is None:
            raise _invalid(loc, 'null is not a tensor element; non-finite values travel as "NaN"', "null_element")
        if isinstance(leaf, dict):
            raise _invalid(loc, "objects cannot be nested inside a list tensor", "not_a_tensor")
    raise _invalid(loc, "tensor elements must be numbers", "not_a_number")


_OBJECT_KEYS = frozenset({"shape", "dtype", "data"})


def _decode_object(value: dict[str, Any], loc: Loc, limits: Limits) -> np.ndarray:
    unknown = set(value) - _OBJECT_KEYS
    if unknown:
        raise _invalid(
            (*loc, sorted(unknown)[0]), "unknown key in tensor object (expected shape, dtype, data)", "extra_forbidden"
        )
    shape = value.get("shape")
    if not isinstance(shape, list) or not all(isinstance(d, int) and not isinstance(d, bool) and d >= 0 for d in shape):
        raise _invalid((*loc, "shape"), "must be a list of non-negative integers", "invalid_shape")
    if len(shape) > limits.max_rank:
        raise _invalid((*loc, "shape"), f"rank {len(shape)} exceeds the rank limit {limits.max_rank}", "rank_limit")
    count = _check_size(shape, (*loc, "shape"), limits)
    dtype_name = value.get("dtype", "float32")
    if dtype_name not in WIRE_DTYPES:
        raise _invalid((*loc, "dtype"), f"unknown dtype; one of {', '.join(WIRE_DTYPES)}", "invalid_dtype")
    dtype = WIRE_DTYPES[dtype_name]
    data = value.get("data")
    if isinstance(data, str):
        try:
            raw = binascii.a2b_base64(data, strict_mode=True)
        except (binascii.Error, ValueError):
            raise _invalid((*loc, "data"), "not valid base64", "invalid_base64") from None
        if len(raw) != count * dtype.itemsize:
            raise _invalid(
                (*loc, "data"),
                f"holds {len(raw)} bytes; shape {shape} of {dtype_name} needs {count * dtype.itemsize}",
                "size_mismatch",
            )
        arr = np.frombuffer(raw, dtype=dtype).reshape(shape)
    elif isinstance(data, list):
        if len(data) != count:
            raise _invalid((*loc, "data"), f"holds {len(data)} values; shape {shape} needs {count}", "size_mismatch")
        flat = _decode_nested(data, (*loc, "data"), Limits(limits.max_elements, 1), True) if data else np.zeros(0)
        if dtype.kind in "iu" and flat.dtype.kind == "f":
            raise _invalid((*loc, "data"), f"{dtype_name} data must be integers", "wrong_type")
        arr = flat.astype(np.float32 if dtype_name == "bfloat16" else dtype).reshape(shape)
        return _widen(arr, dtype_name, raw_bits=False)
    else:
        raise _invalid((*loc, "data"), "must be a base64 string or a flat list of numbers", "invalid_data")
    return _widen(arr, dtype_name, raw_bits=True)


def _widen(arr: np.ndarray, dtype_name: str, raw_bits: bool) -> np.ndarray:
    """Native byte order; bfloat16 bits become float32 (exactly)."""
    if dtype_name == "bfloat16" and raw_bits:
        return _bfloat16_bits_to_float32(arr)
    return arr.astype(arr.dtype.newbyteorder("="), copy=False)


def encode_tensor(arr: np.ndarray, dtype_name: str, encoding: Encoding) -> Any:
    """A reply tensor: a number, a nested list (orjson serialises numpy) or the object form.

    ``arr`` holds the values in a numpy dtype; for bfloat16 that is float32 holding exact
    bfloat16 numbers. Non-finite values become "NaN", "Infinity", "-Infinity".
    """
    if encoding == "base64":
        bits = _float32_to_bfloat16_bits(arr) if dtype_name == "bfloat16" else arr
        data = base64.b64encode(np.ascontiguousarray(bits).astype(bits.dtype.newbyteorder("<"), copy=False).tobytes())
        return {"shape": list(arr.shape), "dtype": dtype_name, "data": data.decode("ascii")}
    finite = bool(np.isfinite(arr).all()) if arr.dtype.kind == "f" else True
    if arr.ndim == 0:
        scalar = arr.item()
        return scalar if finite else _non_finite_token(scalar)
    if arr.size == 0:
        return {"shape": list(arr.shape), "dtype": dtype_name, "data": []}
    if finite:
        return np.ascontiguousarray(arr)
    return _with_tokens(arr).tolist()


def _non_finite_token(value: float) -> str | float:
    if math.isnan(value):
        return "NaN"
    if math.isinf(value):
        return "Infinity" if value > 0 else "-Infinity"
    return value


def _with_tokens(arr: np.ndarray) -> np.ndarray:
    out = arr.astype(np.float64).astype(object)
    out[np.isnan(arr)] = "NaN"
    out[np.isposinf(arr)] = "Infinity"
    out[np.isneginf(arr)] = "-Infinity"
    return out
