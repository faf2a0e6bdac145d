"""Where this machine gets its packages, read at test time so that nothing in the repository names
a host: pip's indexes and CA bundle (``pip config list`` and the ``PIP_*`` environment), the Debian
mirror apt uses, and the torch wheel pip would install (served to the image build as a one-package
index)."""

from __future__ import annotations

import ast
import hashlib
import html
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

PRECEDENCE = (":env:", "install", "download", "global")  # the PIP_* variables, then pip.conf's sections


def _pip_config() -> dict[str, str]:
    """``pip config list`` as {"scope.key": value}; the ``PIP_*`` variables appear as ``:env:.key``."""
    listed = subprocess.run(
        [sys.executable, "-m", "pip", "config", "list"], capture_output=True, text=True, timeout=60, check=True
    ).stdout
    config: dict[str, str] = {}
    for line in listed.splitlines():
        name, sep, value = line.partition("=")
        if sep:
            config[name.strip()] = ast.literal_eval(value.strip())
    return config


def _pip_setting(config: dict[str, str], key: str) -> str:
    for section in PRECEDENCE:
        value = config.get(f"{section}.{key}", "")
        if value:
            return value
    return ""


@dataclass(frozen=True)
class PipSources:
    """What pip inside the image build needs to reach the indexes this machine's pip reaches.
    Local indexes and wheel directories (``file://``, find-links) stay on this machine: the build
    gets the remote indexes, and torch through its own one-package index."""

    index_url: str
    extra_index_urls: list[str]
    ca_bundle: Path | None


def _remote(urls: str) -> list[str]:
    return [url for url in urls.split() if url.startswith(("http://", "https://"))]


def pip_sources() -> PipSources:
    config = _pip_config()
    index = _remote(_pip_setting(config, "index-url"))
    cert = _pip_setting(config, "cert")
    return PipSources(
        index_url=index[0] if index else "",
        extra_index_urls=_remote(_pip_setting(config, "extra-index-url")),
        ca_bundle=Path(cert) if cert and Path(cert).is_file() else None,
    )


def torch_index(version: str, directory: Path) -> Path:
    """Download the wheel this machine's pip installs for ``torch==version`` and make ``directory``
    a PEP 503 index of it alone (``directory/simple/torch/``, with an ``index.html`` so that any
    pip reads it as ``file://`` or over HTTP). Returns the wheel."""
    package = directory / "simple" / "torch"
    package.mkdir(parents=True)
    subprocess.run(
        [sys.executable, "-m", "pip", "download", "--quiet", "--no-deps", "--dest", str(package), f"torch=={version}"],
        capture_output=True,
        text=True,
        timeout=600,
        check=True,
    )
    (wheel,) = package.glob("torch-*.whl")
    digest = hashlib.sha256(wheel.read_bytes()).hexdigest()
    page = "<!DOCTYPE html>\n<html><body>{}</body></html>\n"
    name = html.escape(wheel.name)
    (package / "index.html").write_text(page.format(f'<a href="{name}#sha256={digest}">{name}</a>'))
    (directory / "simple" / "index.html").write_text(page.format('<a href="torch/">torch</a>'))
    return wheel


def _deb822_mirrors(text: str, suite: str) -> list[str]:
    found = []
    for paragraph in text.split("\n\n"):
        fields: dict[str, str] = {}
        for line in paragraph.splitlines():
            if line and not line.startswith(("#", " ")):
                key, _, value = line.partition(":")
                fields[key.strip().lower()] = value.strip()
        if "deb" in fields.get("types", "").split() and suite in fields.get("suites", "").split():
            found.extend(fields.get("uris", "").split())
    return found


def _one_line_mirrors(text: str, suite: str) -> list[str]:
    found = []
    for line in text.splitlines():
        words = [word for word in line.split("#")[0].split() if not word.startswith("[")]
        if len(words) >= 3 and words[0] == "deb" and words[2] == suite:
            found.append(words[1])
    return found


def debian_mirror(suite: str, apt_dir: Path = Path("/etc/apt")) -> str | None:
    """The Debian mirror apt uses for ``suite`` (its main archive, not a security or other
    archive), or None when apt names none (debootstrap then uses its default)."""
    mirrors: list[str] = []
    for path in sorted(apt_dir.glob("sources.list.d/*.sources")):
        mirrors += _deb822_mirrors(path.read_text(), suite)
    for path in [apt_dir / "sources.list", *sorted(apt_dir.glob("sources.list.d/*.list"))]:
        if path.is_file():
            mirrors += _one_line_mirrors(path.read_text(), suite)
    for mirror in mirrors:
        if mirror.rstrip("/").endswith("/debian"):
            return mirror
    return mirrors[0] if mirrors else None
