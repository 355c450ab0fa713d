"""How many cores this process may compute on."""

from __future__ import annotations

import os


def available_cores() -> int:
    """The CPUs this process may use: its affinity mask (e.g. a Slurm allocation), not the machine's."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        return os.cpu_count() or 1
