"""Run one job with torch: cast on the host, move to the device, compute, differentiate, return.

Called from worker threads only, never on the event loop.
"""

from __future__ import annotations

import re

import numpy as np
import torch

from app.compute.jobs import Job, Result
from app.core.config import FloatDType
from app.core.errors import DeviceFailure, InvalidRequest, Loc, Overloaded, UnsupportedDType

TORCH_DTYPES: dict[FloatDType, torch.dtype] = {
    "float32": torch.float32,
    "float64": torch.float64,
    "float16": torch.float16,
    "bfloat16": torch.bfloat16,
}
_NOT_IMPLEMENTED = re.compile(r"not implemented for '(\w+)'")
_MAX_TORCH_MESSAGE = 300


def resolve_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    device = torch.device(name)
    if device.type == "cuda":
        if not torch.cuda.is_available():
            raise RuntimeError(f"device {name!r} requested but CUDA is not available")
        index = device.index or 0
        if index >= torch.cuda.device_count():
            raise RuntimeError(f"device {name!r} requested but only {torch.cuda.device_count()} GPU(s) exist")
    return device


class Engine:
    """Computes jobs on one device."""

    def __init__(self, device: torch.device) -> None:
        self.device = device

    def run(self, job: Job) -> Result:
        dtype = TORCH_DTYPES[job.dtype]
        tensors = {
            name: self._to_device(arr, dtype, job.locs[name], keep_integer=self._is_index(job, name, arr))
            for name, arr in job.arrays.items()
        }
        leaves = [tensors[name] for name in job.spec.differentiable if job.grad and tensors[name].is_floating_point()]
        for leaf in leaves:
            leaf.requires_grad_(True)
        try:
            with torch.set_grad_enabled(job.grad):
                output = job.spec.call(tensors, job.params)
                grads = self._gradients(job, output, leaves, dtype) if job.grad else None
        except (RuntimeError, ValueError, IndexError, TypeError) as error:
            raise self._translate(error, job) from None
        names = [name for name in job.spec.differentiable if name in tensors and tensors[name].is_floating_point()]
        return Result(
            output=_to_host(output),
            grads=None if grads is None else {name: _to_host(g) for name, g in zip(names, grads, strict=True)},
        )

    @staticmethod
    def _is_index(job: Job, name: str, arr: np.ndarray) -> bool:
        arg = job.spec.tensor(name)
        return arg is not None and arg.kind != "float" and arr.dtype.kind in "iu"

    def _to_device(self, arr: np.ndarray, dtype: torch.dtype, loc: Loc, keep_integer: bool) -> torch.Tensor:
        source = torch.from_numpy(np.asarray(arr, order="C"))  # keeps 0-d arrays 0-d
        if keep_integer:
            return source.to(self.device, torch.int64)
        cast = source.to(dtype)
        if cast.numel() and not bool(torch.isfinite(cast).all()):
            overflow = ~torch.isfinite(cast) & torch.isfinite(source)
            if bool(overflow.any()):
                first = int(torch.nonzero(overflow.flatten())[0])
                index = [int(i) for i in np.unravel_index(first, arr.shape)]
                value = source.flatten()[first].item()
                dtype_name = str(dtype).removeprefix("torch.")
                raise InvalidRequest.at(loc, f"element {index} = {value!r} overflows {dtype_name}", "dtype_overflow")
        return cast.to(self.device)

    def _gradients(
        self, job: Job, output: torch.Tensor, leaves: list[torch.Tensor], dtype: torch.dtype
    ) -> list[torch.Tensor]:
        if job.grad_output is not None:
            weight = self._to_device(job.grad_output, dtype, job.locs["grad_output"], keep_integer=False)
            if weight.shape != output.shape:
                raise InvalidRequest.at(
                    job.locs["grad_output"],
                    f"shape {list(weight.shape)} must equal the output's shape {list(output.shape)}",
                    "shape_mismatch",
                )
        else:
            weight = torch.ones_like(output)
        if not leaves:
            return []
        if not output.requires_grad:
            return [torch.zeros_like(leaf) for leaf in leaves]
        grads = torch.autograd.grad(output, leaves, weight, allow_unused=True)
        return [torch.zeros_like(leaf) if g is None else g for g, leaf in zip(grads, leaves, strict=True)]

    def _translate(self, error: Exception, job: Job) -> Exception:
        if isinstance(error, torch.OutOfMemoryError):
            return Overloaded.at(("device",), "the device ran out of memory; retry later or send less", "out_of_memory")
        message = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
        if "CUDA error" in message or "device-side assert" in message:
            return DeviceFailure.at(("device",), "the device failed; the service needs a restart", "device_failure")
        unsupported = _NOT_IMPLEMENTED.search(message)
        if unsupported:
            return UnsupportedDType.at(
                ("body", "dtype"),
                f"{job.spec.name} has no {job.dtype} kernel on {self.device.type} ({message[:_MAX_TORCH_MESSAGE]})",
                "unsupported_dtype",
            )
        return InvalidRequest.at(
            ("body",), f"torch rejected the request: {message[:_MAX_TORCH_MESSAGE]}", "torch_error"
        )


def _to_host(tensor: torch.Tensor) -> np.ndarray:
    tensor = tensor.detach()
    if tensor.dtype == torch.bfloat16:
        tensor = tensor.float()
    return tensor.cpu().numpy()
