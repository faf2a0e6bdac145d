"""A validated unit of work (``Job``) and its outcome (``Result``), built from decoded arrays."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np

from app.compute.catalogue import FunctionSpec
from app.compute.catalogue.checks import ArgumentError
from app.compute.catalogue.cost import Cost, Estimate, estimate
from app.compute.chaining import Chained, activation_cost, check_activation
from app.core.config import FloatDType
from app.core.errors import InvalidRequest, Loc, Problem

NO_COST = Estimate(0.0, 0)


@dataclass(frozen=True)
class Job:
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


@dataclass(frozen=True)
class Result:
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
        work = spec.cost(arrays, params)
    else:
        check_activation(activation, arrays["input"], locs["input"])
        before, loss = activation_cost(activation, arrays["input"]), spec.cost(arrays, params)
        work = Cost(before.work + loss.work, before.memory + loss.memory)
    sized = arrays if grad_output is None else {**arrays, "grad_output": grad_output}
    sized = sized if activation is None else {**sized, **{f"activation.{n}": a for n, a in activation.arrays.items()}}
    cost = estimate(work, sized, ITEMSIZE[dtype], grad)
    return Job(spec, arrays, params, locs, dtype, grad, grad_output, cost, activation, timeout)


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


ITEMSIZE: dict[FloatDType, int] = {"float32": 4, "float64": 8, "float16": 2, "bfloat16": 2}
