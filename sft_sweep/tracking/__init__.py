"""Experiment trackers beside the job's own files: TensorBoard and MLflow (the ``logger`` group).

The job's files (metrics.jsonl, summary.json, samples.jsonl) are the record and are always
written; a tracker copies what they hold to a tool made for browsing and comparing runs. A tracker
never fails a job: its first error becomes a warning in the job's log and in ``summary.json``
(``warnings``), that tracker stops, and the job goes on.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any, Protocol


log = logging.getLogger("sft_sweep")



class Tracker(Protocol):
    name: str

    def start(self, config: dict[str, Any], resumed: bool) -> None: ...

    def log_row(self, row: dict[str, Any]) -> None: ...

    def finish(self, summary: dict[str, Any], files: dict[str, Path]) -> None: ...


class Tracking:
    """The trackers a job's ``logger`` config asks for, each guarded so that it cannot fail the job."""

    def __init__(self, trackers: list[Tracker], label: str) -> None:
        self.trackers = list(trackers)
        self.label = label
        self.warnings: list[str] = []

    def _guard(self, tracker: Tracker, what: str, fn, *args) -> None:
        if tracker not in self.trackers:
            return
        try:
            fn(*args)
        except Exception as e:  # noqa: BLE001 - a tracker problem never stops the job
            msg = f"{tracker.name} tracking stopped ({what}): {type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''}"
            self.warnings.append(msg)
            self.trackers.remove(tracker)
            log.warning("[%s] %s; the job goes on, its own files are complete", self.label, msg)

    def start(self, config: dict[str, Any], resumed: bool) -> None:
        for t in list(self.trackers):
            self._guard(t, "start", t.start, config, resumed)

    def log_row(self, row: dict[str, Any]) -> None:
        for t in list(self.trackers):
            self._guard(t, "metrics", t.log_row, row)

    def finish(self, summary: dict[str, Any], files: dict[str, Path]) -> dict[str, Any]:
        """End every tracker; returns the summary with the tracking warnings added."""
        for t in list(self.trackers):
            self._guard(t, "finish", t.finish, summary, files)
        if self.warnings:
            summary = {**summary, "warnings": [*summary.get("warnings", []), *self.warnings]}
        return summary

    def tee(self, metrics_log: Any) -> Any:
        """A metrics writer that feeds the trackers every row it writes to ``metrics.jsonl``."""
        tracking = self

        class _Tee:
            def write(self, row: dict) -> None:
                metrics_log.write(row)
                tracking.log_row(row)

        return _Tee()


def _first_line(e: BaseException) -> str:
    text = str(e).strip()
    return f"{type(e).__name__}: {text.splitlines()[0]}" if text else type(e).__name__


def open_tracking(cfg_dict: dict[str, Any], job_dir: Path, label: str, base_dir: str) -> Tracking:
    """The trackers of ``cfg_dict['logger']`` for one job (a missing library is a warning)."""
    logger_cfg = cfg_dict.get("logger") or {}
    trackers: list[Tracker] = []
    tracking = Tracking([], label)
    # Each tracker module imports its optional extra (tensorboardX, mlflow) at its top, so it is
    # imported here, only when the job's logger config asks for it.
    if logger_cfg.get("tensorboard"):
        try:
            from .tensorboard import TensorBoardTracker

            trackers.append(TensorBoardTracker(job_dir, **logger_cfg["tensorboard"]))
        except ImportError as e:
            tracking.warnings.append(f"tensorboard logger: {e} (pip install 'sft-sweep[tensorboard]')")
        except Exception as e:  # noqa: BLE001 - a tracker that cannot start never stops the job
            tracking.warnings.append(f"tensorboard logger could not start: {_first_line(e)}")
    if logger_cfg.get("mlflow"):
        try:
            from .mlflow_run import MlflowTracker

            name = logger_cfg["mlflow"].get("experiment_name") or cfg_dict.get("name") or "default"
            trackers.append(MlflowTracker(job_dir, label, base_dir, experiment_name=name,
                                          tracking_uri=logger_cfg["mlflow"]["tracking_uri"],
                                          log_model=bool(logger_cfg["mlflow"].get("log_model", True))))
        except ImportError as e:
            tracking.warnings.append(f"mlflow logger: {e} (pip install 'sft-sweep[mlflow]')")
        except Exception as e:  # noqa: BLE001 - a tracker that cannot start never stops the job
            tracking.warnings.append(f"mlflow logger could not start: {_first_line(e)}")
    for w in tracking.warnings:
        log.warning("[%s] %s", label, w)
    tracking.trackers = trackers
    return tracking
