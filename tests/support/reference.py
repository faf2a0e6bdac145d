"""Helpers for comparing the service with torch bit for bit.

* ``encode`` turns a tensor into one of the wire forms the service accepts: JSON numbers and
  nested lists (``"json"``) or the object form with base64 little-endian data (``"base64"``;
  bfloat16 travels as its raw 16-bit patterns).
* ``decode`` turns a reply tensor back into a torch tensor of the requested dtype: numbers and
  nested lists are parsed as float64 and then cast (exact, since the service prints every value
  in its shortest round-tripping form), the object form is read as its bytes.
* ``assert_same`` demands bitwise equality: same dtype, same shape, NaN at the same positions and
  every other element with the same bits (so ``0.0`` and ``-0.0`` differ). ``assert_close`` is
  only for what torch itself computes nondeterministically.
"""

from __future__ import annotations

import base64
import math
from typing import Any, Literal

import numpy as np
import torch

WireForm = Literal["json", "base64"]

DTYPES: dict[str, torch.dtype] = {
    "float32": torch.float32,
    "float64": torch.float64,
    "float16": torch.float16,
    "bfloat16": torch.bfloat16,
}
"""The floating-point dtypes of the service, by wire name."""

_WIRE_NAMES: dict[torch.dtype, str] = {
    torch.float32: "float32",
    torch.float64: "float64",
    torch.float16: "float16",
    torch.bfloat16: "bfloat16",
    torch.int64: "int64",
    torch.int32: "int32",
}
_NUMPY_WIRE: dict[str, np.dtype[Any]] = {
    "float64": np.dtype("<f8"),
    "float32": np.dtype("<f4"),
    "float16": np.dtype("<f2"),
    "bfloat16": np.dtype("<u2"),
    "int64": np.dtype("<i8"),
    "int32": np.dtype("<i4"),
}
_TOKENS: dict[str, float] = {"NaN": math.nan, "Infinity": math.inf, "-Infinity": -math.inf}
_SAME_WIDTH_INT: dict[torch.dtype, torch.dtype] = {
    torch.float64: torch.int64,
    torch.float32: torch.int32,
    torch.float16: torch.int16,
    torch.bfloat16: torch.int16,
}


def wire_name(dtype: torch.dtype) -> str:
    return _WIRE_NAMES[dtype]


def as_tensor(value: np.ndarray | torch.Tensor, dtype: torch.dtype | None = None) -> torch.Tensor:
    """A CPU tensor; floating values cast to ``dtype`` (integers are kept as int64)."""
    # np.array, not np.ascontiguousarray: the latter turns a 0-d array into shape (1,).
    tensor = value.detach().cpu() if isinstance(value, torch.Tensor) else torch.from_numpy(np.array(value, order="C"))
    if tensor.is_floating_point():
        return tensor.to(dtype) if dtype is not None else tensor
    return tensor.to(torch.int64)


# --- encoding requests -------------------------------------------------------------------------


def _token(value: float) -> float | str:
    if math.isnan(value):
        return "NaN"
    if math.isinf(value):
        return "Infinity" if value > 0 else "-Infinity"
    return value


def _with_tokens(value: Any) -> Any:
    if isinstance(value, list):
        return [_with_tokens(item) for item in value]
    if isinstance(value, float):
        return _token(value)
    return value


def _raw_bytes(tensor: torch.Tensor) -> bytes:
    """Little-endian C-order bytes; bfloat16 as its 16-bit patterns."""
    tensor = tensor.detach().cpu().contiguous()
    name = wire_name(tensor.dtype)
    bits = tensor.view(torch.int16) if tensor.dtype == torch.bfloat16 else tensor
    array = bits.numpy()
    return array.astype(_NUMPY_WIRE[name], order="C", copy=False).tobytes()


def encode(value: np.ndarray | torch.Tensor, form: WireForm, dtype: torch.dtype | None = None) -> Any:
    """A tensor in a wire form, its floating values first cast to ``dtype`` (when given).

    ``"json"``: a number for a 0-d tensor, nested lists otherwise, non-finite values as the tokens
    "NaN", "Infinity", "-Infinity"; a zero-size tensor (which nested lists cannot shape) goes in the
    object form with an empty data list. ``"base64"``: the object form with base64 data.
    """
    tensor = as_tensor(value, dtype)
    name = wire_name(tensor.dtype)
    if form == "base64":
        return {"shape": list(tensor.shape), "dtype": name, "data": base64.b64encode(_raw_bytes(tensor)).decode()}
    if tensor.numel() == 0:
        return {"shape": list(tensor.shape), "dtype": name, "data": []}
    # float64 holds every value of each floating dtype exactly, and prints it in a form that
    # parses back to the same float64.
    plain = tensor.double().tolist() if tensor.is_floating_point() else tensor.tolist()
    return _with_tokens(plain)


# --- decoding replies ---------------------------------------------------------------------------


def _parse_number(value: Any) -> float:
    if isinstance(value, str):
        assert value in _TOKENS, f"unexpected string {value!r} in a reply tensor"
        return _TOKENS[value]
    assert isinstance(value, (int, float)), f"not a number: {value!r}"
    assert not isinstance(value, bool), f"not a number: {value!r}"
    return float(value)


def _parse_nested(value: Any) -> Any:
    if isinstance(value, list):
        return [_parse_nested(item) for item in value]
    return _parse_number(value)


def _from_float64(values: Any, shape: list[int] | None, dtype: torch.dtype) -> torch.Tensor:
    array = np.asarray(values, dtype=np.float64)
    if shape is not None:
        array = array.reshape(shape)
    return torch.from_numpy(array).to(dtype)


def decode(value: Any, dtype: torch.dtype) -> torch.Tensor:
    """A reply tensor (number, token, nested list or object form) as a CPU tensor of ``dtype``."""
    if isinstance(value, dict):
        assert set(value) == {"shape", "dtype", "data"}, f"unexpected keys in tensor object: {sorted(value)}"
        shape, data = value["shape"], value["data"]
        assert value["dtype"] == wire_name(dtype), f"object form of dtype {value['dtype']}, expected {dtype}"
        assert isinstance(shape, list), f"shape is not a list: {shape!r}"
        if isinstance(data, list):
            assert len(data) == math.prod(shape), f"{len(data)} values for shape {shape}"
            return _from_float64([_parse_number(item) for item in data], shape, dtype)
        assert isinstance(data, str), f"data is neither a list nor a base64 string: {data!r}"
        raw = base64.b64decode(data, validate=True)
        array = np.frombuffer(raw, dtype=_NUMPY_WIRE[wire_name(dtype)]).reshape(shape)
        if dtype == torch.bfloat16:
            return torch.from_numpy(array.astype(np.int16)).view(torch.bfloat16)
        return torch.from_numpy(array.astype(array.dtype.newbyteorder("="))).to(dtype)
    return _from_float64(_parse_nested(value), None, dtype)


def is_object_form(value: Any, base64_data: bool) -> bool:
    """Whether ``value`` is the object form, holding base64 data (or else a list)."""
    if not isinstance(value, dict):
        return False
    return isinstance(value.get("data"), str if base64_data else list)


# --- comparing ----------------------------------------------------------------------------------


def _describe_mismatches(actual: torch.Tensor, expected: torch.Tensor, bad: torch.Tensor, limit: int = 5) -> str:
    flat_a, flat_e = actual.reshape(-1), expected.reshape(-1)
    flat_bad = torch.nonzero(bad.reshape(-1)).reshape(-1).tolist()
    lines = []
    for index in flat_bad[:limit]:
        where = [int(i) for i in np.unravel_index(index, tuple(actual.shape))]
        lines.append(f"  at {where}: service {flat_a[index].item()!r}, torch {flat_e[index].item()!r}")
    return f"{len(flat_bad)} of {actual.numel()} elements differ:\n" + "\n".join(lines)


def assert_same(actual: torch.Tensor, expected: torch.Tensor) -> None:
    """Bitwise equality, NaN positions included (any NaN payload matches any NaN)."""
    expected = expected.detach().cpu()
    actual = actual.detach().cpu()
    assert actual.dtype == expected.dtype, f"dtype {actual.dtype} != {expected.dtype}"
    assert actual.shape == expected.shape, f"shape {list(actual.shape)} != {list(expected.shape)}"
    a_nan, e_nan = torch.isnan(actual), torch.isnan(expected)
    nan_differs = a_nan != e_nan
    assert not bool(nan_differs.any()), "NaN positions differ: " + _describe_mismatches(actual, expected, nan_differs)
    int_dtype = _SAME_WIDTH_INT[actual.dtype]
    a_bits = actual.contiguous().reshape(-1).view(int_dtype)
    e_bits = expected.contiguous().reshape(-1).view(int_dtype)
    bits_differ = (a_bits != e_bits) & ~e_nan.reshape(-1)
    assert not bool(bits_differ.any()), _describe_mismatches(actual, expected, bits_differ)


def assert_close(actual: torch.Tensor, expected: torch.Tensor) -> None:
    """For results torch itself does not reproduce bit for bit (nondeterministic CUDA kernels,
    whose atomic accumulation order varies from call to call): within a few units of rounding of
    the dtype, with NaN at the same positions."""
    expected = expected.detach().cpu()
    actual = actual.detach().cpu()
    assert actual.dtype == expected.dtype, f"dtype {actual.dtype} != {expected.dtype}"
    eps = torch.finfo(expected.dtype).eps if expected.is_floating_point() else 0.0
    torch.testing.assert_close(actual, expected, equal_nan=True, rtol=4 * eps, atol=4 * eps)
