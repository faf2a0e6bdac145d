"""The declarative description of one function: from it come validation, the catalogue and tests."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from functools import cached_property
from typing import Any, Literal

import numpy as np
import torch

from app.compute.catalogue.cost import ELEMENTWISE, CostModel

FunctionKind = Literal["activation", "loss"]
ParamKind = Literal["float", "int", "bool", "choice", "tensor"]
TensorKind = Literal["float", "index", "float_or_index"]

Arrays = Mapping[str, np.ndarray]
Params = Mapping[str, Any]
Check = Callable[[Arrays, Params], None]
"""A host-side check on the decoded arrays and parameters; raises ``InvalidRequest``."""
Call = Callable[[Mapping[str, torch.Tensor], Mapping[str, Any]], torch.Tensor]
"""Runs the torch function on device tensors (tensor parameters included) and parameters."""

TOP_LEVEL_TENSORS = frozenset({"input", "target"})


class _Required:
    def __repr__(self) -> str:
        return "REQUIRED"


REQUIRED: Any = _Required()


@dataclass(frozen=True)
class Param:
    """A keyword argument of the torch function that is not a tensor argument."""

    name: str
    kind: ParamKind
    doc: str
    default: Any = REQUIRED
    ge: float | None = None
    gt: float | None = None
    le: float | None = None
    lt: float | None = None
    choices: tuple[Any, ...] = ()
    nullable: bool = False
    differentiable: bool = False
    """A tensor parameter torch differentiates (PReLU's ``weight``): its gradient is in the reply."""

    @property
    def required(self) -> bool:
        return self.default is REQUIRED

    def describe(self) -> dict[str, Any]:
        out: dict[str, Any] = {"name": self.name, "type": self.kind, "doc": self.doc}
        out["required"] = self.required
        if not self.required:
            out["default"] = self.default
        for bound in ("ge", "gt", "le", "lt"):
            value = getattr(self, bound)
            if value is not None:
                out[bound] = value
        if self.choices:
            out["choices"] = list(self.choices)
        if self.nullable:
            out["nullable"] = True
        if self.kind == "tensor":
            out["differentiable"] = self.differentiable
        return out


@dataclass(frozen=True)
class TensorArg:
    """A tensor argument of the torch function, named exactly as in ``torch.nn.functional``."""

    name: str
    doc: str
    kind: TensorKind = "float"
    differentiable: bool = True
    optional: bool = False

    @property
    def top_level(self) -> bool:
        return self.name in TOP_LEVEL_TENSORS

    def describe(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "doc": self.doc,
            "element_type": {
                "float": "floating point",
                "index": "integer",
                "float_or_index": "integer class indices or floating-point probabilities",
            }[self.kind],
            "differentiable": self.differentiable and self.kind != "index",
            "location": "top level" if self.top_level else "inputs",
            "required": not self.optional,
        }


@dataclass(frozen=True)
class RowSplit:
    """A loss over (N, C) inputs that torch computes as a row-wise step, then a reduction.

    Many requests share the row-wise step (``rows``, one call on their inputs stacked along N;
    row-wise kernels compute each row alone), then each request's own slice is reduced by
    ``reduce`` (its own call, ``mean``/``sum`` over its rows only). Bit-identical to the request
    alone because torch itself computes the function as exactly these two calls.
    """

    applies: Callable[[Params], bool]
    """Whether these parameters take the two-step path (e.g. no label smoothing)."""
    rows: Callable[[torch.Tensor], torch.Tensor]
    reduce: Callable[[torch.Tensor, torch.Tensor, Params], torch.Tensor]
    """(rows of one request, its class indices, parameters) -> its loss."""


@dataclass(frozen=True)
class FunctionSpec:
    """One activation or loss function of ``torch.nn``."""

    name: str
    kind: FunctionKind
    summary: str
    call: Call
    tensors: tuple[TensorArg, ...]
    example: Mapping[str, Any]
    params: tuple[Param, ...] = ()
    aliases: tuple[str, ...] = ()
    checks: tuple[Check, ...] = ()
    refused: Mapping[str, str] = field(default_factory=dict)
    fusable: Callable[[Params], bool] | None = None
    """Whether same-sized requests with these parameters may share one torch call, each as one
    row of a strided 2-D view, and still get bit-identical results (a pointwise function whose
    kernel treats every row alike; checked by the test suite on every device it runs on)."""
    row_split: RowSplit | None = None
    """How requests of this (class-index) loss over (N, C) inputs share one call; see ``RowSplit``."""
    cost: CostModel = ELEMENTWISE
    """How its compute time and working memory grow with its inputs (``cost.py``): linear in the
    elements unless declared otherwise."""
    composite: bool = False
    """``call`` chains several torch kernels (an operator's plugin): fusing it is exact only in
    rows whose length is a multiple of the widest vector step, computed on one thread (``fusion.py``)."""
    plugin: str | None = None
    """The operator's entry it was loaded from (``module:attribute``); None for torch's own."""
    dtypes: tuple[str, ...] | None = None
    """The computation dtypes it accepts, when not every one (a plugin's declaration)."""

    def param(self, name: str) -> Param | None:
        for param in self.params:
            if param.name == name:
                return param
        return None

    def tensor(self, name: str) -> TensorArg | None:
        for arg in self.tensors:
            if arg.name == name:
                return arg
        return None

    # Derived once per function: the request path asks for these on every request.
    @cached_property
    def tensor_params(self) -> tuple[Param, ...]:
        return tuple(p for p in self.params if p.kind == "tensor")

    @cached_property
    def differentiable(self) -> tuple[str, ...]:
        """The tensor arguments, then the tensor parameters, that torch differentiates."""
        arguments = tuple(a.name for a in self.tensors if a.differentiable and a.kind != "index")
        return arguments + tuple(p.name for p in self.tensor_params if p.differentiable)

    @cached_property
    def tensor_names(self) -> frozenset[str]:
        return frozenset(arg.name for arg in self.tensors)

    def describe(self, refused: Mapping[str, str]) -> dict[str, Any]:
        """The catalogue entry; ``refused`` lists the torch arguments refused, with reasons."""
        return {
            "name": self.name,
            "kind": self.kind,
            "summary": self.summary,
            "aliases": list(self.aliases),
            "endpoint": "/activate" if self.kind == "activation" else "/loss",
            "tensors": [arg.describe() for arg in self.tensors],
            "params": [param.describe() for param in self.params],
            "refused_params": dict(refused),
            "differentiable": bool(self.differentiable),
            "gradient_wrt": list(self.differentiable),
            "example": dict(self.example),
            **({"plugin": self.plugin} if self.plugin else {}),
            **({"dtypes": list(self.dtypes)} if self.dtypes else {}),
        }
