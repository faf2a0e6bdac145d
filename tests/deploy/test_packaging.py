"""The service and the client are packages: each wheel holds its own code and nothing else, the
installed service starts with ``python -m app.serve``, and their build backend and dependencies
are pinned where the house pins everything."""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
import time
import tomllib
import zipfile
from pathlib import Path

import httpx
import pytest
import torch

from tests.support.oip_grpc import Client, infer_request, outputs_of
from tests.support.paths import ROOT
from tests.support.server_process import free_port

CLIENT = ROOT / "clients" / "python"
NOT_SOURCES = shutil.ignore_patterns(
    ".venv", ".git", "__pycache__", "*.pyc", ".*_cache", "build", "dist", "*.egg-info", ".hypothesis", ".schemathesis"
)


def build_wheel(source: Path, scratch: Path) -> Path:
    """The wheel of ``source``, built from a copy (a build writes into its source tree), offline,
    with the pinned backend the dev requirements install."""
    copy = scratch / "source"
    shutil.copytree(source, copy, ignore=NOT_SOURCES)
    subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "--no-index", "-w", "dist", "."],
        cwd=copy,
        check=True,
        capture_output=True,
    )
    (wheel,) = (copy / "dist").glob("*.whl")
    return wheel


def package_files(folder: Path) -> set[str]:
    """Every file of a package folder (modules and data alike), as the wheel names them."""
    return {
        path.relative_to(folder.parent).as_posix()
        for path in folder.rglob("*")
        if path.is_file() and "__pycache__" not in path.parts
    }


@pytest.mark.server
def test_the_service_wheel_holds_the_app_alone_and_serves_once_installed(tmp_path: Path) -> None:
    wheel = build_wheel(ROOT, tmp_path)
    names = set(zipfile.ZipFile(wheel).namelist())
    code = {name for name in names if ".dist-info/" not in name}
    # a data file added to app/ must be declared as package data in pyproject.toml, or it is missing here
    assert code == package_files(ROOT / "app"), "every file of app/ and nothing else (no tests, bench, clients)"
    assert {name.split("/")[0] for name in names} == {"app", "torch_functions_service-0.1.0.dist-info"}

    site = tmp_path / "site"
    subprocess.run(
        [sys.executable, "-m", "pip", "install", "--no-deps", "--no-index", "--quiet", "--target", str(site), wheel],
        check=True,
        capture_output=True,
    )
    elsewhere = tmp_path / "elsewhere"  # not the repository: `app` can only come from the installed wheel
    elsewhere.mkdir()
    port = free_port()
    grpc_port = free_port()
    env = {
        "PATH": "/usr/bin:/bin",
        "PYTHONPATH": str(site),
        "TORCHFN_PORT": str(port),
        "TORCHFN_GRPC_PORT": str(grpc_port),
        "TORCHFN_LOG_LEVEL": "warning",
    }
    where = subprocess.run(
        [sys.executable, "-c", "import app.serve; print(app.serve.__file__)"],
        cwd=elsewhere,
        env=env,
        capture_output=True,
        text=True,
        check=True,
    )
    assert Path(where.stdout.strip()).is_relative_to(site)
    with subprocess.Popen(
        [sys.executable, "-m", "app.serve"], cwd=elsewhere, env=env, stderr=subprocess.PIPE, text=True
    ) as server:
        try:
            deadline = time.monotonic() + 60
            while True:
                assert server.poll() is None, server.stderr.read() if server.stderr else ""
                try:
                    if httpx.get(f"http://127.0.0.1:{port}/readyz", timeout=1).status_code == 200:
                        break
                except httpx.TransportError:
                    pass
                assert time.monotonic() < deadline, "the installed service did not become ready"
                time.sleep(0.1)
            reply = httpx.post(f"http://127.0.0.1:{port}/activate", json={"function": "relu", "input": [-1.0, 2.0]})
            assert reply.json()["output"] == [0.0, 2.0]
            client = Client(f"127.0.0.1:{grpc_port}")  # the gRPC face, from the wheel's packaged descriptor
            response = client.infer(infer_request("relu", {"input": torch.tensor([-1.0, 2.0])}))
            client.close()
            assert outputs_of(response)["output"].tolist() == [0.0, 2.0]
        finally:
            server.terminate()
            assert server.wait(30) == 0


def test_the_client_wheel_holds_the_client_its_types_and_the_command(tmp_path: Path) -> None:
    wheel = build_wheel(CLIENT, tmp_path)
    archive = zipfile.ZipFile(wheel)
    names = set(archive.namelist())
    package = CLIENT / "src" / "torchfn_client"
    code = {name for name in names if ".dist-info/" not in name}
    assert code == package_files(package)
    assert "torchfn_client/py.typed" in code
    (entry_points,) = (name for name in names if name.endswith(".dist-info/entry_points.txt"))
    assert "torchfn = torchfn_client.cli:main" in archive.read(entry_points).decode()
    (metadata,) = (name for name in names if name.endswith(".dist-info/METADATA"))
    text = archive.read(metadata).decode()
    assert "Name: torchfn-client" in text
    assert {"httpx", "numpy", "ml-dtypes"} <= set(re.findall(r"^Requires-Dist: ([\w-]+)", text, re.M))


def pins(*files: str) -> dict[str, str]:
    """Exact pins by normalised name, following ``-r``."""
    found: dict[str, str] = {}
    for name in files:
        for line in (ROOT / name).read_text().splitlines():
            line = line.split("#")[0].strip()
            if line.startswith("-r "):
                found.update(pins(line.removeprefix("-r ")))
            elif match := re.fullmatch(r"([A-Za-z0-9_.\-]+)(\[[\w,]+\])?==([\w.+]+)", line):
                found[re.sub(r"[-_.]+", "-", match[1]).lower()] = match[3]
    return found


def requirement_name(requirement: str) -> str:
    name = re.match(r"[A-Za-z0-9_.\-]+", requirement)
    assert name is not None
    return re.sub(r"[-_.]+", "-", name[0]).lower()


def test_build_backend_and_client_dependencies_are_pinned() -> None:
    service = tomllib.loads((ROOT / "pyproject.toml").read_text())
    client = tomllib.loads((CLIENT / "pyproject.toml").read_text())
    dev, lock = pins("requirements-dev.txt"), pins("constraints.txt")
    for project in (service, client):
        (backend,) = project["build-system"]["requires"]
        name, version = backend.split("==")
        assert dev[name] == lock[name] == version, f"the build backend {backend} is pinned as everything is"
    for dependency in client["project"]["dependencies"]:
        name = requirement_name(dependency)
        assert name in dev, f"{name}: the client's dependency is pinned in the dev requirements"
        assert lock[name] == dev[name]
    assert "-e ./clients/python" in (ROOT / "requirements-dev.txt").read_text().splitlines()
