"""buildah and podman on a private storage: every image, container, network lock, scratch file and
piece of state they make lives under one temporary directory, which is removed afterwards, so
nothing is left on the machine. The flags are what root without a daemon or systemd needs on this kind of
machine: the runc runtime with cgroupfs (no systemd to manage cgroups), file events (no journald),
and explicit open-file and process limits (podman's defaults exceed the machine's hard limits)."""

from __future__ import annotations

import contextlib
import os
import shutil
import subprocess
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

TOOLS = ("buildah", "podman", "debootstrap", "runc")
LIMITS = ("--ulimit", "nofile=20000:20000", "--ulimit", "nproc=32768:32768")


def why_containers_cannot_run() -> str | None:
    """None when containers can run here; otherwise why not (the only reason to skip)."""
    missing = [tool for tool in TOOLS if shutil.which(tool) is None]
    if missing:
        return f"{', '.join(missing)} not installed (make container-test installs them as root on Debian)"
    if os.geteuid() != 0:
        return "building and running containers here needs root (rootless podman is not set up)"
    probe = subprocess.run(
        ["unshare", "--mount", "--uts", "--ipc", "--pid", "--fork", "true"],
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    if probe.returncode != 0:
        return f"this machine cannot create the namespaces a container needs: {probe.stderr.strip()}"
    return None


@dataclass(frozen=True)
class Containers:
    directory: Path

    def _storage(self) -> list[str]:
        return ["--root", str(self.directory / "root"), "--runroot", str(self.directory / "run")]

    def _run(self, command: list[str], timeout: float, check: bool) -> subprocess.CompletedProcess[str]:
        env = {**os.environ, "TMPDIR": str(self.directory / "tmp")}  # buildah's and podman's scratch files
        result = subprocess.run(command, capture_output=True, text=True, timeout=timeout, check=False, env=env)
        if check and result.returncode != 0:
            raise AssertionError(f"{' '.join(command[:3])} ... failed ({result.returncode}):\n{result.stderr[-4000:]}")
        return result

    def buildah(self, *args: str, timeout: float = 600, check: bool = True) -> subprocess.CompletedProcess[str]:
        subcommand, *rest = args
        network = ["--cni-config-dir", str(self.directory / "cni")] if subcommand in ("bud", "build") else []
        return self._run(["buildah", *self._storage(), subcommand, *network, *rest], timeout, check)

    def podman(self, *args: str, timeout: float = 120, check: bool = True) -> subprocess.CompletedProcess[str]:
        options = [
            *self._storage(),
            "--tmpdir",
            str(self.directory / "libpod"),
            "--network-config-dir",
            str(self.directory / "cni"),
            "--events-backend",
            "file",
            "--runtime",
            "runc",
            "--cgroup-manager",
            "cgroupfs",
        ]
        return self._run(["podman", *options, *args], timeout, check)

    def remove_everything(self) -> None:
        self.podman("rm", "--all", "--force", "--time", "0", check=False)
        self.buildah("rm", "--all", check=False)
        self.podman("rmi", "--all", "--force", check=False)
        mounts = subprocess.run(["findmnt", "-rn", "-o", "TARGET"], capture_output=True, text=True, check=False)
        for target in sorted(mounts.stdout.split(), reverse=True):  # the deepest first
            if target.startswith(f"{self.directory}/"):
                subprocess.run(["umount", "--lazy", target], check=False)
        shutil.rmtree(self.directory)


# What buildah, podman and runc make outside their storage whatever the options: the image
# library's cache of blob digests (root's place is fixed) and runc's state directory (empty once
# the containers are gone). Removed afterwards when they were not there before.
OUTSIDE_STORAGE = (Path("/var/lib/containers"), Path("/run/runc"))


def _remove_what_was_made(existed: dict[Path, bool]) -> None:
    for path, was_there in existed.items():
        if not was_there and path.is_dir():
            if path.name == "runc":
                with contextlib.suppress(OSError):  # only when empty: containers running elsewhere keep theirs
                    path.rmdir()
            else:
                shutil.rmtree(path)


@contextmanager
def private_containers() -> Iterator[Containers]:
    containers = Containers(Path(tempfile.mkdtemp(prefix="torchfn-containers-")))
    for scratch in ("cni", "tmp"):
        (containers.directory / scratch).mkdir()
    existed = {path: path.exists() for path in OUTSIDE_STORAGE}
    try:
        yield containers
    finally:
        containers.remove_everything()
        _remove_what_was_made(existed)
