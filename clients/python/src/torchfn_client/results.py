"""What the client returns: results as numpy arrays (torch tensors on request), and the catalogue."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Generic, TypeVar

from torchfn_client.arrays import Array, to_torch

if TYPE_CHECKING:
    import torch

ArrayT = TypeVar("ArrayT")


@dataclass(frozen=True)
class ActivationResult(Generic[ArrayT]):
    """An activation's output and, when asked, the vector-Jacobian product with respect to its input."""

    function: str
    """The canonical name of the function computed (``leaky_relu`` for ``LeakyReLU``)."""
    output: ArrayT
    grad: ArrayT | None
    dtype: str
    """The dtype the service computed in; ``output`` and ``grad`` have it."""

    def to_torch(self: ActivationResult[Array]) -> ActivationResult[torch.Tensor]:
        """The same result with torch tensors (needs torch installed)."""
        grad = None if self.grad is None else to_torch(self.grad)
        return ActivationResult(self.function, to_torch(self.output), grad, self.dtype)


@dataclass(frozen=True)
class LossResult(Generic[ArrayT]):
    """A loss (a 0-d array when reduced) and, when asked, its gradient per differentiable argument."""

    function: str
    loss: ArrayT
    grad: Mapping[str, ArrayT] | None
    """By torch argument name: ``input``, ``target``, ``var``, ``anchor``..."""
    dtype: str

    def to_torch(self: LossResult[Array]) -> LossResult[torch.Tensor]:
        """The same result with torch tensors (needs torch installed)."""
        grad = None if self.grad is None else {name: to_torch(g) for name, g in self.grad.items()}
        return LossResult(self.function, to_torch(self.loss), grad, self.dtype)


@dataclass(frozen=True)
class FunctionInfo:
    """One function of the catalogue (``GET /functions/{name}``)."""

    name: str
    kind: str
    """``activation`` or ``loss``."""
    summary: str
    aliases: tuple[str, ...]
    tensors: tuple[str, ...]
    """Its tensor arguments by torch name, in order."""
    params: tuple[Mapping[str, Any], ...]
    """Each parameter: name, type, doc, default, and its range (ge, le...) or choices."""
    gradient_wrt: tuple[str, ...]
    example: Mapping[str, Any]
    """A working request body for it."""
    raw: Mapping[str, Any]
    """Everything the service said about it."""

    @classmethod
    def from_json(cls, entry: Mapping[str, Any]) -> FunctionInfo:
        return cls(
            name=entry["name"],
            kind=entry["kind"],
            summary=entry.get("summary", ""),
            aliases=tuple(entry.get("aliases", ())),
            tensors=tuple(tensor["name"] for tensor in entry.get("tensors", ())),
            params=tuple(entry.get("params", ())),
            gradient_wrt=tuple(entry.get("gradient_wrt", ())),
            example=entry.get("example", {}),
            raw=entry,
        )
