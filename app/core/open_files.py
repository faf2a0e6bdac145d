"""The process's open-files limit, sized for its connection cap."""

from __future__ import annotations

import resource

SPARE_DESCRIPTORS = 256
"""Descriptors kept for everything but client connections: the listening socket, libraries,
log and metrics files, pipes, the supervisor's sockets to its workers."""


def fit_open_files_limit(max_connections: int) -> str | None:
    """Raise the soft open-files limit to the hard one when ``max_connections`` and the spare
    descriptors do not fit under it; the problem, when they do not fit even then."""
    needed = max_connections + SPARE_DESCRIPTORS
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft == resource.RLIM_INFINITY or soft >= needed:
        return None
    if hard != resource.RLIM_INFINITY and hard < needed:
        return (
            f"{max_connections} connections and {SPARE_DESCRIPTORS} spare descriptors need an "
            f"open-files limit of {needed}, but the hard limit is {hard}"
        )
    resource.setrlimit(resource.RLIMIT_NOFILE, (needed if hard == resource.RLIM_INFINITY else hard, hard))
    return None
