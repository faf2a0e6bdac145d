"""CPU time, which a loaded machine does not stretch as it does wall-clock time (to the kernel's
tick, 10 ms, from ``/proc``)."""

from __future__ import annotations

import contextlib
import os
from pathlib import Path


def process_cpu_seconds(pid: int) -> float:
    """User and system CPU time of a process, all its threads, from ``/proc/<pid>/stat``."""
    stat = Path(f"/proc/{pid}/stat").read_text()
    fields = stat[stat.rindex(")") + 2 :].split()  # after the command name, which may hold spaces
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def tree_cpu_seconds(pid: int | None = None) -> float:
    """CPU time of a process (this one by default) and its living descendants: a server and its
    parse process, workers..."""
    total, pending = 0.0, [os.getpid() if pid is None else pid]
    while pending:
        current = pending.pop()
        with contextlib.suppress(FileNotFoundError, ProcessLookupError):
            total += process_cpu_seconds(current)
            for task in Path(f"/proc/{current}/task").iterdir():
                pending.extend(int(child) for child in (task / "children").read_text().split())
    return total
