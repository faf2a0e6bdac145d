"""The ``torchfn`` command (``torchfn_client.cli.main``)."""

from __future__ import annotations

from torchfn_client.cli.main import EXIT_FAILED, EXIT_OK, EXIT_REFUSED, EXIT_USAGE, main

__all__ = ["EXIT_FAILED", "EXIT_OK", "EXIT_REFUSED", "EXIT_USAGE", "main"]
