"""A validated unit of work (``Job``) and its outcome (``Result``), built from decoded arrays."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np

from app.compute.catalogue import FunctionSpec
from app.compute.catalogue.checks import ArgumentError
from app.compute.catalogue.cost import Estimate, estimate
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
) -> Job:
    """Check element types and the function's own host-side rules; raise ``InvalidRequest``."""
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
    for check in spec.checks:
        try:
            check(arrays, params)
        except ArgumentError as error:
            raise InvalidRequest.at(locs[error.arg], error.msg, error.type) from None
    sized = arrays if grad_output is None else {**arrays, "grad_output": grad_output}
    cost = estimate(spec.cost(arrays, params), sized, ITEMSIZE[dtype], grad)
    return Job(spec, arrays, params, locs, dtype, grad, grad_output, cost)


ITEMSIZE: dict[FloatDType, int] = {"float32": 4, "float64": 8, "float16": 2, "bfloat16": 2}
