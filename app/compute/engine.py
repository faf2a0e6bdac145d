"""Run one job with torch: cast on the host, move to the device, compute, differentiate, return.

Called from worker threads only, never on the event loop.
"""

from __future__ import annotations

import logging
import math
import re
import traceback
from collections.abc import Sequence
from typing import Any

import numpy as np
import torch

from app.compute.catalogue import FunctionSpec
from app.compute.catalogue.plugin_calls import PluginRefusal
from app.compute.chaining import activation_cost
from app.compute.fusion import fused_call
from app.compute.host import cast_on_host, to_host
from app.compute.jobs import Job, Result, job_estimate, over_cost_limit, reserved_bytes, run_checks
from app.compute.torch_warnings import collecting
from app.core.config import FloatDType
from app.core.errors import (
    DeviceFailure,
    InvalidRequest,
    Loc,
    Overloaded,
    PluginFailure,
    Problem,
    ServiceError,
    TooLarge,
    UnsupportedDType,
)

TORCH_DTYPES: dict[FloatDType, torch.dtype] = {
    "float32": torch.float32,
    "float64": torch.float64,
    "float16": torch.float16,
    "bfloat16": torch.bfloat16,
}
_NOT_IMPLEMENTED = re.compile(r"not implemented for '(\w+)'")
_SCALAR_OVERFLOW = re.compile(r"cannot be converted to type \S+ without overflow")
_OUT_OF_MEMORY = re.compile(r"CUDA error: out of memory|CUBLAS_STATUS_ALLOC_FAILED|can't allocate memory")
_STICKY_DEVICE_ERROR = re.compile(r"CUDA error|device-side assert|illegal memory access|CUDNN_STATUS_INTERNAL_ERROR")
_MAX_TORCH_MESSAGE = 300

logger = logging.getLogger(__name__)


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

    def __init__(self, device: torch.device, max_request_cost: float = math.inf) -> None:
        self.device = device
        self.max_request_cost = max_request_cost
        """The compute limit, for what is known only while computing (a chained activation's
        output, on which its loss's cost is worked out)."""
        self.failure: str | None = None
        """Set once the device reports a sticky error (a CUDA device-side assert, an illegal
        address): every later call would fail as well, so liveness fails and the orchestrator
        restarts the process. Nothing is computed on the device after that."""

    def run_group(self, jobs: Sequence[Job], key: tuple[Any, ...] | None) -> list[Result | Exception]:
        """One outcome per job, in order. Jobs that share the fusion key ``key`` run as one torch
        call; if that call fails, each of them runs on its own so that only the bad one fails (an
        out-of-memory error of the fused call thus splits the batch). Without a key each job runs
        on its own."""
        if self.failure is not None:
            return [self._broken() for _ in jobs]
        fused = self._try_fused(jobs, key) if key is not None and len(jobs) > 1 else None
        return fused if fused is not None else [self._run_isolated(job) for job in jobs]

    def _run_isolated(self, job: Job) -> Result | Exception:
        try:
            return self.run(job)
        except Exception as error:  # each job's own failure, handed back to its own caller
            return released(error)

    def _try_fused(self, jobs: Sequence[Job], key: tuple[Any, ...]) -> list[Result | Exception] | None:
        try:
            return list(fused_call(jobs, key, TORCH_DTYPES[jobs[0].dtype], self.device))
        except Exception:  # some job is bad (an overflowing value, an error only torch detects)
            return None

    def run(self, job: Job) -> Result:
        if self.failure is not None:
            raise self._broken()
        try:
            return self._compute(job)
        except ServiceError:
            raise
        except PluginRefusal as refusal:
            loc = job.locs.get(refusal.argument or "") or self._first_loc(job)
            raise InvalidRequest.at(loc, refusal.message, refusal.type) from None
        except (RuntimeError, ValueError, IndexError, TypeError, MemoryError) as error:
            # Device errors surface wherever the device synchronises (often the copy back to
            # the host), so the whole computation is translated, not just the torch call.
            raise self._translate(error, job) from None

    def _compute(self, job: Job) -> Result:
        dtype = TORCH_DTYPES[job.dtype]
        tensors = {
            name: self._to_device(arr, dtype, job.locs[name], keep_integer=self._is_index(job, name, arr))
            for name, arr in job.arrays.items()
        }
        names = (
            [name for name in job.spec.differentiable if name in tensors and tensors[name].is_floating_point()]
            if job.grad
            else []
        )
        leaves = [tensors[name] for name in names]
        for leaf in leaves:
            leaf.requires_grad_(True)
        allowed = job.cost.output_elements
        with torch.set_grad_enabled(job.grad), collecting() as warned:
            if job.activation is not None:
                activated, allowed = self._activate(job, tensors["input"], dtype)
                tensors = {**tensors, "input": activated}
            output = job.spec.call(tensors, job.params)
            self._check_output(job, job.spec, output, allowed)
            grads = self._gradients(job, output, leaves, dtype) if job.grad else None
        return Result(
            output=to_host(output),
            grads=None if grads is None else {name: to_host(g) for name, g in zip(names, grads, strict=True)},
            warnings=tuple(warned),
        )

    def _activate(self, job: Job, raw: torch.Tensor, dtype: torch.dtype) -> tuple[torch.Tensor, int | None]:
        """The chained activation of the loss's ``input``, and the most elements the loss's output
        may have. Before the loss runs: the activation's output is checked against its own cost
        model; when its shape is not the input's, the loss's cost is worked out again on it (an
        activation may widen its input) and held to the limits; then the loss's host-side checks
        run on it (what the loss really receives; on CUDA a BCE input outside [0, 1] would trip
        a device-side assert)."""
        chained = job.activation
        assert chained is not None
        extra = {
            name: self._to_device(arr, dtype, chained.locs[name], keep_integer=False)
            for name, arr in chained.arrays.items()
        }
        activated = chained.spec.call({"input": raw, **extra}, chained.params)
        allowed = max(1, math.ceil(activation_cost(chained, job.arrays["input"]).memory))
        self._check_output(job, chained.spec, activated, allowed)
        cost = job.cost
        if activated.shape != raw.shape:
            cost = job_estimate(job, tuple(activated.shape))
            refusal = over_cost_limit(job, cost, self.max_request_cost)
            if refusal is not None:
                raise refusal
            if cost.memory_bytes > reserved_bytes(job):
                raise TooLarge.at(
                    job.locs["input"],
                    f"{job.spec.name} on the output of {chained.spec.name} (shape {list(activated.shape)}) takes "
                    f"about {cost.memory_bytes} bytes, more than the {reserved_bytes(job)} its input was "
                    "admitted with: apply the activation in a request of its own",
                    "cost_limit",
                )
        if job.spec.checks:
            run_checks(job.spec, {**job.arrays, "input": to_host(activated)}, job.params, job.locs, chained.spec.name)
        return activated, cost.output_elements

    def _check_output(self, job: Job, spec: FunctionSpec, output: torch.Tensor, allowed: int | None) -> None:
        """Refuse an output larger than the cost model allowed, before it is differentiated,
        copied to the host or encoded: the request's memory reservation was sized from it."""
        if allowed is None or output.numel() <= allowed:
            return
        if spec.plugin:
            raise PluginFailure.at(
                ("plugin", spec.name),
                f"plugin {spec.name} failed: it returned {output.numel()} elements where its cost model allows "
                f"{allowed} for this request; a plugin whose output is larger than its inputs declares it: "
                "app.plugins.Function(..., cost=elementwise(memory_per_element=...)) or a cost model of its own",
                "plugin_error",
            )
        logger.error("%s returned %d elements, over its cost model's %d", spec.name, output.numel(), allowed)
        raise TooLarge.at(
            self._first_loc(job),
            f"{spec.name}'s output would have {output.numel()} elements, more than its estimate allows ({allowed})",
            "output_limit",
        )

    @staticmethod
    def _first_loc(job: Job) -> Loc:
        return job.locs.get(job.spec.tensors[0].name, ("body",))

    @staticmethod
    def _is_index(job: Job, name: str, arr: np.ndarray) -> bool:
        arg = job.spec.tensor(name)
        return arg is not None and arg.kind != "float" and arr.dtype.kind in "iu"

    def _to_device(self, arr: np.ndarray, dtype: torch.dtype, loc: Loc, keep_integer: bool) -> torch.Tensor:
        return cast_on_host(arr, dtype, loc, keep_integer).to(self.device)

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

    @staticmethod
    def _overflowing_params(job: Job) -> list[Problem]:
        """The float parameters torch could not convert to the computation dtype, by their locs."""
        largest = torch.finfo(TORCH_DTYPES[job.dtype]).max
        return [
            Problem(job.locs.get(name, ("body", "params", name)), f"{value!r} overflows {job.dtype}", "dtype_overflow")
            for name, value in job.params.items()
            if isinstance(value, float) and abs(value) > largest
        ]

    def _broken(self) -> DeviceFailure:
        return DeviceFailure.at(("device",), "the device failed; the service needs a restart", "device_failure")

    def _translate(self, error: Exception, job: Job) -> Exception:
        message = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
        if isinstance(error, (torch.OutOfMemoryError, MemoryError)) or _OUT_OF_MEMORY.search(message):
            if self.device.type == "cuda":
                torch.cuda.empty_cache()  # give the cached blocks back so that smaller work fits again
            return Overloaded.at(("device",), "the device ran out of memory; retry later or send less", "out_of_memory")
        if isinstance(error, torch.AcceleratorError) or _STICKY_DEVICE_ERROR.search(message):
            self.failure = message[:_MAX_TORCH_MESSAGE]
            logger.critical("sticky device error, liveness now fails: %s", self.failure)
            return self._broken()
        if _SCALAR_OVERFLOW.search(message):
            overflowing = self._overflowing_params(job)
            if overflowing:
                return InvalidRequest(overflowing)
        unsupported = _NOT_IMPLEMENTED.search(message)
        if unsupported:
            return UnsupportedDType.at(
                ("body", "dtype"),
                f"{job.spec.name} has no {job.dtype} kernel on {self.device.type} ({message[:_MAX_TORCH_MESSAGE]})",
                "unsupported_dtype",
            )
        return InvalidRequest.at(
            self._named_in(message, job),
            f"torch rejected the request: {_without_internals(message)[:_MAX_TORCH_MESSAGE]}",
            "torch_error",
        )

    @staticmethod
    def _named_in(message: str, job: Job) -> Loc:
        """The location of the argument torch's message names; else of the function's first tensor."""
        names = [*(arg.name for arg in job.spec.tensors), *job.params, *(p.name for p in job.spec.tensor_params)]
        for name in names:
            if name in job.locs and re.search(rf"\b{re.escape(name)}\b", message):
                return job.locs[name]
        return Engine._first_loc(job)


def released(error: Exception) -> Exception:
    """``error`` with the locals of every frame its tracebacks hold cleared (the tracebacks stay,
    for the log). A failed computation's tensors are freed as it fails, not when the garbage
    collector next finds the cycle through its frames: an output refused for its size would
    otherwise hold its memory past its request (measured: 100 MiB a request, held for good)."""
    pending: list[BaseException] = [error]
    seen: set[int] = set()
    while pending:
        current = pending.pop()
        if id(current) in seen:
            continue
        seen.add(id(current))
        traceback.clear_frames(current.__traceback__)  # skips the frames still running
        pending.extend(linked for linked in (current.__cause__, current.__context__) if linked is not None)
    return error


_INTERNAL_PREFIX = re.compile(r"^\[enforce fail at [^\]]*\]\s*")


def _without_internals(message: str) -> str:
    """torch's message, less the C++ source location its assertions start with."""
    return _INTERNAL_PREFIX.sub("", message)
