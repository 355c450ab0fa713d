"""Hydra callback that writes the sweep report when a multirun ends.

Registered in the app's config::

    hydra:
      callbacks:
        report:
          _target_: analysis.callback.ReportCallback
          # enabled: true      # optional
          # out_dir: null      # optional, default: the sweep directory

A report problem never fails the sweep: it is printed (stderr) and logged, and the sweep's
own result stands. ``sft-sweep-report DIR`` writes the same report by hand.
"""

from __future__ import annotations

import logging
import os
import sys
from pathlib import Path
from typing import Any

from hydra.experimental.callback import Callback

log = logging.getLogger(__name__)
PREFIX = "[sft-sweep-report]"


class ReportCallback(Callback):
    """Writes ``report.md`` / ``report.html`` into ``hydra.sweep.dir`` at the end of a multirun."""

    def __init__(self, enabled: bool = True, out_dir: str | None = None) -> None:
        self.enabled = bool(enabled)
        self.out_dir = out_dir

    def on_multirun_end(self, config: Any, **kwargs: Any) -> None:
        if not self.enabled:
            return
        sweep_dir: Path | str = "?"
        try:
            sweep_dir = sweep_dir_of(config)
            from analysis.report import write_report

            paths = write_report([sweep_dir], self.out_dir)
            print(f"{PREFIX} report written: {paths.html}", flush=True)
            if paths.problems:
                print(f"{PREFIX} {len(paths.problems)} problem(s) reading the jobs are listed in the report",
                      file=sys.stderr, flush=True)
        except Exception as exc:  # noqa: BLE001 - never fail the sweep because of its report
            print(f"{PREFIX} could not write the report for {sweep_dir}: {type(exc).__name__}: {exc}\n"
                  f"{PREFIX} the sweep itself is unaffected; retry with: sft-sweep-report {sweep_dir}",
                  file=sys.stderr, flush=True)
            log.debug("report callback failed", exc_info=True)


def sweep_dir_of(config: Any) -> Path:
    """``hydra.sweep.dir`` of a Hydra config, made absolute against the launch directory."""
    from omegaconf import OmegaConf

    raw = OmegaConf.select(config, "hydra.sweep.dir", default=None)
    if raw is None:
        raise ValueError("the config has no hydra.sweep.dir")
    path = Path(str(raw))
    if not path.is_absolute():
        cwd = OmegaConf.select(config, "hydra.runtime.cwd", default=None)
        base = Path(str(cwd)) if cwd else Path(os.getcwd())
        path = base / path
    return path
