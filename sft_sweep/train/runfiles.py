"""metrics.jsonl while a job runs: one flushed row at a time, cut back to a checkpoint on resume.

Whole job files (summary.json, samples.jsonl, checkpoints) are written with ``write_atomic`` and
friends of ``sft_sweep.jobfiles``, which also describes every file of a job directory.
"""

from __future__ import annotations

import os
from pathlib import Path

from ..jobfiles import append_jsonl, read_jsonl, write_atomic, write_jsonl


class MetricsLog:
    """Append-only metrics.jsonl.

    On resume, rows past the checkpoint's step are dropped first (rewritten atomically), so the
    resumed job's file equals that of an uninterrupted run.
    """

    def __init__(self, path: str | os.PathLike, keep_until_step: int | None = None) -> None:
        self.path = Path(path)
        if keep_until_step is None:
            write_atomic(self.path, "")
        else:
            kept = [r for r in read_jsonl(self.path) if int(r.get("step", 0)) <= keep_until_step]
            write_jsonl(self.path, kept)

    def write(self, row: dict) -> None:
        append_jsonl(self.path, row)
