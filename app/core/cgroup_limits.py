"""The CPUs and memory this process may use, from its cgroup: torch sizes its thread pool from
the host's core count and ignores container limits, which oversubscribes a limited container;
the memory budget of requests is derived from the container's memory limit."""

from __future__ import annotations

import math
import os
from pathlib import Path

CGROUP_ROOT = Path("/sys/fs/cgroup")


def _read(path: Path) -> str | None:
    try:
        return path.read_text().strip()
    except OSError:
        return None


def cgroup_cpu_limit(root: Path = CGROUP_ROOT) -> float | None:
    """CPUs allowed by the CFS quota (cgroup v2 ``cpu.max``, else v1 ``cpu.cfs_quota_us``); None if unlimited."""
    v2 = _read(root / "cpu.max")
    if v2 is not None:
        quota_field, _, period_field = v2.partition(" ")
        if quota_field == "max" or not period_field:
            return None
        return int(quota_field) / int(period_field)
    for v1 in (root / "cpu", root / "cpu,cpuacct", root):
        quota_text, period_text = _read(v1 / "cpu.cfs_quota_us"), _read(v1 / "cpu.cfs_period_us")
        if quota_text is None or period_text is None:
            continue
        quota, period = int(quota_text), int(period_text)
        return None if quota <= 0 or period <= 0 else quota / period
    return None


def available_cpus(root: Path = CGROUP_ROOT) -> float:
    """The smaller of the CPUs this process may be scheduled on and the cgroup quota."""
    cpus = float(len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1)
    limit = cgroup_cpu_limit(root)
    return cpus if limit is None else min(cpus, limit)


def threads_per_worker(workers: int, explicit: int | None = None, root: Path = CGROUP_ROOT) -> int:
    """Torch intra-op threads for one of ``workers`` processes: an explicit setting wins, else the
    available CPUs shared out (rounded down, at least one)."""
    if explicit is not None:
        return explicit
    return max(1, math.floor(available_cpus(root) / workers))


_UNLIMITED_V1 = 1 << 60
"""cgroup v1 reports "no limit" as a huge page-rounded number rather than a word."""


def cgroup_memory_limit(root: Path = CGROUP_ROOT) -> int | None:
    """Bytes allowed by the memory limit (cgroup v2 ``memory.max``, else v1
    ``memory.limit_in_bytes``); None if unlimited or unknown."""
    v2 = _read(root / "memory.max")
    if v2 is not None:
        return None if v2 == "max" else int(v2)
    for v1 in (root / "memory", root):
        text = _read(v1 / "memory.limit_in_bytes")
        if text is not None:
            limit = int(text)
            return None if limit >= _UNLIMITED_V1 else limit
    return None


def physical_memory() -> int:
    return os.sysconf("SC_PHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")


PROCESS_BASELINE = 640 * 1024 * 1024
"""What the process holds with nothing to do (torch, the app, the allocator's caches: ~300 MiB
measured idle, with room for the interpreter's and uvicorn's own growth under load)."""
BUDGET_SHARE = 0.6
"""Of the memory left beyond the baseline, the share requests may hold: the rest is slack for what
the estimates do not see (allocator fragmentation, the reply being sent)."""
MIN_BUDGET = 256 * 1024 * 1024


def default_memory_budget(root: Path = CGROUP_ROOT) -> int:
    """Bytes that requests in flight may hold together: a share of the container's memory limit
    (or of the machine's memory) beyond the process's own baseline."""
    limit = cgroup_memory_limit(root) or physical_memory()
    return max(MIN_BUDGET, int((limit - PROCESS_BASELINE) * BUDGET_SHARE))
