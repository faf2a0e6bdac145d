"""The container's health probe: ``python -m app.healthcheck`` exits 0 when ``/readyz`` answers 200.
Standard library only, so it starts fast and needs nothing the image lacks."""

from __future__ import annotations

import os
import sys
import urllib.error
import urllib.request

PATH = "/readyz"


def main() -> int:
    port = os.environ.get("TORCHFN_PORT", "8000")
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}{PATH}", timeout=2) as reply:
            return 0 if reply.status == 200 else 1
    except (urllib.error.URLError, OSError):
        return 1


if __name__ == "__main__":
    sys.exit(main())
