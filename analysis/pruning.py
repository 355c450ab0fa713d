"""Jobs a search stopped early (status ``pruned``): counted apart, compute saved, curves to the stop.

A pruned job's summary.json has no ``final`` block (its last evaluation is ``last_eval``), so it
never enters final-metric tables or findings; it is still evidence of how its setting learned up
to ``stopped_at_step``, which the learning-rate figure draws (dashed, a cross at the stop).
"""

from __future__ import annotations

from typing import Any, Callable

import pandas as pd

from sft_sweep.jobfiles import PRUNED

from .collect import RunSet


def pruned_jobs(runs: RunSet) -> pd.DataFrame:
    if runs.jobs.empty:
        return runs.jobs
    return runs.jobs[runs.jobs["status"] == PRUNED]


def compute_saved(runs: RunSet) -> dict[str, float] | None:
    """SFT steps the pruned jobs did not run, against what all trials would have run; None without pruning.

    Completed jobs count their steps; pruned ones their planned steps (what they would have run)
    and the steps they ran. A pruned job without ``steps_planned`` is left out of both sums.
    """
    pruned = pruned_jobs(runs)
    if pruned.empty or "steps_planned" not in pruned:
        return None
    known = pruned.dropna(subset=["steps_planned", "stopped_at_step"])
    done = runs.done_jobs()
    completed_steps = float(done["steps"].dropna().sum()) if "steps" in done else 0.0
    planned = completed_steps + float(known["steps_planned"].sum())
    run = completed_steps + float(known["stopped_at_step"].sum())
    saved = planned - run
    return {"n_pruned": float(len(pruned)), "steps_planned": planned, "steps_run": run, "steps_saved": saved,
            "share_saved": saved / planned if planned else float("nan")}


def saved_sentence(runs: RunSet) -> str | None:
    s = compute_saved(runs)
    if s is None:
        return None
    return (f"Pruned by the search: {int(s['n_pruned'])} jobs stopped early; {int(s['steps_saved'])} of "
            f"{int(s['steps_planned'])} planned SFT steps were not run ({100 * s['share_saved']:.0f}% saved). "
            "Pruned jobs are left out of final-metric tables and findings; the learning-rate figure draws "
            "them dashed up to the stop (x).")


def draw_pruned(ax: Any, runs: RunSet, facet: dict[str, Any], kind: str, metric: str,
                color_of: Callable[[Any], Any], lr_col: str,
                transform: Callable[[pd.DataFrame], pd.DataFrame] | None = None) -> list[float]:
    """Draw the pruned jobs of one facet: their ``kind``/``metric`` curve, dashed, a cross at the stop.

    Returns the drawn values (for the caller's shared y range).
    """
    pruned = pruned_jobs(runs)
    for col, value in facet.items():
        if col in pruned:
            pruned = pruned[pruned[col] == value]
    if pruned.empty or runs.curves.empty:
        return []
    rows = runs.curves[(runs.curves["job"].isin(set(pruned["job"]))) & (runs.curves["kind"] == kind)
                       & (runs.curves["metric"] == metric)]
    if transform is not None and not rows.empty:
        rows = transform(rows)
    values: list[float] = []
    for job, part in rows.sort_values("step").groupby("job", sort=False):
        lr = pruned.loc[pruned["job"] == job, lr_col].iloc[0]
        color = color_of(lr)
        ax.plot(part["step"], part["value"], color=color, lw=1.0, ls="--", alpha=0.8)
        ax.plot(part["step"].iloc[-1:], part["value"].iloc[-1:], color=color, marker="x", ms=7, mew=2, ls="none")
        values += [float(part["value"].min()), float(part["value"].max())]
    return values
