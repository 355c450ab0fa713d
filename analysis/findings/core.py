"""Findings: claims about SFT checked against a sweep's numbers, each with a verdict.

Every finding states a claim, the evidence (numbers per setting, seed confidence intervals
when there are seeds) and a verdict:

- ``supported``: the data shows it, beyond seed noise where seeds exist;
- ``not supported``: the data shows no such effect, or the opposite;
- ``inconclusive``: mixed, within noise, or not testable in this sweep (the axis was not
  swept, the metric was not measured). A claim that cannot be tested is listed, not dropped.

Only completed jobs count. Comparisons are made within each combination of the other swept
settings (so a failed job does not tilt a pooled mean), seeds are replicates.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import pandas as pd

from analysis.collect import RunSet
from analysis.roles import role_noun
from analysis.dataview import absent_reason, is_free_form
from analysis.findings.free_form import free_form_findings
from analysis.noise import Effect, effect, items_column, judge, se_column
from analysis.stats import mean_ci, spearman, strata
from analysis.style import (
    AGGRESSIVE_BAND, col_name, fmt_metric, fmt_num, fmt_param, fmt_value, setting_label, sorted_values,
)
from analysis.verdicts import INCONCLUSIVE, NOT_MEASURABLE, NOT_SUPPORTED, SUPPORTED, Decision, Finding, at_bound

#: Smallest difference that counts as an effect, per metric (units as stored).
MIN_EFFECT = {"forgetting_pct": 1.0, "rate": 0.02, "loss": 0.02}
#: Forgetting (%) above which a setting is "too aggressive".
FORGETTING_BUDGET = AGGRESSIVE_BAND[0]
#: Knowledge-probe gain (fraction) that would count as "SFT added knowledge".
KNOWLEDGE_GAIN = 0.05


def _min_effect(metric: str) -> float:
    if metric == "forgetting_pct":
        return MIN_EFFECT["forgetting_pct"]
    return MIN_EFFECT["loss"] if metric.endswith("loss") else MIN_EFFECT["rate"]


def _min_effect_text(metric: str) -> str:
    m = _min_effect(metric)
    if metric == "forgetting_pct":
        return f"the {m:g}-point minimum effect"
    return f"the {100 * m:g}-point minimum effect" if not metric.endswith("loss") else f"the {m:g} minimum effect"


def _has(df: pd.DataFrame, col: str) -> bool:
    return col in df and df[col].notna().any()


def _effect(a: pd.DataFrame, b: pd.DataFrame, metric: str) -> Effect:
    """The effect in ``metric`` from jobs ``a`` to jobs ``b`` under the noise standard."""
    col = items_column(metric)
    a, b = a[a[metric].notna()], b[b[metric].notna()]
    items = lambda part: part[col].tolist() if col in part else None  # noqa: E731
    se_col = se_column(metric)
    se = lambda part: part[se_col].tolist() if se_col in part else None  # noqa: E731
    return effect(part_values(a, metric), part_values(b, metric), items_a=items(a), items_b=items(b),
                  se_a=se(a), se_b=se(b))


def part_values(part: pd.DataFrame, metric: str) -> list[float]:
    return part[metric].astype(float).tolist() if metric in part else []


def _effect_text(metric: str, e: Effect) -> str:
    return e.describe(**_effect_units(metric))


def _effect_units(metric: str) -> dict[str, Any]:
    if metric == "forgetting_pct":
        return {"unit": " points of forgetting"}
    if metric.endswith("loss"):
        return {"digits": 3}
    return {"scale": 100, "unit": " points"}


def _decision(metric: str, e: Effect, where: str, name: str | None = None) -> Decision:
    """The effect ``e`` in ``metric`` as what decided a verdict, measured ``where``."""
    return e.decision(f"{name or _metric_name(metric)}, {where}", **_effect_units(metric))


def _setting_or_all(setting: Any, params: Sequence[str]) -> str:
    return setting_label(setting, params) if params else "all jobs"


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


def _fmt_level(metric: str, values: list[float], with_ci: bool) -> str:
    m = mean_ci(values)
    if with_ci and m.n >= 2:
        return f"{fmt_metric(metric, m.mean, ci=m.half)} (n={m.n})"
    return fmt_metric(metric, m.mean) + (f" (n={m.n})" if with_ci else "")


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
        c = _effect(part[part[x] == lv[0]], part[part[x] == lv[-1]], metric)
        real = judge(c, _min_effect(metric))
        rho = spearman([lv.index(v) for v in lv for _ in vals[v]], [y for v in lv for y in vals[v]]) \
            if len(lv) >= 3 else math.nan
        if real is None:
            d, word = "unclear", ("no noise estimate" if c.source == "none" else "within noise")
        elif not real:
            # the interval may exclude 0 yet sit inside the smallest effect the report counts
            d, word = "flat", (f"smaller than {_min_effect_text(metric)} even at the interval's end"
                               if c.low > 0 or c.high < 0 else "no change beyond noise")
        else:
            d = "up" if c.diff * expect > 0 else "down"
            word = "rises" if c.diff > 0 else "falls"
        if d == "up" and len(lv) >= 3 and not math.isnan(rho) and rho * expect < 0.5:
            d, word = "unclear", "ends differ but not monotonic"
        chain = " → ".join(f"{fmt_param(x, v)} {_fmt_level(metric, vals[v], with_ci)}" for v in lv)
        prefix = f"{setting_label(kd, strata_cols)}: " if strata_cols else ""
        clauses.append(f"{prefix}{chain} ({word}; end to end {_effect_text(metric, c)})")
        span = f"{fmt_param(x, lv[0])} → {fmt_value(x, lv[-1])}"
        decisions.append(_decision(metric, c, f"{span} ({setting_label(kd, strata_cols)})" if strata_cols else span))
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
    if not _has(done, metric):
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
    evidence = f"{lead}{_metric_name(metric)} by {col_name(x)}: {t.text}.{seeds_note}{extra}"
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
            f"{_metric_name(metric)} cannot be put on it: {jobs}.")


def col_name_for(role: str) -> str:
    return role_noun(role)


def _metric_name(metric: str) -> str:
    return {"forgetting_pct": "forgetting", "final_follow_rate": "follow rate",
            "final_response_loss": "held-out response loss", "final_answer_acc": "answer accuracy"}.get(
        metric, metric)


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
    if rp and _has(done, "final_follow_rate") and len(sorted_values(done[rp])) >= 2:
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


def _range_text(metric: str, values: pd.Series) -> str:
    lo, hi = values.min(), values.max()
    if fmt_metric(metric, lo) == fmt_metric(metric, hi):
        return fmt_metric(metric, lo)
    return f"{fmt_metric(metric, lo).rstrip('%')}–{fmt_metric(metric, hi)}"


def _skipped_note(done: pd.DataFrame, col: str) -> str:
    """Why a share of items might be stuck: how many items each job could score at all."""
    if col not in done or done[col].isna().all():
        return " (the jobs do not record how many held-out items they could score)"
    lo, hi = fmt_num(done[col].min()), fmt_num(done[col].max())
    return f" on {lo if lo == hi else f'{lo}–{hi}'} scorable held-out items per job"


def sft_teaches_following(runs: RunSet) -> Finding:
    key, claim = "sft_teaches_following", "SFT teaches the model to follow the instruction format"
    done = runs.done_jobs()
    if not (_has(done, "base_follow_rate") and _has(done, "final_follow_rate")):
        why = absent_reason(done, "follow_rate")
        return Finding(key, claim, NOT_MEASURABLE, "the follow rate is absent for the base or for every "
                       "tuned job, so whether SFT teaches the format cannot be measured"
                       + (f" (the jobs say: {why})." if why else "."))
    pair = done.dropna(subset=["base_follow_rate", "final_follow_rate"])
    base, tuned = pair["base_follow_rate"], pair["final_follow_rate"]
    bound = at_bound(base.tolist() + tuned.tolist())
    if bound is not None:
        return Finding(key, claim, NOT_MEASURABLE,
                       f"the base model and every one of the {len(pair)} tuned jobs follow {100 * bound:.0f}% of "
                       f"held-out prompts{_skipped_note(pair, 'items_follow')}: the measurement sits at its "
                       "bound, so it cannot show a change (no answer may fit the context, or the metric "
                       "cannot tell the models apart).", {"bound": bound})
    evidence = (f"the base model follows {_range_text('base_follow_rate', base)} of held-out prompts, "
                f"the tuned models {_range_text('final_follow_rate', tuned)} ({len(pair)} jobs)")
    if _has(pair, "final_follow_rate_n"):  # own data: only prompts whose reference fits are judged
        n = pair["final_follow_rate_n"]
        n_text = fmt_num(n.min()) if n.min() == n.max() else f"{fmt_num(n.min())}–{fmt_num(n.max())}"
        evidence += f", over the {n_text} held-out prompts whose reference fits the generation room"
    # Judge by setting: SFT "teaches" the format if some setting's gain over its base is real
    # (beyond noise) and at least ten points.
    gains = [(kd, _effect(part.assign(final_follow_rate=part["base_follow_rate"]), part, "final_follow_rate"))
             for kd, part in strata(pair, runs.params)]
    evidence += "; gain over the base per setting: " + "; ".join(
        f"{_setting_or_all(kd, runs.params)}: {_effect_text('final_follow_rate', e)}" for kd, e in gains)
    calls = [(kd, e, judge(e, MIN_EFFECT["rate"])) for kd, e in gains]
    learnt = [(kd, e) for kd, e, real in calls if real and e.diff >= 0.10]
    absent = all(real is False or (real and e.diff < 0) for _, e, real in calls)
    best = max(e.diff for _, e in gains)
    top_kd, top = max(gains, key=lambda g: g[1].diff)
    decided = _decision("final_follow_rate", top, f"tuned vs base, {_setting_or_all(top_kd, runs.params)}")
    if learnt:
        verdict = SUPPORTED
        stuck = [kd for kd, e, real in calls if not (real and e.diff > 0)]
        if stuck and runs.params:
            evidence += "; no real gain at: " + "; ".join(setting_label(kd, runs.params) for kd in stuck)
    elif absent:
        verdict = NOT_SUPPORTED
        evidence += "; no setting follows better than the base model beyond noise"
    else:
        verdict = INCONCLUSIVE
        evidence += (f"; the largest gain, {100 * best:+.0f} points, is not beyond noise or under 10 points")
    return Finding(key, claim, verdict, evidence + ".",
                   {"base": float(base.mean()), "tuned_min": float(tuned.min()),
                    "tuned_max": float(tuned.max()), "best_gain": best}, decided)


def sft_adds_no_knowledge(runs: RunSet) -> Finding:
    key = "sft_adds_no_knowledge"
    claim = "SFT does not add knowledge (knowledge-probe accuracy stays at the base model's level)"
    done = runs.done_jobs()
    if not (_has(done, "base_knowledge_mc_acc") and _has(done, "final_knowledge_mc_acc")):
        return Finding(key, claim, NOT_MEASURABLE, "no completed job reports "
                       "knowledge_mc_acc for both the base and the tuned model.")
    pair = done[["base_knowledge_mc_acc", "final_knowledge_mc_acc"]].dropna()
    evidence = (f"knowledge-probe multiple-choice accuracy: base "
                f"{_range_text('base_knowledge_mc_acc', pair['base_knowledge_mc_acc'])}, tuned "
                f"{_range_text('final_knowledge_mc_acc', pair['final_knowledge_mc_acc'])}")
    # Change per setting under the noise standard, in points.
    d = done.dropna(subset=["base_knowledge_mc_acc", "final_knowledge_mc_acc"])
    per = [(kd, _effect(part.assign(final_knowledge_mc_acc=part["base_knowledge_mc_acc"]), part,
                        "final_knowledge_mc_acc")) for kd, part in strata(d, runs.params)]
    evidence += " (change per setting: " + "; ".join(
        f"{_setting_or_all(kd, runs.params)}: {_effect_text('final_knowledge_mc_acc', e)}" for kd, e in per) + ")"
    known = [(kd, e) for kd, e in per if e.source != "none"]
    # A gain counts when its whole interval lies above zero and the mean reaches the threshold;
    # "no gain" needs every setting's interval to stay under the threshold.
    gained = [kd for kd, e in known if e.low > 0 and e.diff >= KNOWLEDGE_GAIN]
    lost = [(kd, e) for kd, e in known if e.high < 0 and -e.diff >= MIN_EFFECT["rate"]]
    clear = len(known) == len(per) and all(e.high < KNOWLEDGE_GAIN for _, e in known)
    # what decides: the largest gain when one counts, else the setting closest to counting as one
    kd, e = (max(((k, e) for k, e in known if k in gained), key=lambda p: p[1].diff) if gained
             else max(known or per, key=lambda p: p[1].high if math.isfinite(p[1].high) else -math.inf))
    decided = dataclasses.replace(
        _decision("final_knowledge_mc_acc", e, f"tuned vs base, {_setting_or_all(kd, runs.params)}",
                  "probe multiple-choice accuracy"), target=f"a gain < {100 * KNOWLEDGE_GAIN:.0f} points")
    contrast = []
    for m, what in (("answer_mc_acc", "multiple-choice accuracy on the facts the SFT data asks about"),
                    ("knowledge_acc", "generated answers to the probe")):
        if _has(done, f"base_{m}") and _has(done, f"final_{m}"):
            contrast.append(f"{what}: {_range_text(f'base_{m}', done[f'base_{m}'].dropna())} → "
                            f"{_range_text(f'final_{m}', done[f'final_{m}'].dropna())}")
    if contrast:
        evidence += "; for contrast, " + "; ".join(contrast)
    if gained:
        verdict = NOT_SUPPORTED
        evidence += "; the probe improves at: " + "; ".join(_setting_or_all(k, runs.params) for k in gained)
    elif clear:
        verdict = SUPPORTED
        if lost:
            # the claim holds (no gain), but the number is a loss: say so first, not as a gain
            evidence = ("no setting gains knowledge; the probe instead falls (knowledge is lost, i.e. "
                        "forgotten) at: " + "; ".join(f"{_setting_or_all(k, runs.params)} "
                                                     f"({100 * e.diff:+.1f} points)" for k, e in lost)
                        + ". " + evidence[0].upper() + evidence[1:])
    else:
        verdict = INCONCLUSIVE
        evidence += (f"; a gain of {100 * KNOWLEDGE_GAIN:.0f} points cannot be ruled out for every setting"
                     + (" (no noise estimate for some settings)" if len(known) < len(per) else ""))
    return Finding(key, claim, verdict, evidence + ".",
                   {"per_setting": [{"setting": k, "gain": e.diff, "low": e.low, "high": e.high}
                                    for k, e in per]}, decided)


def _setting_means(runs: RunSet, metrics: Sequence[str]) -> pd.DataFrame:
    """Seed-averaged metrics per setting (combination of the swept non-seed parameters)."""
    done = runs.done_jobs()
    params = runs.params
    metrics = [m for m in metrics if m in done]
    if not params:
        row = {m: done[m].mean() for m in metrics}
        row["n"] = len(done)
        return pd.DataFrame([row])
    g = done.groupby(params, dropna=False, sort=True)
    out = g[metrics].mean()
    out["n"] = g.size()
    return out.reset_index()


def best_lr(runs: RunSet, metric: str = "final_response_loss", lower_is_better: bool = True) -> Finding:
    """Which learning rate is best by ``metric`` (mean over the other settings and seeds)."""
    key = f"best_lr_{metric}"
    what = _metric_name(metric)
    lr = runs.axis("lr")
    done = runs.done_jobs()
    claim = f"One learning rate gives the best {what}"
    if lr is None or len(sorted_values(done[lr])) < 2:
        return Finding(key, claim, INCONCLUSIVE, "not tested: this sweep does not vary the learning rate.")
    if not _has(done, metric):
        return Finding(key, claim, NOT_MEASURABLE, f"no completed job reports {metric}: the metric is absent.")
    # Compare within the settings every lr completed in, so that a failed job does not bias it.
    others = [c for c in runs.params if c != lr]
    per = done.dropna(subset=[metric])
    scope = " (mean over seeds)" if runs.seeds else ""
    if others:
        complete = per.groupby(others, dropna=False)[lr].transform("nunique") == per[lr].nunique()
        if complete.any() and not complete.all():
            names = "; ".join(setting_label(kd, others) for kd, _ in strata(per[complete], others))
            scope = f" (only where every learning rate completed: {names}" + ("; mean over seeds)" if runs.seeds else ")")
            per = per[complete]
        else:
            scope = f" (mean over {', '.join(col_name(c) for c in others)}" + (" and seeds)" if runs.seeds else ")")
    means = per.groupby(lr)[metric].mean().sort_values(ascending=lower_is_better)
    best = means.index[0]
    claim = f"Learning rate {fmt_value(lr, best)} gives the {'lowest' if lower_is_better else 'highest'} {what}"
    listing = ", ".join(f"{fmt_value(lr, k)} {fmt_metric(metric, v)}" for k, v in means.items())
    evidence = f"{what} by {col_name(lr)}{scope}: {listing}"
    # The verdict compares winner and runner-up within each combination of the other settings
    # (seeds as replicates), so epochs or templates are never mistaken for noise.
    wins, sigs, decisions = [], [], []
    for kd, part in strata(per, others):
        m = part.groupby(lr)[metric].mean().sort_values(ascending=lower_is_better)
        if len(m) < 2:
            continue
        c = _effect(part[part[lr] == m.index[1]], part[part[lr] == m.index[0]], metric)
        wins.append((kd, m.index[0]))
        sigs.append(judge(c, _min_effect(metric)))
        span = f"{fmt_param(lr, m.index[1])} → {fmt_value(lr, m.index[0])}"
        decisions.append((abs(c.diff), _decision(metric, c, f"{span} ({setting_label(kd, others)})" if others else span)))
    winners = {w for _, w in wins}
    # what decides: the narrowest win when every one is beyond noise, else the first that is not
    # (or that another learning rate won)
    deciding = [i for i, ((_, w), s) in enumerate(zip(wins, sigs)) if w != best or not s]
    decided = decisions[deciding[0]][1] if deciding else (
        min(decisions, key=lambda p: p[0])[1] if decisions else None)
    if winners == {best} and all(sigs):
        verdict = SUPPORTED
        evidence += ("; it wins in every setting, beyond noise" if len(wins) > 1
                     else "; ahead of the runner-up beyond noise")
    elif winners == {best}:
        verdict = INCONCLUSIVE
        evidence += "; it is ahead" + (" in every setting" if len(wins) > 1 else "") + \
            ", but not beyond noise" + (" everywhere" if len(wins) > 1 else "")
    else:
        verdict = INCONCLUSIVE
        evidence += "; the best learning rate depends on the setting: " + "; ".join(
            f"{setting_label(k, others)}: {fmt_value(lr, w)}" for k, w in wins)
    return Finding(key, claim, verdict, evidence + ".", {"best": best, "means": means.to_dict()}, decided)


def recommended_setting(runs: RunSet) -> Finding:
    """The setting with the highest follow rate among those that forget less than the budget,
    provided it actually learnt the format (at least half the best follow rate, and 10 points
    above the base model)."""
    key = "recommended_setting"
    claim = (f"Some setting learns to follow while forgetting under {FORGETTING_BUDGET:g}% "
             "(the best such setting is recommended)")
    done = runs.done_jobs()
    if not (_has(done, "forgetting_pct") and _has(done, "final_follow_rate")):
        return Finding(key, claim, NOT_MEASURABLE, "forgetting or follow rate is absent for every job.")
    sm = _setting_means(runs, ["forgetting_pct", "final_follow_rate", "base_follow_rate"])
    sm = sm.dropna(subset=["forgetting_pct", "final_follow_rate"])
    base = float(sm["base_follow_rate"].mean()) if "base_follow_rate" in sm and sm["base_follow_rate"].notna().any() else 0.0
    top = sm.sort_values("final_follow_rate", ascending=False).iloc[0]
    need = max(0.5 * float(top["final_follow_rate"]), base + 0.10)
    within = sm[sm["forgetting_pct"] < FORGETTING_BUDGET]
    ok = within[within["final_follow_rate"] >= need]
    seeds = lambda r: f" (mean of {int(r['n'])} seeds)" if runs.seeds and r["n"] > 1 else ""  # noqa: E731
    top_text = (f"the best follow rate, {fmt_metric('final_follow_rate', top['final_follow_rate'])} "
                f"({setting_label(top, runs.params)}), forgets {fmt_metric('forgetting_pct', top['forgetting_pct'])}")
    if ok.empty:
        if within.empty:
            least = sm.sort_values("forgetting_pct").iloc[0]
            text = (f"every setting forgets {FORGETTING_BUDGET:g}% or more (least: {setting_label(least, runs.params)}, "
                    f"{fmt_metric('forgetting_pct', least['forgetting_pct'])})")
        else:
            best_within = within.sort_values("final_follow_rate", ascending=False).iloc[0]
            text = (f"the settings under {FORGETTING_BUDGET:g}% follow at most "
                    f"{fmt_metric('final_follow_rate', best_within['final_follow_rate'])} "
                    f"({setting_label(best_within, runs.params)}), less than the "
                    f"{fmt_metric('final_follow_rate', need)} counted as learnt")
        return Finding(key, claim, NOT_SUPPORTED, f"{text}; {top_text}.", {"best": None})
    best = ok.sort_values(["final_follow_rate", "forgetting_pct"], ascending=[False, True]).iloc[0]
    evidence = (f"recommended (criterion: the highest follow rate among the settings forgetting under "
                f"{FORGETTING_BUDGET:g}%): {setting_label(best, runs.params)}: follow rate "
                f"{fmt_metric('final_follow_rate', best['final_follow_rate'])}, forgetting "
                f"{fmt_metric('forgetting_pct', best['forgetting_pct'])}{seeds(best)}")
    if top["forgetting_pct"] >= FORGETTING_BUDGET:
        evidence += "; " + top_text
    decided = Decision(f"forgetting, {setting_label(best, runs.params)}", fmt_metric('forgetting_pct', best['forgetting_pct']),
                       n=_jobs(best["n"]), target=f"< {FORGETTING_BUDGET:g}%")
    return Finding(key, claim, SUPPORTED, evidence + ".",
                   {"best": {c: best[c] for c in runs.params}, "follow_rate": float(best["final_follow_rate"]),
                    "forgetting_pct": float(best["forgetting_pct"])}, decided)


def aggressive_settings(runs: RunSet) -> Finding:
    key = "aggressive_settings"
    claim = f"Some settings are too aggressive (forgetting above {FORGETTING_BUDGET:g}%)"
    done = runs.done_jobs()
    if not _has(done, "forgetting_pct"):
        return Finding(key, claim, NOT_MEASURABLE, "no completed job reports forgetting.")
    sm = _setting_means(runs, ["forgetting_pct"]).dropna(subset=["forgetting_pct"])
    bad = sm[sm["forgetting_pct"] > FORGETTING_BUDGET].sort_values("forgetting_pct", ascending=False)
    if bad.empty:
        worst = sm.sort_values("forgetting_pct").iloc[-1]
        return Finding(key, claim, NOT_SUPPORTED,
                       f"every setting stays under {FORGETTING_BUDGET:g}%; the highest is "
                       f"{setting_label(worst, runs.params)} at {fmt_metric('forgetting_pct', worst['forgetting_pct'])}.",
                       {"settings": []})
    listing = "; ".join(f"{setting_label(r, runs.params)}: {fmt_metric('forgetting_pct', r['forgetting_pct'])}"
                        for _, r in bad.iterrows())
    worst = bad.iloc[0]
    decided = Decision(f"forgetting, {setting_label(worst, runs.params)}", fmt_metric('forgetting_pct', worst['forgetting_pct']),
                       n=_jobs(worst["n"]), target=f"> {FORGETTING_BUDGET:g}%")
    return Finding(key, claim, SUPPORTED, f"{len(bad)} of {len(sm)} settings: {listing}.",
                   {"settings": [{c: r[c] for c in runs.params} for _, r in bad.iterrows()]}, decided)


def _jobs(n: Any) -> str:
    return f"{int(n)} job{'s' if int(n) != 1 else ''}"


def categorical_effect(runs: RunSet, role: str) -> Finding | None:
    """Whether a text-valued setting (template, data format) changes follow rate; None when not swept."""
    col = runs.axis(role)
    done = runs.done_jobs()
    if col is None or len(sorted_values(done[col])) < 2:
        return None
    metric = "final_follow_rate" if _has(done, "final_follow_rate") else "final_response_loss"
    name = col_name_for(role)
    claim = f"The {name} changes the {_metric_name(metric)}"
    if not _has(done, metric):
        return Finding(f"{role}_effect", claim, NOT_MEASURABLE, f"no job reports {metric}.")
    others = [c for c in runs.params if c != col]
    clauses, sig_any, flat_all, n_groups, decisions = [], False, True, 0, []
    with_ci = bool(runs.seeds) and runs.n_seeds() >= 2
    for kd, part in strata(done, others):
        vals = {v: part.loc[part[col] == v, metric].dropna().tolist() for v in sorted_values(part[col])}
        vals = {k: v for k, v in vals.items() if v}
        if len(vals) < 2:
            continue
        n_groups += 1
        ordered = sorted(vals, key=lambda k: mean_ci(vals[k]).mean)
        c = _effect(part[part[col] == ordered[0]], part[part[col] == ordered[-1]], metric)
        real = judge(c, _min_effect(metric))
        sig_any |= bool(real)
        flat_all &= real is False
        span = f"{fmt_param(col, ordered[0])} → {fmt_value(col, ordered[-1])}"
        decisions.append((abs(c.diff), _decision(metric, c, f"{span} ({setting_label(kd, others)})" if others else span)))
        prefix = f"{setting_label(kd, others)}: " if others else ""
        clauses.append(prefix + ", ".join(f"{fmt_value(col, k)} {_fmt_level(metric, v, with_ci)}"
                                          for k, v in vals.items()))
    if n_groups == 0:
        return Finding(f"{role}_effect", claim, INCONCLUSIVE, "no group of jobs completed two values to compare.")
    verdict = SUPPORTED if sig_any else (NOT_SUPPORTED if flat_all else INCONCLUSIVE)
    lead = {SUPPORTED: "", NOT_SUPPORTED: "no difference beyond noise: ",
            INCONCLUSIVE: "differences within noise: "}[verdict]
    return Finding(f"{role}_effect", claim, verdict,
                   f"{lead}{_metric_name(metric)} by {name}: " + "; ".join(clauses) + ".", {"axis": col},
                   max(decisions, key=lambda p: p[0])[1])


def core_findings(runs: RunSet) -> list[Finding]:
    """The core claims (always present), then those that depend on what was swept."""
    out = [
        forgetting_rises_with_lr(runs),
        replay_cuts_forgetting(runs),
        sft_teaches_following(runs),
        sft_adds_no_knowledge(runs),
        best_lr(runs, "final_response_loss", lower_is_better=True),
        recommended_setting(runs),
        aggressive_settings(runs),
    ]
    if runs.axis("epochs"):
        out.insert(1, more_epochs_forget_more(runs))
    if is_free_form(runs.done_jobs()):  # after the follow rate, the other free-form metrics
        at = next(i for i, f in enumerate(out) if f.key == "sft_teaches_following") + 1
        out[at:at] = free_form_findings(runs)
    for role in ("template", "format"):
        f = categorical_effect(runs, role)
        if f is not None:
            out.append(f)
    return out
