"""Limits on what one request may hold, shared by every protocol."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class TensorLimits:
    """The most elements any one tensor may hold, and its deepest rank."""

    max_elements: int
    max_rank: int
