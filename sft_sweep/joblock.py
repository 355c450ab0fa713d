"""One job directory, one writer.

``job_dir_lock`` holds an exclusive ``flock`` on a file of the job directory for the job's whole
life. The kernel drops the lock when its holder exits in any way (an exception, a signal, kill -9),
so a lock left by a process that died is stale and the next writer takes it; the file itself stays
(removing it would let two writers lock two different files of one name). A second writer while
the holder runs is refused with one line naming the holder (pid, host, since when).

``DistinctJobDirs`` (a Hydra callback) refuses a sweep before any job runs when two of its jobs
would land in one directory, e.g. ``optim.lr=1e-3,0.001``: Hydra writes both values as 0.001.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import socket
import sys
import time
from collections import defaultdict
from pathlib import Path
from typing import Any, Iterator

from hydra._internal.core_plugins.basic_sweeper import BasicSweeper
from hydra.core.override_parser.overrides_parser import OverridesParser
from hydra.experimental.callback import Callback
from omegaconf import OmegaConf

from .dirnames import short_dirname
from .errors import SftSweepError
from .jobfiles import LOCK

#: ``hydra.sweep.subdir`` of conf/config.yaml: job directories named by their overrides.
DEFAULT_SUBDIR = "${sft_sweep_dirname:${hydra.job.override_dirname}}"


class JobDirInUse(SftSweepError):
    """Another live process writes this job directory."""


def _holder(path: Path) -> str:
    try:
        info = json.loads(path.read_text(encoding="utf-8"))
        since = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(float(info["since"])))
        return f"pid {info['pid']} on {info['host']} (since {since})"
    except (OSError, ValueError, KeyError, TypeError):
        return "another process"


@contextlib.contextmanager
def job_dir_lock(job_dir: str | os.PathLike) -> Iterator[None]:
    """Hold the job directory's lock for the block; ``JobDirInUse`` when a live process holds it."""
    job_dir = Path(job_dir)
    job_dir.mkdir(parents=True, exist_ok=True)
    path = job_dir / LOCK
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o666)  # the umask applies, as to every job file
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise JobDirInUse(f"job directory {job_dir} is in use by {_holder(path)}: "
                              "refused, its writer is still running") from None
        os.ftruncate(fd, 0)
        os.write(fd, json.dumps({"pid": os.getpid(), "host": socket.gethostname(), "since": time.time()}).encode())
        yield
    finally:
        os.close(fd)  # closing the last descriptor releases the lock


def job_dirnames(config: Any) -> dict[str, list[str]] | None:
    """Directory name -> the override sets of the jobs landing in it, for Hydra's basic sweeper
    and the default ``hydra.sweep.subdir``; None when the sweep names its jobs otherwise."""
    hydra_cfg = config.hydra
    target = str(OmegaConf.select(hydra_cfg, "sweeper._target_", default="") or "")
    subdir = OmegaConf.to_container(hydra_cfg.sweep, resolve=False).get("subdir")
    if not target.endswith("BasicSweeper") or subdir != DEFAULT_SUBDIR:
        return None
    # Hydra's own expansion of a basic sweep: the sweeper's params, then the command line.
    params = OmegaConf.select(hydra_cfg, "sweeper.params", default=None) or {}
    lines = [f"{k}={v}" for k, v in params.items()] + list(hydra_cfg.overrides.task)
    parser = OverridesParser.create()
    naming = hydra_cfg.job.config.override_dirname
    exclude = set(naming.exclude_keys)
    dirs: dict[str, list[str]] = defaultdict(list)
    for job in BasicSweeper.split_arguments(parser.parse_overrides(lines), None)[0]:
        parsed = [o for o in parser.parse_overrides(job) if o.key_or_group not in exclude]
        name = naming.item_sep.join(sorted(str(o.input_line) for o in parsed)).replace("=", naming.kv_sep)
        dirs[short_dirname(name)].append(" ".join(job))
    return dirs


class DistinctJobDirs(Callback):
    """Hydra callback: refuse a multirun whose jobs would share a directory, before any job runs."""

    def on_multirun_start(self, config: Any, **kwargs: Any) -> None:
        try:
            dirs = job_dirnames(config)
        except Exception:  # noqa: BLE001 - an override Hydra cannot expand: Hydra reports it itself
            return
        shared = {d: jobs for d, jobs in (dirs or {}).items() if len(jobs) > 1}
        if shared:
            name, jobs = next(iter(shared.items()))
            print(f"sft-sweep: {len(jobs)} jobs of this sweep would write one directory {name!r} "
                  f"(the same values written twice, e.g. 1e-3 and 0.001); remove the duplicate values",
                  file=sys.stderr, flush=True)
            sys.exit(1)
