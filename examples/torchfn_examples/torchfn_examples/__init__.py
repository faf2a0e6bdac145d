"""Example plugins: what an operator writes to serve their own functions.

``FocalLoss`` is a bare ``nn.Module`` subclass, served as it is: ``forward``'s two tensors make it
a loss, its typed constructor arguments its parameters. ``SWISH`` wraps ``Swish`` in an
``app.plugins.Function`` to declare more: a range for ``beta``, and that it is elementwise (so
concurrent same-sized requests share one call).
"""

from __future__ import annotations

from typing import Literal

import torch
import torch.nn.functional as F
from torch import nn

from app.plugins import Function, Param


class Swish(nn.Module):
    """Swish: x * sigmoid(beta * x); SiLU at beta = 1."""

    def __init__(self, beta: float = 1.0) -> None:
        super().__init__()
        self.beta = beta

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * torch.sigmoid(self.beta * x)


class FocalLoss(nn.Module):
    """Binary focal loss on logits (Lin et al., 2017): cross-entropy weighted by (1 - p_t)^gamma."""

    def __init__(self, gamma: float = 2.0, reduction: Literal["mean", "sum", "none"] = "mean") -> None:
        super().__init__()
        self.gamma = gamma
        self.reduction = reduction

    def forward(self, logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        p = torch.sigmoid(logits)
        ce = F.binary_cross_entropy_with_logits(logits, targets, reduction="none")
        p_t = p * targets + (1 - p) * (1 - targets)
        loss = ce * (1 - p_t) ** self.gamma
        if self.reduction == "mean":
            return loss.mean()
        if self.reduction == "sum":
            return loss.sum()
        return loss


SWISH = Function(
    Swish,
    params={"beta": Param("slope of the sigmoid gate; 1 is SiLU", gt=0.0, le=100.0)},
    tensors={"input": "the tensor to transform, any shape"},
    elementwise=True,
    example={"function": "swish", "input": [[-1.5, 0.2, 3.0], [0.7, -0.1, 2.5]], "params": {"beta": 1.5}, "grad": True},
)

FUNCTIONS = [SWISH, FocalLoss]
"""Both, for ``TORCHFN_PLUGINS=torchfn_examples:FUNCTIONS``."""
