"""Trends along an ordered setting (the learning rate, epochs, the replay ratio): how a metric
moves from the lowest to the highest value, within each combination of the other swept settings,
and the findings that claim one."""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

import pandas as pd

from analysis.collect import RunSet
from analysis.findings.common import (
    col_name_for, decision_of, effect_text, fmt_level, has_values, job_effect, metric_name, min_effect,
    min_effect_text,
)
from analysis.noise import judge
from analysis.stats import mean_ci, spearman, strata
from analysis.style import col_name, fmt_metric, fmt_param, fmt_value, setting_label, sorted_values
from analysis.verdicts import INCONCLUSIVE, NOT_MEASURABLE, NOT_SUPPORTED, SUPPORTED, Decision, Finding, at_bound


# ======================================================================================
# Trend along an ordered axis
# ======================================================================================


@dataclass
class _Trend:
    direction: str  # "up", "down", "flat", "unclear", "none"
    text: str
    per_stratum: list[dict[str, Any]]
    pooled: dict[Any, Any]
    decisions: list[Decision] = field(default_factory=list)  # one per stratum: its end-to-end effect



def _trend(runs: RunSet, x: str, metric: str, expect: int) -> _Trend:
    """How ``metric`` moves from the lowest to the highest value of ``x`` (``expect`` = +1 for
    a rise, -1 for a fall), compared within each combination of the other swept settings."""
    done = runs.done_jobs()
    done = done[done[metric].notna()] if metric in done else done.iloc[0:0]
    strata_cols = [c for c in runs.params if c != x]
    levels = sorted_values(done[x]) if x in done else []
    with_ci = bool(runs.seeds) and runs.n_seeds() >= 2
    pooled = {lv: done.loc[done[x] == lv, metric].tolist() for lv in levels}
    results, clauses, decisions = [], [], []
    for kd, part in strata(done, strata_cols):
        lv = [v for v in levels if (part[x] == v).any()]
        if len(lv) < 2:
            continue
        vals = {v: part.loc[part[x] == v, metric].astype(float).tolist() for v in lv}
        c = job_effect(part[part[x] == lv[0]], part[part[x] == lv[-1]], metric)
        real = judge(c, min_effect(metric))
        rho = spearman([lv.index(v) for v in lv for _ in vals[v]], [y for v in lv for y in vals[v]]) \
            if len(lv) >= 3 else math.nan
        if real is None:
            d, word = "unclear", ("no noise estimate" if c.source == "none" else "within noise")
        elif not real:
            # the interval may exclude 0 yet sit inside the smallest effect the report counts
            d, word = "flat", (f"smaller than {min_effect_text(metric)} even at the interval's end"
                               if c.low > 0 or c.high < 0 else "no change beyond noise")
        else:
            d = "up" if c.diff * expect > 0 else "down"
            word = "rises" if c.diff > 0 else "falls"
        if d == "up" and len(lv) >= 3 and not math.isnan(rho) and rho * expect < 0.5:
            d, word = "unclear", "ends differ but not monotonic"
        chain = " → ".join(f"{fmt_param(x, v)} {fmt_level(metric, vals[v], with_ci)}" for v in lv)
        prefix = f"{setting_label(kd, strata_cols)}: " if strata_cols else ""
        clauses.append(f"{prefix}{chain} ({word}; end to end {effect_text(metric, c)})")
        span = f"{fmt_param(x, lv[0])} → {fmt_value(x, lv[-1])}"
        decisions.append(decision_of(metric, c, f"{span} ({setting_label(kd, strata_cols)})" if strata_cols else span))
        results.append({"stratum": kd, "direction": d, "diff": c.diff, "low": c.low, "high": c.high,
                        "noise": c.source,
                        "levels": {fmt_value(x, v): mean_ci(vals[v]).mean for v in lv}})
    dirs = [r["direction"] for r in results]
    if not dirs:
        overall = "none"
    elif all(d == "up" for d in dirs):
        overall = "up"
    elif "down" in dirs and "up" not in dirs and dirs.count("down") >= len(dirs) / 2:
        overall = "down"
    elif "up" in dirs and "down" in dirs:
        overall = "mixed"
    elif all(d == "flat" for d in dirs):
        overall = "flat"
    elif dirs.count("up") > len(dirs) / 2 and "down" not in dirs:
        overall = "up"
    elif "up" in dirs and "down" not in dirs:
        overall = "partly"  # beyond noise in some settings, within noise or flat in the others
    else:
        overall = "unclear"
    return _Trend(overall, "; ".join(clauses), results, pooled, decisions)


#: The strata whose direction decides a trend's verdict: those that bear it out, or contradict it.
_DECIDING = {"up": ("up",), "partly": ("up",), "down": ("down",), "flat": ("flat",), "mixed": ("down",),
             "unclear": ("unclear", "flat", "up")}


def _deciding_stratum(t: _Trend) -> Decision | None:
    """The stratum that decided the verdict: of those in the deciding direction, the largest effect."""
    picks = [(abs(r["diff"]), d) for r, d in zip(t.per_stratum, t.decisions)
             if r["direction"] in _DECIDING.get(t.direction, ())]
    return max(picks, key=lambda p: p[0])[1] if picks else None


def _trend_finding(runs: RunSet, key: str, claim: str, role: str, metric: str, expect: int,
                   *, extra: str = "") -> Finding:
    x = runs.axis(role)
    done = runs.done_jobs()
    if x is None or len(sorted_values(done[x])) < 2:
        return Finding(key, claim, INCONCLUSIVE,
                       f"not tested: this sweep does not vary the {col_name_for(role)} "
                       f"(or fewer than two of its values completed).")
    if not has_values(done, metric):
        return Finding(key, claim, NOT_MEASURABLE, f"no completed job reports {metric}: the metric is absent.")
    t = _trend(runs, x, metric, expect)
    if t.direction == "none":
        return Finding(key, claim, INCONCLUSIVE, _nothing_to_compare(runs, x, metric),
                       {"axis": x, "metric": metric, "direction": t.direction, "strata": []})
    verdict = {"up": SUPPORTED, "partly": SUPPORTED, "down": NOT_SUPPORTED,
               "flat": NOT_SUPPORTED}.get(t.direction, INCONCLUSIVE)
    held = [setting_label(r["stratum"], [c for c in runs.params if c != x])
            for r in t.per_stratum if r["direction"] == "up"]
    lead = {
        "up": "", "down": "the opposite holds: ",
        "flat": ("no effect as large as the minimum the report counts: "
                 if any(r["low"] > 0 or r["high"] < 0 for r in t.per_stratum) else "no effect beyond noise: "),
        "partly": f"holds only in {len(held)} of {len(t.per_stratum)} settings ({', '.join(held)}); "
                  f"in the others not beyond noise: ",
        "mixed": "the direction depends on the other settings: ",
        "unclear": "the differences are within noise, have no noise estimate, or are not monotonic: ",
        "none": "no group of jobs has two values to compare: ",
    }[t.direction]
    seeds_note = ""
    if runs.seeds and runs.n_seeds() >= 2:
        seeds_note = " Values are means over seeds ± 95% CI."
    evidence = f"{lead}{metric_name(metric)} by {col_name(x)}: {t.text}.{seeds_note}{extra}"
    return Finding(key, claim, verdict, evidence,
                   {"axis": x, "metric": metric, "direction": t.direction, "strata": t.per_stratum},
                   _deciding_stratum(t))


def _nothing_to_compare(runs: RunSet, x: str, metric: str) -> str:
    """Why a trend has no comparison: each value of ``x`` ran with other settings too (e.g. two
    commands in one sweep directory), so no two completed jobs differ in ``x`` alone."""
    done = runs.done_jobs()
    done = done[done[metric].notna()]
    others = [c for c in runs.params if c != x]
    def settings(part: pd.DataFrame) -> str:
        if not others:
            return fmt_metric(metric, float(part[metric].mean()))
        return " / ".join(f"{setting_label(g.iloc[0], others)} {fmt_metric(metric, float(g[metric].mean()))}"
                          for _, g in part.groupby(others, dropna=False, sort=True))

    jobs = "; ".join(f"{fmt_param(x, v)}: {settings(done[done[x] == v])}" for v in sorted_values(done[x]))
    return (f"not tested: no two completed jobs differ only in the {col_name(x)} (each value ran "
            f"with other settings too, e.g. from separate commands), so a difference in "
            f"{metric_name(metric)} cannot be put on it: {jobs}.")



# ======================================================================================
# The findings
# ======================================================================================


def forgetting_rises_with_lr(runs: RunSet) -> Finding:
    return _trend_finding(runs, "forgetting_vs_lr", "Forgetting rises with the learning rate",
                          "lr", "forgetting_pct", +1)


def more_epochs_forget_more(runs: RunSet) -> Finding:
    return _trend_finding(runs, "forgetting_vs_epochs", "More epochs forget more",
                          "epochs", "forgetting_pct", +1)


def replay_cuts_forgetting(runs: RunSet) -> Finding:
    done = runs.done_jobs()
    rp = runs.axis("replay")
    extra = ""
    if rp and has_values(done, "final_follow_rate") and len(sorted_values(done[rp])) >= 2:
        lo, hi = sorted_values(done[rp])[0], sorted_values(done[rp])[-1]
        a = done.loc[done[rp] == lo, "final_follow_rate"].mean()
        b = done.loc[done[rp] == hi, "final_follow_rate"].mean()
        rates = f"{fmt_metric('final_follow_rate', a)} → {fmt_metric('final_follow_rate', b)}"
        span = f"({fmt_value(rp, lo)} → {fmt_value(rp, hi)} replay, mean over all settings)"
        if at_bound(done["final_follow_rate"].dropna().tolist()) is not None:
            extra = f" Follow rate {span}: {rates}, the same bound in every job, so not measurable."
        else:
            what = "gain" if b - a > 0 else "cost" if b - a < 0 else "no change"
            extra = f" Follow rate {span}: {rates}, a {what} of {100 * abs(b - a):.0f} points."
    return _trend_finding(runs, "replay_cuts_forgetting", "Replaying pre-training text cuts forgetting",
                          "replay", "forgetting_pct", -1, extra=extra)
