"""Hydra callback that writes the sweep report when a multirun ends.

Registered in the app's config::

    hydra:
      callbacks:
        report:
          _target_: analysis.callback.ReportCallback
          # enabled: true      # optional
          # out_dir: null      # optional, default: the sweep directory

A report problem never stops the callback: it is printed (stderr) and logged, and the sweep's
jobs stand. ``sft-sweep-report DIR`` writes the same report by hand. Temporary files that a
killed report left in the report's folders are removed first.

After the report, the jobs of the sweep whose ``summary.json`` says ``failed`` are counted and
named on stderr. Both results go into the sweep's outcome record (``sft_sweep.jobfiles``,
``write_sweep_outcome``), from which the ``sft-sweep`` command takes its exit status: non-zero
when a job failed or the report could not be written (scripts and CI notice).
"""

from __future__ import annotations

import logging
import sys
from pathlib import Path
from typing import Any

from hydra.experimental.callback import Callback

from analysis.jobdir import find_job_dirs
from sft_sweep.config import sweep_dir_of
from sft_sweep.jobfiles import failed_jobs, write_sweep_outcome

log = logging.getLogger(__name__)
PREFIX = "[sft-sweep-report]"

__all__ = ["ReportCallback", "count_failed", "sweep_dir_of"]


class ReportCallback(Callback):
    """Writes ``report.md`` / ``report.html`` into ``hydra.sweep.dir`` at the end of a multirun."""

    def __init__(self, enabled: bool = True, out_dir: str | None = None) -> None:
        self.enabled = bool(enabled)
        self.out_dir = out_dir

    def on_multirun_end(self, config: Any, **kwargs: Any) -> None:
        report_error = self._write(config) if self.enabled else None
        sweep_dir: Path | str = "?"
        try:
            sweep_dir = sweep_dir_of(config)
            dirs = find_job_dirs(sweep_dir) if sweep_dir.is_dir() else []
            write_sweep_outcome(sweep_dir, len(dirs), count_failed(dirs), report_error)
        except Exception as exc:  # noqa: BLE001 - the count must not hide the sweep's own result
            print(f"{PREFIX} could not count the failed jobs of {sweep_dir}: {exc}", file=sys.stderr, flush=True)

    def _write(self, config: Any) -> str | None:
        """Write the report; None when written, else why not (also printed)."""
        sweep_dir: Path | str = "?"
        try:
            sweep_dir = sweep_dir_of(config)
            # Hydra builds this callback for every run, single ones too: pandas and matplotlib are
            # loaded only when a report is written.
            from analysis.report import write_report

            paths = write_report([sweep_dir], self.out_dir)
            print(f"{PREFIX} report written: {paths.html}", flush=True)
            if paths.problems:
                print(f"{PREFIX} {len(paths.problems)} problem(s) reading the jobs are listed in the report",
                      file=sys.stderr, flush=True)
            return None
        except Exception as exc:  # noqa: BLE001 - the jobs' results stand without their report
            error = f"{type(exc).__name__}: {exc}"
            print(f"{PREFIX} could not write the report for {sweep_dir}: {error}\n"
                  f"{PREFIX} the jobs' own files are unaffected; retry with: sft-sweep-report {sweep_dir}",
                  file=sys.stderr, flush=True)
            log.debug("report callback failed", exc_info=True)
            return error


def count_failed(job_dirs: list[Path]) -> list[tuple[str, str]]:
    """The failed jobs among ``job_dirs`` (directory, error), also printed to stderr."""
    failed = failed_jobs(job_dirs)
    if failed:
        lines = [f"{PREFIX} {len(failed)} of {len(job_dirs)} jobs failed (exit status 1):"]
        lines += [f"{PREFIX}   {d}: {err.splitlines()[-1] if err else '?'}" for d, err in failed[:20]]
        print("\n".join(lines), file=sys.stderr, flush=True)
    return failed
