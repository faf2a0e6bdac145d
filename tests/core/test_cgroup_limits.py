"""Torch's threads per worker come from the cgroup CPU quota, which torch itself ignores."""

from __future__ import annotations

import os
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
import torch
from fastapi.testclient import TestClient

from app.core.cgroup_limits import available_cpus, cgroup_cpu_limit, threads_per_worker
from app.core.config import Settings
from app.main import create_app

CPUS = len(os.sched_getaffinity(0))


def _cgroup(tmp_path: Path, files: dict[str, str]) -> Path:
    for name, text in files.items():
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_text(text + "\n")
    return tmp_path


@pytest.mark.parametrize(
    ("files", "limit"),
    [
        ({"cpu.max": "200000 100000"}, 2.0),
        ({"cpu.max": "150000 100000"}, 1.5),
        ({"cpu.max": "max 100000"}, None),
        ({"cpu/cpu.cfs_quota_us": "300000", "cpu/cpu.cfs_period_us": "100000"}, 3.0),
        ({"cpu,cpuacct/cpu.cfs_quota_us": "50000", "cpu,cpuacct/cpu.cfs_period_us": "100000"}, 0.5),
        ({"cpu/cpu.cfs_quota_us": "-1", "cpu/cpu.cfs_period_us": "100000"}, None),
        ({}, None),
    ],
)
def test_cgroup_v2_and_v1_quotas(tmp_path: Path, files: dict[str, str], limit: float | None) -> None:
    assert cgroup_cpu_limit(_cgroup(tmp_path, files)) == limit


def test_available_cpus_is_the_smaller_of_affinity_and_quota(tmp_path: Path) -> None:
    assert available_cpus(_cgroup(tmp_path, {"cpu.max": "max 100000"})) == CPUS
    assert available_cpus(_cgroup(tmp_path, {"cpu.max": f"{(CPUS + 8) * 100000} 100000"})) == CPUS
    assert available_cpus(_cgroup(tmp_path, {"cpu.max": "50000 100000"})) == 0.5


def test_threads_are_the_quota_shared_out_between_workers(tmp_path: Path) -> None:
    eight = _cgroup(tmp_path / "eight", {"cpu.max": "800000 100000"})
    if CPUS >= 8:
        assert threads_per_worker(1, root=eight) == 8
        assert threads_per_worker(3, root=eight) == 2
    half = _cgroup(tmp_path / "half", {"cpu.max": "50000 100000"})
    assert threads_per_worker(1, root=half) == 1
    assert threads_per_worker(4, root=half) == 1
    assert threads_per_worker(4, explicit=6, root=half) == 6


@pytest.fixture
def restore_torch_threads() -> Iterator[None]:
    before = torch.get_num_threads()
    yield
    torch.set_num_threads(before)


def _threads_seen_by_a_new_thread() -> int:
    """What a fresh thread (like the service's compute threads) gets: torch's setting is global,
    but each thread picks it up when it first uses torch."""
    seen: list[int] = []
    thread = threading.Thread(target=lambda: seen.append(torch.get_num_threads()))
    thread.start()
    thread.join()
    return seen[0]


@pytest.mark.usefixtures("restore_torch_threads")
def test_the_service_sets_torch_threads_per_worker() -> None:
    with TestClient(create_app(Settings())):
        assert _threads_seen_by_a_new_thread() == threads_per_worker(1)
    with TestClient(create_app(Settings(device="cpu", workers=CPUS))):
        assert _threads_seen_by_a_new_thread() == 1
    with TestClient(create_app(Settings(device="cpu", workers=CPUS, torch_threads=3))):
        assert _threads_seen_by_a_new_thread() == 3
