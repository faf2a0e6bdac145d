"""One torch call for many requests, bit-identical to each request computed alone.

Two shapes of work can share a call:

* Same-sized requests to a pointwise function (``FunctionSpec.fusable``). Each request becomes
  one row of a strided (B, L) view (row stride L + 1), so torch cannot coalesce the rows into
  one long vector: every row runs the kernel's inner loop over exactly L elements, with the same
  vectorised body and scalar tail as the request alone. Requests of ``FUSE_MAX_ELEMENTS`` or
  more are never fused: alone, torch would split them across threads.
* Class-index losses over (N, C) inputs with the same C (``FunctionSpec.row_split``): the
  row-wise step (e.g. cross_entropy's log_softmax) runs once over all requests' rows stacked
  along N, then each request's slice is reduced on its own, so each gets its own ``mean``.

The inputs are cast to the computation dtype once for the whole group; if anything fails (a
value that overflows the dtype, an error only torch detects), the caller runs the jobs one by
one so that only the bad one fails.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import torch

from app.compute.host import cast_on_host, to_host
from app.compute.jobs import Job, Result

FUSE_MAX_ELEMENTS = 32_768
"""torch's CPU grain size: below it a pointwise kernel runs on one thread, as a row does."""

COMPOSITE_ROW_MULTIPLE = 64
"""A plugin's chain of pointwise kernels runs its later kernels over contiguous intermediates, where
torch's vectorised loop steps 2 vectors at a time (up to 64 elements: bfloat16 on AVX-512) and
finishes the last few elements with scalar code. Fused rows are exact only when every row starts a
step and no row has a scalar tail: a length that is a multiple of 64, on one thread (under
``FUSE_MAX_ELEMENTS`` per call). Measured: a swish ``x * sigmoid(beta * x)`` fused in rows of
15, 31, 100 or 1000 elements differs from its solo answer in float64; in multiples of 64, never."""

_POINTWISE = "pointwise"
_ROWS = "rows"


def fusion_key(job: Job) -> tuple[Any, ...] | None:
    """Jobs with equal keys can share one fused call; None when this job cannot be fused."""
    spec = job.spec
    if job.activation is not None:  # loss(activation(input)): computed alone
        return None
    common = (spec.name, tuple(sorted(job.params.items())), job.dtype, job.grad, job.grad_output is not None)
    if spec.fusable is not None and spec.fusable(job.params):
        size = job.arrays["input"].size
        if not 0 < size < FUSE_MAX_ELEMENTS or (spec.composite and size % COMPOSITE_ROW_MULTIPLE):
            return None
        return (_POINTWISE, *common, size)
    if spec.row_split is not None and spec.row_split.applies(job.params) and job.arrays.keys() == {"input", "target"}:
        inputs, target = job.arrays["input"], job.arrays["target"]
        if inputs.ndim != 2 or target.ndim != 1 or target.dtype.kind not in "iu" or inputs.shape[0] == 0:
            return None
        return (_ROWS, *common, inputs.shape[1])
    return None


def fused_call(jobs: Sequence[Job], key: tuple[Any, ...], dtype: torch.dtype, device: torch.device) -> list[Result]:
    """Compute ``jobs`` (all with fusion key ``key``) in one call on ``device``; raises if any job is bad."""
    if key[0] == _POINTWISE:
        if jobs[0].spec.composite:  # one thread per call: under FUSE_MAX_ELEMENTS in all
            rows = max(1, (FUSE_MAX_ELEMENTS - 1) // jobs[0].arrays["input"].size)
            return [
                result
                for start in range(0, len(jobs), rows)
                for result in _pointwise(jobs[start : start + rows], dtype, device)
            ]
        return _pointwise(jobs, dtype, device)
    return _row_split(jobs, dtype, device)


def _cast_rows(arrays: Sequence[np.ndarray], dtype: torch.dtype) -> torch.Tensor:
    """The arrays flattened into the rows of one host tensor, cast once for all."""
    return cast_on_host(np.stack([a.reshape(-1) for a in arrays]), dtype, ("body",), keep_integer=False)


def _pointwise(jobs: Sequence[Job], dtype: torch.dtype, device: torch.device) -> list[Result]:
    first = jobs[0]
    length = first.arrays["input"].size
    buffer = torch.empty((len(jobs), length + 1), dtype=dtype, device=device)
    inputs = buffer[:, :length]
    inputs.copy_(_cast_rows([job.arrays["input"] for job in jobs], dtype).to(device))
    weight = None
    if first.grad_output is not None:
        grad_outputs = [job.grad_output for job in jobs]
        if any(g is None or g.shape != job.arrays["input"].shape for g, job in zip(grad_outputs, jobs, strict=True)):
            raise ValueError("a grad_output does not match its input's shape")
        weight = _cast_rows(grad_outputs, dtype).to(device)  # type: ignore[arg-type]
    with torch.set_grad_enabled(first.grad):
        if first.grad:
            inputs.requires_grad_(True)
        output = first.spec.call({"input": inputs}, first.params)
        if output.shape != inputs.shape:  # not elementwise after all (a plugin): each job alone is checked
            raise ValueError(f"{first.spec.name} returned shape {list(output.shape)} for {list(inputs.shape)}")
        grads = None
        if first.grad:
            (grads,) = torch.autograd.grad(output, inputs, torch.ones_like(output) if weight is None else weight)
    values = np.ascontiguousarray(to_host(output))
    grad_values = None if grads is None else np.ascontiguousarray(to_host(grads))
    results = []
    for index, job in enumerate(jobs):
        shape = job.arrays["input"].shape
        grad = None if grad_values is None else {"input": grad_values[index].reshape(shape)}
        results.append(Result(output=values[index].reshape(shape), grads=grad))
    return results


def _row_split(jobs: Sequence[Job], dtype: torch.dtype, device: torch.device) -> list[Result]:
    first = jobs[0]
    split = first.spec.row_split
    assert split is not None
    sizes = [job.arrays["input"].shape[0] for job in jobs]
    joined = np.concatenate([job.arrays["input"] for job in jobs])
    inputs = cast_on_host(joined, dtype, ("body",), keep_integer=False).to(device)
    targets = torch.from_numpy(np.concatenate([job.arrays["target"] for job in jobs])).to(torch.int64).to(device)
    with torch.set_grad_enabled(first.grad):
        if first.grad:
            inputs.requires_grad_(True)
        rows = torch.split(split.rows(inputs), sizes)
        target_rows = torch.split(targets, sizes)
        losses = [split.reduce(part, target, first.params) for part, target in zip(rows, target_rows, strict=True)]
        grads = None
        if first.grad:
            weights = [_loss_weight(job, loss, dtype, device) for job, loss in zip(jobs, losses, strict=True)]
            (grads,) = torch.autograd.grad(losses, inputs, weights)
    if losses[0].ndim == 0:
        values = to_host(torch.stack(losses))
        outputs = [values[index, ...] for index in range(len(jobs))]
    else:
        outputs = np.split(to_host(torch.cat(losses)), np.cumsum(sizes)[:-1])
    grad_parts = None if grads is None else np.split(to_host(grads), np.cumsum(sizes)[:-1])
    return [
        Result(output=output, grads=None if grad_parts is None else {"input": grad_parts[index]})
        for index, output in enumerate(outputs)
    ]


def _loss_weight(job: Job, loss: torch.Tensor, dtype: torch.dtype, device: torch.device) -> torch.Tensor:
    if job.grad_output is None:
        return torch.ones_like(loss)
    weight = cast_on_host(job.grad_output, dtype, job.locs["grad_output"], keep_integer=False).to(device)
    if weight.shape != loss.shape:
        raise ValueError("a grad_output does not match its loss's shape")
    return weight
