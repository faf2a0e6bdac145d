"""A validated unit of work (``Job``) and its outcome (``Result``), built from decoded arrays."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, NamedTuple

import numpy as np

from app.compute.catalogue import FunctionSpec
from app.compute.catalogue.checks import ArgumentError
from app.compute.catalogue.cost import Cost, Estimate, estimate
from app.compute.chaining import Chained, activation_cost, check_activation
from app.core.config import FloatDType
from app.core.errors import InvalidRequest, Loc, Problem, TooLarge

NO_COST = Estimate(0.0, 0)


class Job(NamedTuple):
    """Everything needed to compute one request, already checked on the host."""

    spec: FunctionSpec
    arrays: Mapping[str, np.ndarray]
    """Tensor arguments and tensor parameters, by torch argument name."""
    params: Mapping[str, Any]
    """Scalar parameters, defaults filled."""
    locs: Mapping[str, Loc]
    """Where each tensor and parameter came from in the request, for error messages."""
    dtype: FloatDType
    grad: bool
    grad_output: np.ndarray | None = None
    cost: Estimate = NO_COST
    """What computing it takes, from the function's cost model (``build_job`` works it out)."""
    activation: Chained | None = None
    """The activation applied to ``input`` before the loss, when the request chains one."""
    timeout: float | None = None
    """Seconds the request itself allows for its queueing and compute (the Open Inference
    Protocol's ``timeout`` parameter), if it names a limit; the shortest limit wins."""


class Result(NamedTuple):
    """The value and, when asked, gradients keyed by argument name, as host numpy arrays.

    bfloat16 values are returned as float32 arrays holding exact bfloat16 numbers.
    """

    output: np.ndarray
    grads: Mapping[str, np.ndarray] | None
    warnings: tuple[str, ...] = ()
    """The text of each warning torch gave while computing, as a torch user would see it."""


def build_job(
    spec: FunctionSpec,
    arrays: Mapping[str, np.ndarray],
    params: Mapping[str, Any],
    locs: Mapping[str, Loc],
    dtype: FloatDType,
    grad: bool,
    grad_output: np.ndarray | None,
    activation: Chained | None = None,
    timeout: float | None = None,
) -> Job:
    """Check element types and the function's own host-side rules; raise ``InvalidRequest``.

    With a chained ``activation``, its checks run on ``input`` here; the loss's own run on the
    activation's output, in the engine (``run_checks``): they may be about values (BCE's
    input in [0, 1]) that only the activation's output has."""
    wrong_types: list[Problem] = []
    for arg in spec.tensors:
        arr = arrays.get(arg.name)
        if arr is None:  # an optional tensor argument not given
            continue
        if arg.kind == "index" and arr.dtype.kind not in "iu":
            wrong_types.append(
                Problem(locs[arg.name], f"must hold integers, got {arr.dtype.name} values", "wrong_type")
            )
    for param in spec.tensor_params:
        given = arrays.get(param.name)
        if given is not None and given.dtype.kind not in "fiu":
            wrong_types.append(Problem(locs[param.name], "must hold numbers", "wrong_type"))
    if wrong_types:
        raise InvalidRequest(wrong_types)
    if activation is None:
        run_checks(spec, arrays, params, locs)
    else:
        check_activation(activation, arrays["input"], locs["input"])
    cost = _estimate(spec, arrays, params, dtype, grad, grad_output, activation)
    return Job(spec, arrays, params, locs, dtype, grad, grad_output, cost, activation, timeout)


def job_estimate(job: Job, activated: tuple[int, ...] | None = None) -> Estimate:
    """What computing ``job`` takes, from its functions' cost models. ``activated``: the shape
    the chained activation really produced, once known; the loss's cost is then worked out on it
    (an activation may widen its input), else on the raw input."""
    return _estimate(job.spec, job.arrays, job.params, job.dtype, job.grad, job.grad_output, job.activation, activated)


def _estimate(
    spec: FunctionSpec,
    arrays: Mapping[str, np.ndarray],
    params: Mapping[str, Any],
    dtype: FloatDType,
    grad: bool,
    grad_output: np.ndarray | None,
    activation: Chained | None,
    activated: tuple[int, ...] | None = None,
) -> Estimate:
    if activation is None:
        work = spec.cost(arrays, params)
    else:
        before = activation_cost(activation, arrays["input"])
        # A view of the activated shape holding no memory: cost models read shapes (and the
        # values of index tensors, never of ``input``).
        loss_input = arrays["input"] if activated is None else np.broadcast_to(np.float32(0), activated)
        loss = spec.cost({**arrays, "input": loss_input}, params)
        work = Cost(before.work + loss.work, before.memory + loss.memory)
    sized = arrays if grad_output is None else {**arrays, "grad_output": grad_output}
    if activation is not None:
        sized = {**sized, **{f"activation.{n}": a for n, a in activation.arrays.items()}}
    return estimate(work, sized, ITEMSIZE[dtype], grad)


def over_cost_limit(job: Job, cost: Estimate, limit: float) -> TooLarge | None:
    """The 413 for ``job`` when ``cost`` is over the compute ``limit``."""
    if cost.work <= limit:
        return None
    loc = max(job.arrays.items(), key=lambda item: item[1].size)[0]
    return TooLarge.at(
        job.locs.get(loc, ("body",)),
        f"{job.spec.name} on these shapes is estimated at {cost.work:.3g} cost units "
        f"(~{cost.seconds:.3g} s of one core), over the limit of {limit:.3g}",
        "cost_limit",
    )


def run_checks(
    spec: FunctionSpec,
    arrays: Mapping[str, np.ndarray],
    params: Mapping[str, Any],
    locs: Mapping[str, Loc],
    after: str = "",
) -> None:
    """``spec``'s host-side checks; ``after`` names the chained activation ``input`` went through."""
    for check in spec.checks:
        try:
            check(arrays, params)
        except ArgumentError as error:
            message = f"after {after}: {error.msg}" if after and error.arg == "input" else error.msg
            raise InvalidRequest.at(locs[error.arg], message, error.type) from None


def job_size(job: Job) -> int:
    return sum(arr.size for arr in job.arrays.values())


REPLY_BYTES_PER_ELEMENT = 24
"""A reply tensor's element as JSON text, at most (orjson's shortest round-trip floats)."""


def reserved_bytes(job: Job) -> int:
    """What a request holds in the memory budget while ``job`` is computed: its estimate and its
    reply's bound."""
    return job.cost.memory_bytes + reply_bytes(job)


def reply_bytes(job: Job) -> int:
    """A bound on the reply's tensors, encoded, before they are known: as large as the inputs
    (as every output of torch's functions is but a broadcasting loss's); once computed, the
    reservation follows the result's real size (``result_bytes``)."""
    return REPLY_BYTES_PER_ELEMENT * job_size(job) * (2 if job.grad else 1)


def result_bytes(result: Result) -> int:
    """A computed result on the host and its reply's tensors, encoded."""
    arrays = [result.output, *(result.grads or {}).values()]
    return sum(arr.nbytes + REPLY_BYTES_PER_ELEMENT * arr.size for arr in arrays)


ITEMSIZE: dict[FloatDType, int] = {"float32": 4, "float64": 8, "float16": 2, "bfloat16": 2}
