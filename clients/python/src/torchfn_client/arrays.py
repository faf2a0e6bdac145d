"""What callers pass as tensors (numpy arrays, torch tensors, nested lists, numbers) as numpy
arrays, and numpy arrays back as torch tensors. torch is imported only when the caller uses it."""

from __future__ import annotations

import sys
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Final, TypeAlias

import ml_dtypes
import numpy as np
import numpy.typing as npt

if TYPE_CHECKING:
    import torch

Array: TypeAlias = npt.NDArray[Any]
TensorLike: TypeAlias = "Array | torch.Tensor | list[Any] | tuple[Any, ...] | float | int"
"""A numpy array, a torch tensor, a nested list (or tuple) of numbers, or a number."""

BFLOAT16: Final = np.dtype(ml_dtypes.bfloat16)

FLOAT_DTYPES: Final[dict[str, np.dtype[Any]]] = {
    "float32": np.dtype(np.float32),
    "float64": np.dtype(np.float64),
    "float16": np.dtype(np.float16),
    "bfloat16": BFLOAT16,
}
"""The dtypes the service computes in, by wire name."""

INT_DTYPES: Final[dict[str, np.dtype[Any]]] = {
    name: np.dtype(name) for name in ("int64", "int32", "int16", "int8", "uint8")
}
"""Integer element types the wire carries (class indices, lengths)."""

WIRE_NAMES: Final[dict[np.dtype[Any], str]] = {dtype: name for name, dtype in {**FLOAT_DTYPES, **INT_DTYPES}.items()}


@dataclass(frozen=True)
class Given:
    """A caller's tensor: as an array, or (``array is None``) the raw value, sent unchanged so
    that the server names what is wrong with it."""

    array: Array | None
    raw: Any
    typed: bool
    """It came with its own dtype (a numpy array or a torch tensor), not as Python numbers."""

    @property
    def float_dtype(self) -> str | None:
        if self.array is None or not self.typed:
            return None
        name = WIRE_NAMES.get(self.array.dtype)
        return name if name in FLOAT_DTYPES else None


def _torch_tensor_type() -> type | None:
    torch = sys.modules.get("torch")  # a torch tensor can only exist where torch is imported
    return getattr(torch, "Tensor", None) if torch is not None else None


def _from_torch(tensor: Any, name: str) -> Array:
    import torch

    cpu = tensor.detach().cpu()
    if cpu.dtype == torch.bfloat16:
        bits: Array = cpu.contiguous().view(torch.int16).numpy()
        return bits.view(BFLOAT16)
    if cpu.dtype.is_complex or cpu.dtype == torch.bool:
        raise TypeError(f"{name}: torch dtype {cpu.dtype} is not a tensor type of the service")
    try:
        array: Array = cpu.numpy()
    except TypeError as error:
        raise TypeError(f"{name}: {error}") from None
    return array


def _wire_compatible(array: Array, name: str) -> Array:
    """The array in a dtype the wire carries: other unsigned integers widened to int64 where exact."""
    if array.dtype in WIRE_NAMES:
        return array
    kind = array.dtype.kind
    if kind == "u" and (array.dtype.itemsize < 8 or array.size == 0 or int(array.max()) <= np.iinfo(np.int64).max):
        return array.astype(np.int64)
    if kind in "iu":
        raise TypeError(f"{name}: integer dtype {array.dtype} does not fit int64")
    raise TypeError(f"{name}: dtype {array.dtype} is not a tensor type of the service")


def as_given(value: TensorLike, name: str) -> Given:
    """``value`` as the client sends it. Numbers and nested lists become arrays when numpy reads
    them as numbers; anything else (booleans, strings, ragged lists) goes to the server unchanged,
    which answers a 422 naming the element."""
    torch_tensor = _torch_tensor_type()
    if torch_tensor is not None and isinstance(value, torch_tensor):
        return Given(_wire_compatible(_from_torch(value, name), name), value, typed=True)
    if isinstance(value, np.ndarray | np.generic):
        return Given(_wire_compatible(np.asarray(value), name), value, typed=True)
    if isinstance(value, bool) or not isinstance(value, int | float | list | tuple):
        return Given(None, value, typed=False)
    try:
        array = np.asarray(value)
    except (ValueError, TypeError):
        return Given(None, value, typed=False)
    if array.dtype.kind not in "iuf" or (array.dtype.kind == "u" and array.dtype.itemsize == 8):
        return Given(None, value, typed=False)
    return Given(array, value, typed=False)


def float_dtype_name(dtype: Any) -> str:
    """The wire name of a floating-point dtype given by name, numpy dtype or torch dtype."""
    if isinstance(dtype, str) and dtype in FLOAT_DTYPES:
        return dtype
    torch = sys.modules.get("torch")
    if torch is not None and isinstance(dtype, torch.dtype):
        name = str(dtype).removeprefix("torch.")
        if name in FLOAT_DTYPES:
            return name
    else:
        try:
            numpy_name = WIRE_NAMES.get(np.dtype(dtype))
        except TypeError:
            numpy_name = None
        if numpy_name in FLOAT_DTYPES:
            return str(numpy_name)
    raise ValueError(f"dtype must be one of {', '.join(FLOAT_DTYPES)}, got {dtype!r}")


def to_torch(array: Array) -> torch.Tensor:
    """A numpy array (bfloat16 included) as a torch tensor sharing its memory where torch can."""
    import torch

    contiguous = array if array.flags.c_contiguous else array.copy()  # ascontiguousarray would make 0-d 1-d
    if contiguous.dtype == BFLOAT16:
        return torch.from_numpy(contiguous.view(np.int16)).view(torch.bfloat16)
    return torch.from_numpy(contiguous)
