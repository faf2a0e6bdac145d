"""One torch call for many same-sized requests to a pointwise function, bit-identical to each
request computed alone.

Each request becomes one row of a strided (B, L) view (row stride L + 1), so torch cannot
coalesce the rows into one long vector: every row runs the kernel's inner loop over exactly L
elements, with the same vectorised body and scalar tail as the request alone. Requests of
``FUSE_MAX_ELEMENTS`` or more are never fused: alone, torch would split them across threads.
"""

from __future__ import annotations

from collections.abc import Hashable, Sequence

import numpy as np
import torch

from app.compute.jobs import Job, Result

FUSE_MAX_ELEMENTS = 32_768
"""torch's CPU grain size: below it a pointwise kernel runs on one thread, as a row does."""


def fusion_key(job: Job) -> Hashable | None:
    """Jobs with equal keys can share one fused call; None when this job cannot be fused."""
    spec = job.spec
    if spec.fusable is None or not spec.fusable(job.params):
        return None
    size = job.arrays["input"].size
    if not 0 < size < FUSE_MAX_ELEMENTS:
        return None
    params = tuple(sorted(job.params.items()))
    return (spec.name, params, job.dtype, job.grad, job.grad_output is not None, size)


def fused_call(
    jobs: Sequence[Job],
    rows: Sequence[torch.Tensor],
    grad_rows: Sequence[torch.Tensor] | None,
    device: torch.device,
) -> list[Result]:
    """Compute ``jobs`` (equal fusion keys) from their host ``rows`` in one call on ``device``."""
    first = jobs[0]
    length = rows[0].numel()
    buffer = torch.empty((len(rows), length + 1), dtype=rows[0].dtype, device=device)
    inputs = buffer[:, :length]
    inputs.copy_(torch.stack([row.reshape(-1) for row in rows]).to(device))
    with torch.set_grad_enabled(first.grad):
        if first.grad:
            inputs.requires_grad_(True)
        output = first.spec.call({"input": inputs}, first.params)
        grads = None
        if first.grad:
            weight = (
                torch.ones_like(output)
                if grad_rows is None
                else torch.stack([g.reshape(-1) for g in grad_rows]).to(device)
            )
            (grads,) = torch.autograd.grad(output, inputs, weight)
    values = _host_rows(output)
    grad_values = None if grads is None else _host_rows(grads)
    results = []
    for index, job in enumerate(jobs):
        shape = job.arrays["input"].shape
        grad = None if grad_values is None else {"input": grad_values[index].reshape(shape)}
        results.append(Result(output=values[index].reshape(shape), grads=grad))
    return results


def _host_rows(tensor: torch.Tensor) -> np.ndarray:
    tensor = tensor.detach()
    if tensor.dtype == torch.bfloat16:
        tensor = tensor.float()
    return np.ascontiguousarray(tensor.cpu().numpy())
