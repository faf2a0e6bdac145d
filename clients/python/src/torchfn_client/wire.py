"""Tensors on the service's JSON wire, both ways, exact in every dtype.

Small finite arrays travel as nested JSON lists (readable; every float of every dtype is a
float64 that JSON carries exactly); the others in the object form
``{"shape": [...], "dtype": ..., "data": "<base64 of the little-endian C-order bytes>"}``,
bfloat16 as its raw 16-bit patterns. Replies come back as the caller's dtype, never rounded.
"""

from __future__ import annotations

import base64
from typing import Any

import numpy as np

from torchfn_client.arrays import BFLOAT16, FLOAT_DTYPES, INT_DTYPES, WIRE_NAMES, Array, Given

_WIRE_BYTES: dict[str, np.dtype[Any]] = {
    **{name: dtype.newbyteorder("<") for name, dtype in FLOAT_DTYPES.items() if name != "bfloat16"},
    "bfloat16": np.dtype("<u2"),
    **{name: dtype.newbyteorder("<") for name, dtype in INT_DTYPES.items()},
}
"""How each wire dtype's elements are laid out in the base64 bytes."""


class TensorEncoder:
    """Encodes one request's tensors; remembers whether any went as base64, so the reply can be
    asked for in the same form."""

    def __init__(self, list_max_elements: int) -> None:
        self.list_max_elements = list_max_elements
        self.used_base64 = False

    def encode(self, given: Given) -> Any:
        array = given.array
        if array is None:
            return given.raw
        if array.ndim == 0 and _is_finite(array):
            return array.item() if array.dtype.kind in "iu" else float(array.astype(np.float64))
        if 0 < array.size <= self.list_max_elements and _is_finite(array):
            return array.tolist() if array.dtype.kind in "iu" else array.astype(np.float64).tolist()
        return self._object_form(array)

    def _object_form(self, array: Array) -> dict[str, Any]:
        name = WIRE_NAMES[array.dtype]
        self.used_base64 = True
        bits = array.view(np.uint16) if array.dtype == BFLOAT16 else array
        little = np.ascontiguousarray(bits, dtype=_WIRE_BYTES[name])
        return {"shape": list(array.shape), "dtype": name, "data": base64.b64encode(little.data).decode("ascii")}


def _is_finite(array: Array) -> bool:
    return array.dtype.kind in "iu" or bool(np.isfinite(array).all())  # ml_dtypes gives bfloat16 isfinite


def decode_tensor(value: Any, dtype_name: str) -> Array:
    """A reply tensor (number, nested list, or object form) as an array of the reply's dtype.

    JSON numbers are the shortest decimals of the values in their own dtype, so the float64 that
    reads them casts back to exactly that value; non-finite ones are "NaN", "Infinity", "-Infinity".
    """
    if isinstance(value, dict):
        return _decode_object(value)
    target = FLOAT_DTYPES.get(dtype_name)
    if target is None:
        raise ValueError(f"the reply names an unknown dtype {dtype_name!r}")
    return np.asarray(value, dtype=np.float64).astype(target)


def _decode_object(value: dict[str, Any]) -> Array:
    name, shape, data = value["dtype"], value["shape"], value["data"]
    if isinstance(data, str):
        layout = _WIRE_BYTES[name]
        array = np.frombuffer(bytearray(base64.b64decode(data)), dtype=layout).reshape(shape)
        if name == "bfloat16":
            return array.view(BFLOAT16)
        return array.astype(layout.newbyteorder("="), copy=False)
    if name in INT_DTYPES:
        return np.asarray(data, dtype=INT_DTYPES[name]).reshape(shape)
    return np.asarray(data, dtype=np.float64).astype(FLOAT_DTYPES[name]).reshape(shape)
