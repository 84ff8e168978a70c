"""Load generation and transport-stack benchmarks for the IM server (not shipped in the wheel)."""

from __future__ import annotations

import resource


def raise_fd_limit() -> int:
    """Raise the soft open-files limit to the hard limit; thousands of sockets need it."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard == resource.RLIM_INFINITY:
        hard = 1 << 20
    if soft != resource.RLIM_INFINITY and soft < hard:
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    return hard
