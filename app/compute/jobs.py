"""A validated unit of work (``Job``) and its outcome (``Result``), built from decoded arrays."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np

from app.compute.catalogue import FunctionSpec
from app.compute.catalogue.checks import ArgumentError
from app.core.config import FloatDType
from app.core.errors import InvalidRequest, Loc, ProblemList


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


@dataclass(frozen=True)
class Result:
    """The value and, when asked, gradients keyed by argument name, as host numpy arrays.

    bfloat16 values are returned as float32 arrays holding exact bfloat16 numbers.
    """

    output: np.ndarray
    grads: Mapping[str, np.ndarray] | None


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
    wrong_types = [
        (arg.name, f"must hold integers, got {arrays[arg.name].dtype.name} values")
        for arg in spec.tensors
        if arg.kind == "index" and arrays[arg.name].dtype.kind not in "iu"
    ] + [
        (param.name, "must hold numbers")
        for param in spec.tensor_params
        if param.name in arrays and arrays[param.name].dtype.kind not in "fiu"
    ]
    if wrong_types:
        problems = ProblemList()
        for name, message in wrong_types:
            problems.add(locs[name], message, "wrong_type")
        problems.raise_if_any()
    for check in spec.checks:
        try:
            check(arrays, params)
        except ArgumentError as error:
            raise InvalidRequest.at(locs[error.arg], error.msg, error.type) from None
    return Job(spec, arrays, params, locs, dtype, grad, grad_output)
