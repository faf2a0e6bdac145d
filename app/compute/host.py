"""Host-side tensor conversions: numpy arrays to torch tensors in the computation dtype, and back."""

from __future__ import annotations

import numpy as np
import torch

from app.core.errors import InvalidRequest, Loc


def cast_on_host(arr: np.ndarray, dtype: torch.dtype, loc: Loc, keep_integer: bool) -> torch.Tensor:
    """A host tensor in the computation dtype (integers stay int64); refuses finite values that overflow."""
    source = torch.from_numpy(np.asarray(arr, order="C"))  # keeps 0-d arrays 0-d
    if keep_integer:
        return source.to(torch.int64)
    cast = source.to(dtype)
    if cast.numel() and _narrows(source.dtype, dtype) and not _all_finite(cast):
        overflow = ~torch.isfinite(cast) & torch.isfinite(source)
        if bool(overflow.any()):
            first = int(torch.nonzero(overflow.flatten())[0])
            index = [int(i) for i in np.unravel_index(first, arr.shape)]
            value = source.flatten()[first].item()
            dtype_name = str(dtype).removeprefix("torch.")
            raise InvalidRequest.at(loc, f"element {index} = {value!r} overflows {dtype_name}", "dtype_overflow")
    return cast


def _narrows(source: torch.dtype, target: torch.dtype) -> bool:
    """Whether a finite value of ``source`` can become infinite in ``target``."""
    if not source.is_floating_point:
        return target in (torch.float16, torch.bfloat16)
    return torch.finfo(source).max > torch.finfo(target).max or (source, target) == (torch.float16, torch.bfloat16)


def _all_finite(tensor: torch.Tensor) -> bool:
    if tensor.dtype == torch.bfloat16:
        return bool(torch.isfinite(tensor).all())
    return bool(np.isfinite(tensor.numpy()).all())  # numpy's check is many times faster on the host


def to_host(tensor: torch.Tensor) -> np.ndarray:
    """A numpy array of the tensor's values; bfloat16 as float32 holding exact bfloat16 numbers."""
    tensor = tensor.detach()
    if tensor.dtype == torch.bfloat16:
        tensor = tensor.float()
    return tensor.cpu().numpy()
