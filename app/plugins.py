"""What an operator's plugin may declare, beyond a bare ``nn.Module`` subclass or function.

A bare class or function needs nothing from here: its ``forward`` (or its signature) gives the
tensor arguments, its typed keyword arguments the parameters. ``Function`` adds what a signature
cannot say::

    from app.plugins import Function, Param, elementwise

    SWISH = Function(
        Swish,
        summary="x * sigmoid(beta * x)",
        params={"beta": Param("slope of the gate", gt=0.0)},
        elementwise=True,
        cost=elementwise(40.0),
    )

Name ``module:SWISH`` in ``TORCHFN_PLUGINS`` (or in the entry-point group ``torchfn.functions``).

A plugin refuses its input with ``raise InputRejected("why", argument="target")``: a 422 whose
message carries its words, the one way a plugin's text reaches a client. A plugin's output is of
its input's dtype, and no larger than its cost model's ``memory`` (``elementwise(memory_per_element=...)``
for an output wider than its input); otherwise its request fails with ``plugin_error``.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

from app.compute.catalogue.cost import ELEMENTWISE, Cost, CostModel, elementwise
from app.core.config import FloatDType
from app.core.errors import InputRejected

__all__ = ["ELEMENTWISE", "Cost", "CostModel", "Function", "InputRejected", "Param", "elementwise"]


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
