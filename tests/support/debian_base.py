"""A stand-in for the official ``python:3.11-slim-bookworm`` base image, which no registry here
serves: Debian bookworm's minimal system with its Python 3.11, made by debootstrap from the Debian
mirror apt uses, without apt's caches and lists, documentation or locales (as the slim image).
The tarball is cached for a week, keyed on this recipe and the mirror, so a fresh machine always
makes its own."""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import tempfile
import time
from pathlib import Path

from tests.support.host_sources import debian_mirror

SUITE = "bookworm"
PACKAGES = ("python3", "python3-venv", "python-is-python3", "ca-certificates")
TRIMMED = ("var/cache/apt/archives", "var/lib/apt/lists", "usr/share/doc", "usr/share/man", "usr/share/locale")
MAX_AGE_S = 7 * 24 * 3600


def _cache_dir() -> Path:
    return Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "torchfn-container-test"


def _debootstrap(mirror: str | None, rootfs: Path) -> None:
    command = ["debootstrap", "--variant=minbase", f"--include={','.join(PACKAGES)}", SUITE, str(rootfs)]
    result = subprocess.run([*command, *([mirror] if mirror else [])], capture_output=True, text=True, timeout=900)
    if result.returncode != 0:
        log = rootfs / "debootstrap" / "debootstrap.log"
        details = log.read_text()[-3000:] if log.exists() else ""
        raise AssertionError(f"debootstrap failed:\n{result.stderr[-3000:]}\n{details}")
    for trimmed in TRIMMED:
        directory = rootfs / trimmed
        shutil.rmtree(directory)
        directory.mkdir()


def base_tarball() -> Path:
    """The root filesystem as a tarball for ``podman import``: from the cache, or made now."""
    mirror = debian_mirror(SUITE)
    recipe = repr((SUITE, "minbase", PACKAGES, TRIMMED, mirror))
    cached = _cache_dir() / f"debian-{SUITE}-python-{hashlib.sha256(recipe.encode()).hexdigest()[:16]}.tar"
    if cached.is_file() and time.time() - cached.stat().st_mtime < MAX_AGE_S:
        return cached
    cached.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="torchfn-debootstrap-") as scratch:
        rootfs = Path(scratch) / "rootfs"
        _debootstrap(mirror, rootfs)
        partial = cached.with_suffix(".partial")
        subprocess.run(["tar", "--numeric-owner", "-C", str(rootfs), "-cf", str(partial), "."], check=True, timeout=300)
        partial.replace(cached)  # whole or not at all
    return cached
