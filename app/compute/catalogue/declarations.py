"""What an operator's plugin may declare beyond a bare ``nn.Module`` subclass or function:
``Function``, ``Param``, cost models. Published to plugins as ``app.plugins``, whose docstring
shows how they are used."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

from app.compute.catalogue.cost import ELEMENTWISE, Cost, CostModel, elementwise
from app.core.config import FloatDType

__all__ = ["ELEMENTWISE", "Cost", "CostModel", "Function", "Param", "elementwise"]


@dataclass(frozen=True)
class Param:
    """More about one typed keyword argument: its doc and its range (the hint gives its type)."""

    doc: str = ""
    ge: float | None = None
    gt: float | None = None
    le: float | None = None
    lt: float | None = None


@dataclass(frozen=True)
class Function:
    """A plugin function with more declared than its signature says."""

    implementation: Callable[..., Any]
    """An ``nn.Module`` subclass (its ``forward``'s tensors, its constructor's parameters) or a
    function (positional tensors, typed keyword parameters)."""
    name: str | None = None
    """Canonical name; default: the snake_case form of the class or function name."""
    aliases: tuple[str, ...] = ()
    """Further names; the class name is always one."""
    kind: Literal["activation", "loss"] | None = None
    """Default: an activation with one tensor argument, a loss with two or more."""
    summary: str | None = None
    """Default: the first line of the docstring."""
    params: Mapping[str, Param] = field(default_factory=dict)
    """Docs and ranges of the parameters, by name."""
    tensors: Mapping[str, str] = field(default_factory=dict)
    """Docs of the tensor arguments, by their names in the service (``input``, ``target``, ...)."""
    index_tensors: tuple[str, ...] = ()
    """Tensor arguments that hold integers (class indices): never cast, never differentiated."""
    differentiable: tuple[str, ...] | None = None
    """Tensor arguments whose gradient is returned; default: every floating-point one."""
    elementwise: bool = False
    """An activation computing each element from that element alone: same-sized requests may
    share one call (bit-identical to each alone: the test suite checks the shipped examples)."""
    dtypes: tuple[FloatDType, ...] | None = None
    """Computation dtypes accepted; default: all four."""
    example: Mapping[str, Any] | None = None
    """A working request body for the docs; default: a small one generated (and run at start-up)."""
    cost: CostModel = ELEMENTWISE
    """Compute and working memory a request takes (``Cost``); default: linear in the elements."""
