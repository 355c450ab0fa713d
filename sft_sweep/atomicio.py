"""Whole files written atomically, with the permissions the user's umask gives new files.

A reader (a colleague's report, a resumed job, a cluster node over NFS) sees the old file or the
new one, never half of one. This module imports only the standard library, so the job-file
contract and the analysis can use it on a laptop without the trainer's dependencies.
"""

from __future__ import annotations

import contextlib
import os
import tempfile
import time
from pathlib import Path
from typing import Iterator

#: Temporary files are hidden siblings of their target: ``.NAME.<random>.tmp``.
TMP_PREFIX = "."
TMP_SUFFIX = ".tmp"


def current_umask() -> int:
    """The process's umask, read without changing it where the system allows."""
    try:
        with open("/proc/self/status", encoding="ascii") as f:
            for line in f:
                if line.startswith("Umask:"):
                    return int(line.split()[1], 8)
    except (OSError, ValueError, IndexError):
        pass
    mask = os.umask(0o022)  # elsewhere the only way to read it is to set it (and put it back)
    os.umask(mask)
    return mask


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike) -> Iterator[Path]:
    """Yield a temporary path beside ``path``; once the block succeeds it replaces ``path``.

    For writers that want a file name (``numpy.savez``, ``DataFrame.to_csv``, ``Figure.savefig``).
    Rename is atomic on POSIX file systems, NFS included: a reader sees the old file or the new
    one, never half of one. On error the temporary file is removed and ``path`` is untouched.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f"{TMP_PREFIX}{path.name}.", suffix=TMP_SUFFIX)
    os.close(fd)
    try:
        yield Path(tmp)
        # mkstemp creates the file private (0600); give it the mode a plain open() would have, so
        # results are as readable as the user's other files.
        os.chmod(tmp, 0o666 & ~current_umask())
        with open(tmp, "rb+") as f:
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise


def write_atomic(path: str | os.PathLike, content: str | bytes) -> None:
    """Write ``content`` (text as UTF-8) to ``path`` atomically."""
    data = content.encode("utf-8") if isinstance(content, str) else content
    with atomic_path(path) as tmp:
        tmp.write_bytes(data)


def remove_leftover_tmp(directory: str | os.PathLike, older_than_s: float = 10.0) -> list[Path]:
    """Remove the temporary files a killed writer left in ``directory`` (not below it): hidden
    ``.NAME.<random>.tmp`` files not touched for ``older_than_s`` seconds, so that a writer at
    work right now keeps its own. Returns the removed paths."""
    removed = []
    now = time.time()
    for path in Path(directory).glob(f"{TMP_PREFIX}*{TMP_SUFFIX}"):
        with contextlib.suppress(OSError):
            if path.is_file() and now - path.stat().st_mtime >= older_than_s:
                path.unlink()
                removed.append(path)
    return removed
