"""Analysis of sft-sweep sweeps: collect job files into pandas, plot, report findings.

Public API (imported lazily, so ``import analysis`` stays cheap)::

    from analysis import collect_runs, write_report, compute_findings, pareto_front

    runs = collect_runs("runs/sweeps/quickstart")      # RunSet: .jobs, .curves, .samples, .swept
    paths = write_report("runs/sweeps/quickstart")      # report.md, report.html, figures, CSVs
    front = pareto_front(runs.done_jobs(), maximize=["final_follow_rate"], minimize=["forgetting_pct"])

Command line: ``sft-sweep-report DIR [DIR ...] [--out OUT] [--status]`` or ``python -m analysis``.
Hydra: ``analysis.callback.ReportCallback`` writes the report when a multirun ends.
"""

from __future__ import annotations

from typing import Any

_EXPORTS = {
    "collect_runs": "analysis.collect", "RunSet": "analysis.collect", "Problem": "analysis.collect",
    "find_job_dirs": "analysis.collect",
    "pareto_front": "analysis.stats", "pareto_mask": "analysis.stats", "mean_ci": "analysis.stats",
    "compute_findings": "analysis.registry", "Finding": "analysis.verdicts",
    "write_report": "analysis.report", "ReportPaths": "analysis.report",
    "plot_all": "analysis.plots",
    "ReportError": "analysis.errors",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    if name in _EXPORTS:
        import importlib

        return getattr(importlib.import_module(_EXPORTS[name]), name)
    raise AttributeError(f"module 'analysis' has no attribute {name!r}")
