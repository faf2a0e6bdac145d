"""The service accepts exactly the shapes torch accepts, loss by loss.

Every combination of a few shapes (scalars, vectors, broadcastable and incompatible matrices) is
given to each loss's tensors; torch in-process decides. Where torch computes, the service answers
200; where torch raises, the service answers a 4xx whose location names a field of the request.
"""

from __future__ import annotations

import itertools
import warnings
from typing import Any

import numpy as np
import pytest
import torch
from fastapi.testclient import TestClient

from app.compute.catalogue import CATALOGUE, FunctionSpec
from tests.support.reference import encode

SHAPES: tuple[tuple[int, ...], ...] = ((), (1,), (4,), (3,), (2, 4), (4, 1), (1, 4), (2, 1, 4))
SKIPPED = {"ctc_loss"}  # its lengths and targets are tied by values, not shapes: see test_bad_input
_PROBABILITY_TARGETS = {"binary_cross_entropy", "binary_cross_entropy_with_logits", "multilabel_soft_margin_loss"}


def _value(spec: FunctionSpec, name: str, shape: tuple[int, ...]) -> torch.Tensor:
    arg = spec.tensor(name)
    assert arg is not None
    if arg.kind == "index":
        return torch.zeros(shape, dtype=torch.int64)
    generator = torch.Generator().manual_seed(len(shape) * 7 + sum(shape))
    values = torch.rand(shape, generator=generator, dtype=torch.float64) * 0.8 + 0.1
    if name == "target" and spec.name not in _PROBABILITY_TARGETS and spec.name not in ("kl_div", "poisson_nll_loss"):
        values = torch.where(values > 0.5, 1.0, -1.0).to(torch.float64)
    return values


def _cases() -> list[Any]:
    cases = []
    for spec in CATALOGUE.of_kind("loss"):
        if spec.name in SKIPPED:
            continue
        names = [arg.name for arg in spec.tensors if not arg.optional]
        if spec.name == "cross_entropy":  # class-index and probability targets both
            names = ["input", "target"]
        for shapes in itertools.product(SHAPES, repeat=len(names)):
            cases.append((spec.name, tuple(zip(names, shapes, strict=True))))
    return cases


def _by_function() -> dict[str, list[tuple[tuple[str, tuple[int, ...]], ...]]]:
    grouped: dict[str, list[tuple[tuple[str, tuple[int, ...]], ...]]] = {}
    for name, shapes in _cases():
        grouped.setdefault(name, []).append(shapes)
    return grouped


_GROUPED = _by_function()


@pytest.mark.parametrize("name", sorted(_GROUPED))
def test_loss_accepts_what_torch_accepts(client: TestClient, name: str) -> None:
    spec = CATALOGUE.find(name)
    assert spec is not None
    defaults = {p.name: p.default for p in spec.params if p.kind != "tensor"}
    mismatches = []
    for shapes in _GROUPED[name]:
        tensors = {n: _value(spec, n, shape) for n, shape in shapes}
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                spec.call(tensors, defaults)
            torch_ok = True
        except (RuntimeError, ValueError, IndexError) as error:
            torch_ok, why = False, str(error)
        body: dict[str, Any] = {"function": name, "dtype": "float64"}
        for n, tensor in tensors.items():
            arg = spec.tensor(n)
            assert arg is not None
            if arg.top_level:
                body[n] = encode(tensor, "base64")
            else:
                body.setdefault("inputs", {})[n] = encode(tensor, "base64")
        reply = client.post("/loss", json=body)
        described = ", ".join(f"{n} {list(s)}" for n, s in shapes)
        if torch_ok and reply.status_code != 200:
            mismatches.append(f"{described}: torch computes, service {reply.status_code} {reply.text[:200]}")
        elif not torch_ok:
            if not 400 <= reply.status_code < 500:
                mismatches.append(f"{described}: torch raises ({why[:80]}), service {reply.status_code}")
            elif len(reply.json()["details"][0]["loc"]) < 2:
                mismatches.append(f"{described}: refusal names no field: {reply.text[:200]}")
    assert not mismatches, f"{len(mismatches)} shape combinations differ:\n" + "\n".join(mismatches)


_ = np
