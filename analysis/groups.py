"""Sweeps that do not share their data, base model or template are never pooled.

When a report covers several sweep directories, the jobs are grouped by the settings that set
what is being measured (the data, the model, the chat template) whenever such a setting is
fixed within each sweep but differs between them; findings are computed within each group.
"""

from __future__ import annotations

import dataclasses

from analysis.collect import RunSet
from analysis.roles import apart_keys
from analysis.stats import strata
from analysis.style import setting_label

#: Settings whose difference makes two sweeps' numbers incomparable.
GROUP_KEYS = apart_keys(foreign={"data.path": 3})


def group_columns(runs: RunSet) -> list[str]:
    """The group settings that differ between the sweeps but are fixed within each one."""
    jobs = runs.jobs
    if jobs.empty or "sweep" not in jobs or jobs["sweep"].nunique() < 2:
        return []
    out = []
    for col in GROUP_KEYS:
        if col not in jobs or jobs[col].nunique(dropna=False) < 2:
            continue
        if (jobs.groupby("sweep")[col].nunique(dropna=False) == 1).all():
            out.append(col)
    return out


def split_runs(runs: RunSet, cols: list[str]) -> list[tuple[str, RunSet]]:
    """One RunSet per group of ``cols`` values (label, runs); what is swept is re-derived
    within the group, so a value only another group ran is not listed as missing."""
    out = []
    for key, part in strata(runs.jobs, cols):
        names = set(part["job"])
        swept = [c for c in runs.swept if c not in cols and part[c].nunique(dropna=False) > 1]
        sub = dataclasses.replace(
            runs, jobs=part, swept=swept,
            curves=runs.curves[runs.curves["job"].isin(names)] if "job" in runs.curves else runs.curves,
            samples=runs.samples[runs.samples["job"].isin(names)] if "job" in runs.samples else runs.samples,
            blends=runs.blends[runs.blends["job"].isin(names)],
            weight_ranks=runs.weight_ranks[runs.weight_ranks["job"].isin(names)])
        out.append((setting_label(key, cols), sub))
    return out


def grouping_sentence(runs: RunSet) -> str | None:
    """How the report grouped several sweeps, or None when it did not need to."""
    cols = group_columns(runs)
    if not cols:
        return None
    labels = [label for label, _ in split_runs(runs, cols)]
    return ("The sweeps differ in " + ", ".join(cols) + ": findings are computed within each group of jobs "
            "that share them (" + "; ".join(labels) + "), never across groups")
