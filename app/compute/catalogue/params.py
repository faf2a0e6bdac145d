"""Validate a request's ``params`` against a function's declared parameters."""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

from app.compute.catalogue.registry import Catalogue
from app.compute.catalogue.spec import FunctionSpec, Param
from app.core.errors import InvalidRequest, Loc, ProblemList
from app.core.limits import MAX_NAME, MAX_PARAM_STRING, longer_than

_INT64_MIN, _INT64_MAX = -(2**63), 2**63 - 1


def _type_error(param: Param, value: Any) -> str | None:
    kind = param.kind
    if kind == "float":
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            return "must be a number"
        if not math.isfinite(value):
            return "must be finite"
    elif kind == "int":
        if isinstance(value, bool) or not isinstance(value, int):
            return "must be an integer"
        if not _INT64_MIN <= value <= _INT64_MAX:
            return "must fit in a signed 64-bit integer"
    elif kind == "bool" and not isinstance(value, bool):
        return "must be true or false"
    elif kind == "choice" and (isinstance(value, bool) or value not in param.choices):
        return f"must be one of {', '.join(map(repr, param.choices))}"
    return None


def _range_error(param: Param, value: float) -> str | None:
    if param.choices and value not in param.choices:
        return f"must be one of {', '.join(map(str, param.choices))}"
    if param.ge is not None and not value >= param.ge:
        return f"must be >= {param.ge}"
    if param.gt is not None and not value > param.gt:
        return f"must be > {param.gt}"
    if param.le is not None and not value <= param.le:
        return f"must be <= {param.le}"
    if param.lt is not None and not value < param.lt:
        return f"must be < {param.lt}"
    return None


_DEFAULTS: dict[int, tuple[FunctionSpec, tuple[dict[str, Any], dict[str, Any]]]] = {}
"""Each function's params when none are given (most requests): worked out once, by the spec's
identity (two services' plugins may share a name; the spec is held so its id stays its own)."""


def validate_params(spec: FunctionSpec, given: Mapping[str, Any], loc: Loc) -> tuple[dict[str, Any], dict[str, Any]]:
    """Split ``given`` into (scalar params with defaults filled, raw tensor params), or raise."""
    if given:
        return _validate_params(spec, given, loc)
    cached = _DEFAULTS.get(id(spec))
    if cached is None:
        cached = _DEFAULTS[id(spec)] = (spec, _validate_params(spec, given, loc))
    scalars, tensors = cached[1]
    return dict(scalars), dict(tensors)


def _validate_params(spec: FunctionSpec, given: Mapping[str, Any], loc: Loc) -> tuple[dict[str, Any], dict[str, Any]]:
    problems = ProblemList()
    scalars: dict[str, Any] = {}
    tensors: dict[str, Any] = {}
    for name, value in given.items():
        if len(name) > MAX_NAME:
            problems.add((*loc, name), f"a parameter's name is {longer_than(MAX_NAME)}", "string_too_long")
            continue
        if isinstance(value, str) and len(value) > MAX_PARAM_STRING:
            problems.add((*loc, name), longer_than(MAX_PARAM_STRING), "string_too_long")
            continue
        param = spec.param(name)
        if param is None:
            reason = Catalogue.refusal(spec, name)
            if reason is not None:
                problems.add((*loc, name), f"not accepted: {reason}", "param_refused")
            else:
                known = ", ".join(p.name for p in spec.params) or "none"
                problems.add((*loc, name), f"unknown parameter for {spec.name} (known: {known})", "unknown_param")
            continue
        if value is None:
            if not param.nullable:
                problems.add((*loc, name), "must not be null", "null_param")
            continue
        if param.kind == "tensor":
            tensors[name] = value
            continue
        error = _type_error(param, value) or (_range_error(param, value) if param.kind in ("float", "int") else None)
        if error:
            problems.add((*loc, name), error, "invalid_param")
            continue
        scalars[name] = float(value) if param.kind == "float" else value
    for param in spec.params:
        if param.name in given:
            continue
        if param.kind == "tensor":
            if param.default is not None:
                tensors[param.name] = param.default
            continue
        if param.required:
            problems.add((*loc, param.name), f"required by {spec.name}", "missing_param")
        else:
            scalars[param.name] = param.default
    if problems.problems:
        raise InvalidRequest(problems.problems)
    return scalars, tensors
