"""The files a job leaves behind, written so a reader never sees half of one.

Whole files (summary.json, samples.jsonl, checkpoints) go to a temporary file in the same
directory and are renamed over the target: rename is atomic on POSIX file systems, NFS included.
metrics.jsonl grows line by line (one flushed write per row) so a sweep can be watched while it
runs; a reader must tolerate a torn last line, which the analysis does.
"""

from __future__ import annotations

import json
import math
import os
import tempfile
from pathlib import Path
from typing import Any, Iterable


def _clean(obj: Any) -> Any:
    """JSON-safe: numpy scalars become Python numbers, non-finite floats become null."""
    if isinstance(obj, dict):
        return {str(k): _clean(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_clean(v) for v in obj]
    if hasattr(obj, "item") and callable(obj.item) and getattr(obj, "ndim", 1) == 0:
        obj = obj.item()
    if isinstance(obj, float) and not math.isfinite(obj):
        return None
    return obj


def atomic_write_text(path: str | os.PathLike, text: str) -> None:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(text)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def atomic_write_json(path: str | os.PathLike, obj: Any) -> None:
    atomic_write_text(path, json.dumps(_clean(obj), indent=2, sort_keys=False) + "\n")


def atomic_write_jsonl(path: str | os.PathLike, rows: Iterable[dict]) -> None:
    atomic_write_text(path, "".join(json.dumps(_clean(r), ensure_ascii=False) + "\n" for r in rows))


def read_json(path: str | os.PathLike) -> Any | None:
    """The parsed file, or None when it is missing or not valid JSON."""
    try:
        with open(path, encoding="utf-8") as f:
            return json.load(f)
    except (OSError, ValueError):
        return None


def read_jsonl(path: str | os.PathLike) -> list[dict]:
    """Rows of a JSON-lines file; a torn or corrupt line (a killed writer) is dropped."""
    rows: list[dict] = []
    try:
        with open(path, encoding="utf-8") as f:
            for line in f:
                try:
                    row = json.loads(line)
                except ValueError:
                    continue
                if isinstance(row, dict):
                    rows.append(row)
    except OSError:
        pass
    return rows


class MetricsLog:
    """Append-only metrics.jsonl.

    On resume, rows past the checkpoint's step are dropped first (rewritten atomically), so the
    resumed job's file equals that of an uninterrupted run.
    """

    def __init__(self, path: str | os.PathLike, keep_until_step: int | None = None) -> None:
        self.path = Path(path)
        if keep_until_step is None:
            atomic_write_text(self.path, "")
        else:
            kept = [r for r in read_jsonl(self.path) if int(r.get("step", 0)) <= keep_until_step]
            atomic_write_jsonl(self.path, kept)

    def write(self, row: dict) -> None:
        with open(self.path, "a", encoding="utf-8") as f:
            f.write(json.dumps(_clean(row)) + "\n")
            f.flush()
