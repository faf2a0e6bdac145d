"""Tensors of the Open Inference Protocol: its datatypes, JSON ``data`` and raw bytes.

Raw bytes are the binary tensor data extension's: little-endian, row-major, BF16 as its 16 bits.
JSON ``data`` is a flat (or nested) row-major list of numbers; non-finite values travel as the
strings "NaN", "Infinity", "-Infinity", as everywhere else in this service.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from app.core.config import FloatDType
from app.core.errors import InvalidRequest, Loc
from app.core.limits import TensorLimits
from app.protocols.scan import BodyScan
from app.protocols.tensors import (
    Predecoded,
    bfloat16_bits_to_float32,
    check_size,
    decode_tensor,
    encode_tensor,
    float32_to_bfloat16_bits,
)

FLOAT_DATATYPES: dict[str, FloatDType] = {"FP16": "float16", "FP32": "float32", "FP64": "float64", "BF16": "bfloat16"}
DATATYPE_OF: dict[FloatDType, str] = {dtype: datatype for datatype, dtype in FLOAT_DATATYPES.items()}
INTEGER_DATATYPES: tuple[str, ...] = ("INT8", "INT16", "INT32", "INT64", "UINT8", "UINT16", "UINT32", "UINT64")
DATATYPES: tuple[str, ...] = (*FLOAT_DATATYPES, *INTEGER_DATATYPES)

_WIRE: dict[str, np.dtype[Any]] = {
    "FP16": np.dtype("<f2"),
    "FP32": np.dtype("<f4"),
    "FP64": np.dtype("<f8"),
    "BF16": np.dtype("<u2"),
    "INT8": np.dtype("i1"),
    "INT16": np.dtype("<i2"),
    "INT32": np.dtype("<i4"),
    "INT64": np.dtype("<i8"),
    "UINT8": np.dtype("u1"),
    "UINT16": np.dtype("<u2"),
    "UINT32": np.dtype("<u4"),
    "UINT64": np.dtype("<u8"),
}
"""Each datatype's element as it lies in the binary data (BF16: its raw bits)."""

_INT64_MAX = int(np.iinfo(np.int64).max)
_NOT_SERVED = {
    "BOOL": "BOOL tensors are not arguments of any function here",
    "BYTES": "BYTES tensors are not arguments of any function here",
}


def check_datatype(datatype: str, loc: Loc) -> None:
    if datatype in _WIRE:
        return
    reason = _NOT_SERVED.get(datatype, "unknown datatype")
    raise InvalidRequest.at(loc, f"{reason}; one of {', '.join(DATATYPES)}", "invalid_datatype")


def item_size(datatype: str) -> int:
    """Bytes of one element of ``datatype`` in the binary data."""
    return _WIRE[datatype].itemsize


def wire_dtype(datatype: str) -> np.dtype[Any]:
    """One element of ``datatype`` as it lies in the binary data (BF16: its raw bits)."""
    return _WIRE[datatype]


def element_count(shape: list[int], loc: Loc, limits: TensorLimits) -> int:
    """The number of elements of ``shape``, within the rank and size limits."""
    if len(shape) > limits.max_rank:
        raise InvalidRequest.at(loc, f"rank {len(shape)} exceeds the rank limit {limits.max_rank}", "rank_limit")
    return check_size(shape, loc, limits)


def from_bytes(raw: memoryview, shape: list[int], datatype: str, loc: Loc) -> np.ndarray:
    """An array over ``raw`` (a writable buffer, not copied where the datatype allows)."""
    dtype = _WIRE[datatype]
    needed = math.prod(shape) * dtype.itemsize
    if len(raw) != needed:
        raise InvalidRequest.at(
            loc, f"binary_data_size is {len(raw)} bytes; shape {shape} of {datatype} needs {needed}", "size_mismatch"
        )
    arr = np.frombuffer(raw, dtype=dtype).reshape(shape)
    if not arr.flags.aligned:  # the JSON header's length decides where the bytes start
        arr = arr.copy()
    if datatype == "BF16":
        return bfloat16_bits_to_float32(arr)
    if datatype.startswith("UINT") and datatype != "UINT8":
        return _to_int64(arr, datatype, loc)
    return arr.astype(dtype.newbyteorder("="), copy=False)


def from_json(data: Any, shape: list[int], datatype: str, loc: Loc, limits: TensorLimits, scan: BodyScan) -> np.ndarray:
    """``data`` (flat or nested, row-major) as an array of ``shape`` holding ``datatype`` values;
    ``scan`` (of the JSON text) says whether the exact element-by-element path is needed."""
    if not isinstance(data, (list, Predecoded)):
        raise InvalidRequest.at(loc, "must be a list of numbers (row-major, flat or nested)", "invalid_data")
    count = math.prod(shape)
    values = decode_tensor(data, loc, limits, scan) if data else np.zeros(0)
    if values.size != count:
        raise InvalidRequest.at(loc, f"holds {values.size} values; shape {shape} needs {count}", "size_mismatch")
    if values.ndim != 1 or len(shape) != 1:  # (a flat list for a 1-d shape has it already)
        values = values.reshape(shape)
    if datatype in FLOAT_DATATYPES:
        return _as_float(values, datatype, loc)
    if values.dtype.kind not in "iu":
        raise InvalidRequest.at(loc, f"{datatype} data must be integers", "wrong_type")
    info = np.iinfo(_WIRE[datatype])
    if values.size and (int(values.min()) < info.min or int(values.max()) > info.max):
        raise InvalidRequest.at(loc, f"values must lie in [{info.min}, {info.max}] for {datatype}", "dtype_overflow")
    return _to_int64(values, datatype, loc)


def _as_float(values: np.ndarray, datatype: str, loc: Loc) -> np.ndarray:
    """JSON numbers stay as parsed (float64, or int64): the engine casts them to the request's
    datatype, refusing a finite value that overflows it, as it does for ``/activate``."""
    if values.dtype.kind not in "fiu":
        raise InvalidRequest.at(loc, "tensor elements must be numbers", "not_a_number")
    return values


def _to_int64(values: np.ndarray, datatype: str, loc: Loc) -> np.ndarray:
    if datatype == "UINT64" and values.size and int(values.max()) > _INT64_MAX:
        raise InvalidRequest.at(loc, f"UINT64 values above {_INT64_MAX} are not supported", "dtype_overflow")
    return values.astype(np.int64, copy=False)


def to_bytes(values: np.ndarray, datatype: str) -> memoryview:
    """The raw little-endian bytes of a reply tensor (float32 values for BF16: exact bfloat16 numbers)."""
    if datatype == "BF16":
        values = float32_to_bfloat16_bits(values)
    little = np.ascontiguousarray(values).astype(values.dtype.newbyteorder("<"), copy=False)
    return little.reshape(-1).data.cast("B")


def to_json_data(values: np.ndarray, datatype: str) -> Any:
    """The flat row-major ``data`` of a reply tensor: numbers, non-finite ones as strings."""
    if values.size == 0:
        return []
    dtype_name = FLOAT_DATATYPES.get(datatype, "float32")
    return encode_tensor(values if values.ndim == 1 else values.reshape(-1), dtype_name, "json")
