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

After the report, the jobs of the sweep whose ``summary.json`` says ``failed`` are counted and
named on stderr; ``failed_jobs()`` returns them, so that the ``sft-sweep`` command exits non-zero
when any job failed (scripts and CI notice; the report and the other jobs are unaffected).
"""

from __future__ import annotations

import json
import logging
import os
import sys
from pathlib import Path
from typing import Any

from hydra.experimental.callback import Callback

log = logging.getLogger(__name__)
PREFIX = "[sft-sweep-report]"

# Failed jobs of the multirun that ended last in this process (job directory, error).
_FAILED: list[tuple[str, str]] = []


def failed_jobs() -> list[tuple[str, str]]:
    """(job directory, error) of every failed job of the last multirun that ended here."""
    return list(_FAILED)


class ReportCallback(Callback):
    """Writes ``report.md`` / ``report.html`` into ``hydra.sweep.dir`` at the end of a multirun."""

    def __init__(self, enabled: bool = True, out_dir: str | None = None) -> None:
        self.enabled = bool(enabled)
        self.out_dir = out_dir

    def on_multirun_end(self, config: Any, **kwargs: Any) -> None:
        _FAILED.clear()
        sweep_dir: Path | str = "?"
        if self.enabled:
            sweep_dir = self._write(config)
        try:
            sweep_dir = sweep_dir_of(config)
            _FAILED.extend(count_failed(sweep_dir))
        except Exception as exc:  # noqa: BLE001 - the count must not hide the sweep's own result
            print(f"{PREFIX} could not count the failed jobs of {sweep_dir}: {exc}", file=sys.stderr, flush=True)

    def _write(self, config: Any) -> Path | str:
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
        return sweep_dir


def count_failed(sweep_dir: Path) -> list[tuple[str, str]]:
    """The sweep's failed jobs (directory, error), also printed to stderr."""
    from analysis.jobdir import find_job_dirs
    from sft_sweep.jobfiles import FAILED, SUMMARY

    dirs = find_job_dirs(sweep_dir)
    failed = []
    for job_dir in dirs:
        try:
            summary = json.loads((job_dir / SUMMARY).read_text(encoding="utf-8"))
        except (OSError, ValueError):
            continue
        if isinstance(summary, dict) and summary.get("status") == FAILED:
            failed.append((str(job_dir), str(summary.get("error") or "")))
    if failed:
        lines = [f"{PREFIX} {len(failed)} of {len(dirs)} jobs failed (exit status 1):"]
        lines += [f"{PREFIX}   {d}: {err.splitlines()[-1] if err else '?'}" for d, err in failed[:20]]
        print("\n".join(lines), file=sys.stderr, flush=True)
    return failed


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
