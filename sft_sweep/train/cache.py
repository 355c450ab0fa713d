"""Content-addressed cache of pre-trained base models, safe for concurrent jobs.

A base model is identified by the hash of everything that determines its weights (model shape,
pre-training data settings, steps, optimiser settings, seed). The first job that needs it takes an
exclusive lock on ``<key>.lock`` and trains; jobs that start meanwhile block on the same lock and
then load the finished file. The model file is written atomically, so a reader never sees half
of it even without the lock.

A cached entry that cannot be loaded (damaged file, NaN weights) is moved aside under the lock,
to ``base-<key>.corrupt-<time>``, and built again; the job records a warning naming both folders.

The lock is ``fcntl.lockf`` (POSIX record locks). On Linux these also work over NFSv3 (through lockd)
and NFSv4, the usual shared file systems of a Slurm cluster; on a file system without working
locks, build the base once before launching the sweep (see docs/scaling.md).
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import time
from pathlib import Path
from typing import Callable, Iterator

from ..errors import CheckpointError
from ..jobfiles import read_json, write_json
from ..nn import GPT, load_checkpoint


@contextlib.contextmanager
def file_lock(path: Path, on_wait: Callable[[], None] | None = None) -> Iterator[float]:
    """Hold an exclusive lock on ``path``; yields the seconds spent waiting for it.

    When the block fails, the lock file is removed (still locked), so a failed build leaves no
    ``base-<key>.lock`` without its base. A process that waited on the removed file then finds
    another file (or none) at ``path`` and locks that one instead.
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()
    while True:
        f = open(path, "a+")
        try:
            fcntl.lockf(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            if on_wait is not None:
                on_wait()
                on_wait = None
            fcntl.lockf(f, fcntl.LOCK_EX)
        try:
            same = os.stat(path).st_ino == os.fstat(f.fileno()).st_ino
        except FileNotFoundError:
            same = False
        if same:
            break
        f.close()  # its holder removed it meanwhile: lock the file now at ``path``
    with f:
        try:
            yield time.perf_counter() - t0
        except BaseException:
            with contextlib.suppress(OSError):
                path.unlink()
            raise
        finally:
            fcntl.lockf(f, fcntl.LOCK_UN)


class BaseCache:
    """``<root>/base-<key>/{model.npz, meta.json, eval-<evalkey>.json}``."""

    def __init__(self, root: str | os.PathLike, key: str) -> None:
        self.root = Path(root)
        self.key = key
        self.dir = self.root / f"base-{key}"
        self.model_path = self.dir / "model.npz"
        self.meta_path = self.dir / "meta.json"
        self.lock_path = self.root / f"base-{key}.lock"

    def exists(self) -> bool:
        meta = read_json(self.meta_path)
        return self.model_path.exists() and isinstance(meta, dict) and meta.get("complete") is True

    def write_meta(self, meta: dict) -> None:
        write_json(self.meta_path, {**meta, "complete": True})

    def eval_path(self, eval_key: str) -> Path:
        return self.dir / f"eval-{eval_key}.json"

    def read_eval(self, eval_key: str) -> dict | None:
        return read_json(self.eval_path(eval_key))

    def write_eval(self, eval_key: str, result: dict) -> None:
        write_json(self.eval_path(eval_key), result)

    def load_into(self, model: GPT) -> str | None:
        """Load the cached weights into ``model``; returns None, or why the entry is unusable
        (the model is then left untouched)."""
        try:
            load_checkpoint(self.model_path, model)
        except CheckpointError as e:
            return str(e)
        return None

    def move_aside(self) -> Path:
        """Rename the entry's folder out of the way (kept for inspection); call under the lock."""
        aside = self.root / f"{self.dir.name}.corrupt-{time.strftime('%Y%m%d-%H%M%S')}-{os.getpid()}"
        os.replace(self.dir, aside)
        return aside
