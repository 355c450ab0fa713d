"""TensorBoard event files in the job directory, written with tensorboardX."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml
from tensorboardX import SummaryWriter


class TensorBoardTracker:
    name = "tensorboard"

    def __init__(self, job_dir: Path, log_dir: str = "tensorboard") -> None:
        self.dir = Path(job_dir) / log_dir
        self.writer: SummaryWriter | None = None

    def start(self, config: dict[str, Any], resumed: bool) -> None:
        self.writer = SummaryWriter(logdir=str(self.dir))
        if not resumed:
            text = yaml.safe_dump({k: v for k, v in config.items() if k != "logger"}, sort_keys=False)
            # Indented lines: TensorBoard's text plugin renders them as a code block.
            self.writer.add_text("config", "\n".join("    " + line for line in text.splitlines()), 0)

    def log_row(self, row: dict[str, Any]) -> None:
        assert self.writer is not None
        kind, step = row.get("kind"), int(row.get("step", 0))
        for key, value in row.items():
            if key in ("kind", "step") or isinstance(value, bool) or not isinstance(value, (int, float)):
                continue
            self.writer.add_scalar(f"{kind}/{key}", float(value), step)

    def finish(self, summary: dict[str, Any], files: dict[str, Path]) -> None:
        assert self.writer is not None
        if summary.get("forgetting_pct") is not None:
            self.writer.add_scalar("summary/forgetting_pct", float(summary["forgetting_pct"]), int(summary.get("steps", 0)))
        self.writer.add_text("status", str(summary.get("status")), int(summary.get("steps", 0) or 0))
        self.writer.close()
