"""Tensors on the JSON wire: decode numbers, nested lists and the object form; encode replies.

Decoding never walks elements in Python on the common path: ``numpy.asarray`` builds the
array from the parsed lists in C, and the checks that follow are vectorised. The rare paths
(non-finite values sent as strings, booleans found by the byte scan) are exact, not fast.
"""

from __future__ import annotations

import binascii
import math
from collections.abc import Sequence
from typing import Any, Literal, NamedTuple

import numpy as np
import orjson

from app.core.errors import InvalidRequest, Loc, ServiceError, TooLarge
from app.core.limits import TensorLimits
from app.protocols.scan import EVERYTHING_SUSPECT, BodyScan

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


def _invalid(loc: Loc, msg: str, type_: str) -> InvalidRequest:
    return InvalidRequest.at(loc, msg, type_)


def bfloat16_bits_to_float32(bits: np.ndarray) -> np.ndarray:
    return (bits.astype(np.uint32) << 16).view(np.float32)


def float32_to_bfloat16_bits(values: np.ndarray) -> np.ndarray:
    """Exact for values that already are bfloat16 numbers (as every bfloat16 result is)."""
    return (np.ascontiguousarray(values, dtype=np.float32).view(np.uint32) >> 16).astype(np.uint16)


class Predecoded(NamedTuple):
    """A tensor's list decoded where its JSON was parsed (``app.protocols.parsing``): its array, or
    the error decoding it gave, its locations relative to the list."""

    array: np.ndarray | None
    error: ServiceError | None

    def at(self, loc: Loc) -> np.ndarray:
        """The array, or the error, now that the list's place in the request is known."""
        if self.array is None:
            assert self.error is not None
            raise self.error.relocated(loc)
        return self.array


def decode_tensor(
    value: Any, loc: Loc, limits: TensorLimits, scan: BodyScan = EVERYTHING_SUSPECT, default_dtype: str = "float32"
) -> np.ndarray:
    """A wire tensor as a numpy array: float64 or int64 from JSON numbers, else the sent dtype.

    ``scan`` (of the raw body) tells whether booleans or strings may sit inside lists; when
    neither can, ``numpy.asarray`` alone builds the array. An object without a ``dtype`` holds
    ``default_dtype`` bytes in base64 (the request's dtype), and list data read as JSON numbers
    are (never rounded through a narrower dtype than the request's).
    """
    if isinstance(value, bool):
        raise _invalid(loc, "booleans are not tensor elements", "boolean_element")
    if isinstance(value, (int, float)):
        return np.asarray(value, dtype=np.int64 if isinstance(value, int) else np.float64)
    if isinstance(value, str):
        if value in NON_FINITE_IN:
            return np.asarray(NON_FINITE_IN[value], dtype=np.float64)
        raise _invalid(loc, _STRING_MESSAGE, "string_element")
    if isinstance(value, list):
        return decode_nested(value, loc, limits, scan)
    if isinstance(value, Predecoded):
        return value.at(loc)
    if isinstance(value, dict):
        return _decode_object(value, loc, limits, scan, default_dtype)
    if value is None:
        raise _invalid(loc, "a tensor is required, got null", "null_tensor")
    raise _invalid(loc, f"not a tensor: {type(value).__name__}", "not_a_tensor")


_INT64 = np.iinfo(np.int64)
_MAXIMUM = np.maximum.reduce
"""The ufunc's reduction itself: ``ndarray.max`` goes through a Python wrapper (~1.4 µs a call)."""
_ALL = np.logical_and.reduce
_INT64_PAST = 2.0**63
_STRING_MESSAGE = 'strings are not tensor elements (except "NaN", "Infinity", "-Infinity")'
_RAGGED_MESSAGE = "ragged nested list: every list at the same depth must have the same length"


def _nested_shape(value: list[Any], loc: Loc, limits: TensorLimits) -> list[int]:
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


def check_size(shape: Sequence[int], loc: Loc, limits: TensorLimits) -> int:
    count = math.prod(shape)
    if count > limits.max_elements:
        raise TooLarge.at(loc, f"{count} elements exceed the limit of {limits.max_elements}", "too_many_elements")
    if count == 0:  # a dimension beside a 0 one is unbounded by the count; numpy cannot even describe a huge one
        longest = max(shape, default=0)
        if longest > limits.max_elements:
            raise TooLarge.at(
                loc, f"dimension {longest} exceeds the limit of {limits.max_elements} elements", "too_many_elements"
            )
    return count


def nested_size(value: list[Any]) -> int:
    """The elements a nested list holds, read along the first element of each level (a guess for a
    ragged list, never a long walk)."""
    size = 1
    node: Any = value
    while isinstance(node, list):
        size *= len(node)
        if not node:
            break
        node = node[0]
    return size


def decode_nested(value: list[Any], loc: Loc, limits: TensorLimits, scan: BodyScan) -> np.ndarray:
    shape = _nested_shape(value, loc, limits)
    check_size(shape, loc, limits)
    if scan.strings_in_lists:
        return _decode_exact(value, loc)
    try:
        arr = np.asarray(value)
    except (ValueError, TypeError):
        raise _invalid(loc, _RAGGED_MESSAGE, "ragged_tensor") from None
    kind = arr.dtype.kind
    if kind == "b":
        raise _invalid(loc, "booleans are not tensor elements", "boolean_element")
    if kind == "u":  # numpy's choice for integers past int64's range
        raise _invalid(loc, f"integers must lie in [{_INT64.min}, {_INT64.max}]", "integer_overflow")
    if kind == "f" and arr.size and _MAXIMUM(np.abs(arr), axis=None) >= _INT64_PAST:
        return _decode_exact(value, loc)  # numpy turns integers past int64 mixed with others into floats
    if kind in "fi" and arr.ndim == len(shape):
        return _decode_exact(value, loc) if scan.booleans_in_lists else arr
    return _decode_exact(value, loc)


def _decode_exact(value: list[Any], loc: Loc) -> np.ndarray:
    """Element by element: for non-finite tokens, and to name the first bad element."""
    try:
        objects = np.asarray(value, dtype=object)
    except (ValueError, TypeError):
        raise _invalid(loc, _RAGGED_MESSAGE, "ragged_tensor") from None
    leaves = objects.ravel().tolist()
    has_token = False
    for position, leaf in enumerate(leaves):
        kind = type(leaf)
        if kind is float:
            continue
        if kind is int:
            if not _INT64.min <= leaf <= _INT64.max:
                where = (*loc, *_unravel(position, objects.shape))
                raise _invalid(where, f"integers must lie in [{_INT64.min}, {_INT64.max}]", "integer_overflow")
            continue
        where = (*loc, *_unravel(position, objects.shape))
        if kind is str and leaf in NON_FINITE_IN:
            has_token = True
        elif kind is str:
            raise _invalid(where, _STRING_MESSAGE, "string_element")
        elif kind is bool:
            raise _invalid(where, "booleans are not tensor elements", "boolean_element")
        elif leaf is None:
            raise _invalid(where, 'null is not a tensor element; non-finite values travel as "NaN"', "null_element")
        elif kind is list:
            raise _invalid(loc, _RAGGED_MESSAGE, "ragged_tensor")
        else:
            raise _invalid(where, "tensor elements must be numbers", "not_a_number")
    if has_token:
        leaves = [NON_FINITE_IN[leaf] if type(leaf) is str else leaf for leaf in leaves]
        return np.asarray(leaves, dtype=np.float64).reshape(objects.shape)
    arr = np.asarray(leaves).reshape(objects.shape)
    if arr.dtype.kind == "u":
        raise _invalid(loc, f"integers must lie in [{_INT64.min}, {_INT64.max}]", "integer_overflow")
    return arr


def _unravel(position: int, shape: tuple[int, ...]) -> tuple[int, ...]:
    return tuple(int(i) for i in np.unravel_index(position, shape)) if shape else ()


_OBJECT_KEYS = frozenset({"shape", "dtype", "data"})


def _decode_object(
    value: dict[str, Any], loc: Loc, limits: TensorLimits, scan: BodyScan, default_dtype: str
) -> np.ndarray:
    unknown = set(value) - _OBJECT_KEYS
    if unknown:
        key = sorted(unknown)[0]
        raise _invalid((*loc, key), "unknown key in tensor object (expected shape, dtype, data)", "extra_forbidden")
    shape = value.get("shape")
    if not isinstance(shape, list) or not all(isinstance(d, int) and not isinstance(d, bool) and d >= 0 for d in shape):
        raise _invalid((*loc, "shape"), "must be a list of non-negative integers", "invalid_shape")
    if len(shape) > limits.max_rank:
        raise _invalid((*loc, "shape"), f"rank {len(shape)} exceeds the rank limit {limits.max_rank}", "rank_limit")
    count = check_size(shape, (*loc, "shape"), limits)
    declared = value.get("dtype")
    dtype_name = default_dtype if declared is None else declared
    if not isinstance(dtype_name, str) or dtype_name not in WIRE_DTYPES:
        raise _invalid((*loc, "dtype"), f"unknown dtype; one of {', '.join(WIRE_DTYPES)}", "invalid_dtype")
    data = value.get("data")
    if isinstance(data, str):
        return _from_base64(data, shape, count, dtype_name, (*loc, "data"))
    if isinstance(data, Predecoded):  # checked as a list is below
        flat = data.at((*loc, "data"))
        if len(flat) != count:
            raise _invalid((*loc, "data"), f"holds {len(flat)} values; shape {shape} needs {count}", "size_mismatch")
        if flat.ndim != 1:
            raise _invalid((*loc, "data"), "nested deeper than the rank limit 1", "rank_limit")
    elif isinstance(data, list):
        if len(data) != count:
            raise _invalid((*loc, "data"), f"holds {len(data)} values; shape {shape} needs {count}", "size_mismatch")
        flat = decode_nested(data, (*loc, "data"), TensorLimits(limits.max_elements, 1), scan) if data else np.zeros(0)
    else:
        raise _invalid((*loc, "data"), "must be a base64 string or a flat list of numbers", "invalid_data")
    if declared is None:  # JSON numbers, as in nested lists: the engine casts them once to the request's dtype
        return flat.reshape(shape)
    return _cast_declared(flat, dtype_name, (*loc, "data")).reshape(shape)


def _from_base64(data: str, shape: list[int], count: int, dtype_name: str, loc: Loc) -> np.ndarray:
    dtype = WIRE_DTYPES[dtype_name]
    try:
        raw = binascii.a2b_base64(data, strict_mode=True)
    except (binascii.Error, ValueError):
        raise _invalid(loc, "not valid base64", "invalid_base64") from None
    if len(raw) != count * dtype.itemsize:
        needed = count * dtype.itemsize
        raise _invalid(loc, f"holds {len(raw)} bytes; shape {shape} of {dtype_name} needs {needed}", "size_mismatch")
    arr = np.frombuffer(bytearray(raw), dtype=dtype).reshape(shape)  # bytearray: writable, as torch wants
    if dtype_name == "bfloat16":
        return bfloat16_bits_to_float32(arr)
    return arr.astype(arr.dtype.newbyteorder("="), copy=False)


_BFLOAT16_MAX = 3.3895313892515355e38


def _cast_declared(flat: np.ndarray, dtype_name: str, loc: Loc) -> np.ndarray:
    """Flat list data as the object's declared dtype, refusing values that do not fit it."""
    dtype = WIRE_DTYPES[dtype_name]
    if dtype.kind in "iu" and dtype_name != "bfloat16":
        if flat.dtype.kind == "f":
            raise _invalid(loc, f"{dtype_name} data must be integers", "wrong_type")
        info = np.iinfo(dtype)
        if flat.size and (int(flat.min()) < info.min or int(flat.max()) > info.max):
            raise _invalid(loc, f"values must lie in [{info.min}, {info.max}] for {dtype_name}", "dtype_overflow")
        return flat.astype(dtype.newbyteorder("="))
    if dtype_name == "bfloat16":
        finite = flat[np.isfinite(flat)] if flat.dtype.kind == "f" else flat
        if finite.size and float(np.abs(finite).max()) > _BFLOAT16_MAX:
            raise _invalid(loc, "a value overflows bfloat16", "dtype_overflow")
        return flat.astype(np.float64)
    with np.errstate(over="ignore", invalid="ignore"):
        cast = flat.astype(dtype.newbyteorder("="))
    if cast.size and not bool(np.isfinite(cast).all()) and bool((np.isfinite(flat) & ~np.isfinite(cast)).any()):
        raise _invalid(loc, f"a value overflows {dtype_name}", "dtype_overflow")
    return cast


def encode_tensor(arr: np.ndarray, dtype_name: str, encoding: Encoding) -> Any:
    """A reply tensor: a number, a nested list (orjson serialises numpy) or the object form.

    ``arr`` holds the values in a numpy dtype; for bfloat16 that is float32 holding exact
    bfloat16 numbers. Non-finite values become "NaN", "Infinity", "-Infinity".
    """
    if encoding == "base64":
        bits = float32_to_bfloat16_bits(arr) if dtype_name == "bfloat16" else arr
        little = np.ascontiguousarray(bits).astype(bits.dtype.newbyteorder("<"), copy=False)
        data = binascii.b2a_base64(little.reshape(-1).view(np.uint8).data, newline=False).decode("ascii")
        return {"shape": list(arr.shape), "dtype": dtype_name, "data": data}
    if arr.ndim == 0:  # a reduced loss: one number, checked without numpy's machinery
        scalar = arr.item()
        return scalar if math.isfinite(scalar) else _non_finite_token(scalar)
    if arr.size == 0:
        return {"shape": list(arr.shape), "dtype": dtype_name, "data": []}
    if arr.size > ENCODE_STEP:
        return orjson.Fragment(_json_in_steps(np.ascontiguousarray(arr)))
    if _finite(arr):
        return np.ascontiguousarray(arr)
    return _with_tokens(arr).tolist()


ENCODE_STEP = 65536
"""A tensor larger than this is written as JSON a piece of at most this many elements at a time:
each piece holds the interpreter lock for a few milliseconds, so the event loop gets its turn
between them (orjson writes a whole array in one call: ~70 ms for a million floats)."""


def _finite(arr: np.ndarray) -> bool:
    return bool(_ALL(np.isfinite(arr), axis=None)) if arr.dtype.kind == "f" else True


def _json_in_steps(arr: np.ndarray) -> bytes:
    """``arr`` as the JSON text orjson writes for it (non-finite values as strings), in pieces."""
    if arr.size <= ENCODE_STEP:
        return orjson.dumps(arr if _finite(arr) else _with_tokens(arr).tolist(), option=orjson.OPT_SERIALIZE_NUMPY)
    row = arr.size // len(arr)
    if row > ENCODE_STEP:  # a row too large for one piece: each row in pieces of its own
        return b"[" + b",".join(_json_in_steps(item) for item in arr) + b"]"
    rows = max(1, ENCODE_STEP // max(row, 1))
    pieces = [_json_in_steps(arr[start : start + rows])[1:-1] for start in range(0, len(arr), rows)]
    return b"[" + b",".join(pieces) + b"]"


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
