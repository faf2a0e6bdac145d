"""Parse functions for the parse process's failure tests (``tests/serving/test_apart.py``): picklable,
so the parse process imports them by name, as it does the codecs' own."""

from __future__ import annotations

import os
from typing import Any

from app.core.limits import TensorLimits


def exit_abruptly(text: bytes, limits: TensorLimits) -> Any:
    """The parse process dies in the middle of a parse, as it would if the kernel killed it."""
    os._exit(9)


def raise_unexpected(text: bytes, limits: TensorLimits) -> Any:
    """A parser's own bug: an exception that is not one of the service's errors."""
    raise LookupError("a parser bug")
