"""Every parameter bound of the catalogue is one torch itself enforces: just outside it, torch raises.

A bound the service invents (narrower than torch's) refuses inputs torch computes; this test finds
one by calling torch in-process with the catalogue's example and the value just outside the bound.
"""

from __future__ import annotations

import math
import warnings
from typing import Any

import numpy as np
import pytest
import torch

from app.compute.catalogue import CATALOGUE, FunctionSpec, Param

SERVICE_ONLY = {("rrelu", "seed")}
"""Parameters the service adds (not torch's): their bounds are the service's own."""


def _outside(param: Param) -> list[tuple[str, float]]:
    values = []
    step = (lambda v, d: v + d) if param.kind == "int" else (lambda v, d: math.nextafter(v, v + d))
    if param.ge is not None:
        values.append((f"ge {param.ge}", step(param.ge, -1)))
    if param.gt is not None:
        values.append((f"gt {param.gt}", param.gt))
    if param.le is not None:
        values.append((f"le {param.le}", step(param.le, 1)))
    if param.lt is not None:
        values.append((f"lt {param.lt}", param.lt))
    return values


def _bounds() -> list[Any]:
    cases = []
    for spec in CATALOGUE:
        for param in spec.params:
            if (spec.name, param.name) in SERVICE_ONLY:
                continue
            for label, value in _outside(param):
                cases.append(pytest.param(spec.name, param.name, value, id=f"{spec.name}-{param.name}-{label}"))
    return cases


def _example_call(spec: FunctionSpec, override: dict[str, Any]) -> None:
    example = spec.example
    given = {"input": example.get("input"), "target": example.get("target"), **example.get("inputs", {})}
    tensors = {
        k: torch.tensor(v, dtype=torch.float64 if _floating(spec, k) else torch.int64)
        for k, v in given.items()
        if v is not None
    }
    params = {p.name: p.default for p in spec.params if p.kind != "tensor"}
    params.update({k: v for k, v in example.get("params", {}).items() if k in params})
    for p in spec.tensor_params:
        value = example.get("params", {}).get(p.name, p.default)
        if value is not None:
            tensors[p.name] = torch.tensor(value, dtype=torch.float64)
    params.update(override)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        spec.call(tensors, params)


def _floating(spec: FunctionSpec, name: str) -> bool:
    arg = spec.tensor(name)
    return arg is None or arg.kind == "float"


@pytest.mark.parametrize(("function", "param", "value"), _bounds())
def test_torch_raises_just_outside_each_bound(function: str, param: str, value: float) -> None:
    spec = CATALOGUE.find(function)
    assert spec is not None
    with pytest.raises((RuntimeError, ValueError)):
        _example_call(spec, {param: value})


_ = np
