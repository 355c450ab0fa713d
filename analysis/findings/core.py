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
from typing import Any

import pandas as pd

from analysis.collect import RunSet
from analysis.dataview import absent_reason
from analysis.findings.common import (  # noqa: F401 - MIN_EFFECT and the budgets: read by callers here
    FORGETTING_BUDGET, KNOWLEDGE_GAIN, MIN_EFFECT, col_name_for, decision_of, effect_text, fmt_level, has_values,
    job_effect, metric_name, min_effect, setting_or_all,
)
from analysis.findings.trends import forgetting_rises_with_lr, more_epochs_forget_more, replay_cuts_forgetting
from analysis.noise import judge
from analysis.stats import mean_ci, strata
from analysis.style import col_name, fmt_metric, fmt_num, fmt_param, fmt_value, setting_label, sorted_values
from analysis.verdicts import INCONCLUSIVE, NOT_MEASURABLE, NOT_SUPPORTED, SUPPORTED, Decision, Finding, at_bound



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
    if not (has_values(done, "base_follow_rate") and has_values(done, "final_follow_rate")):
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
    if has_values(pair, "final_follow_rate_n"):  # own data: only prompts whose reference fits are judged
        n = pair["final_follow_rate_n"]
        n_text = fmt_num(n.min()) if n.min() == n.max() else f"{fmt_num(n.min())}–{fmt_num(n.max())}"
        evidence += f", over the {n_text} held-out prompts whose reference fits the generation room"
    # Judge by setting: SFT "teaches" the format if some setting's gain over its base is real
    # (beyond noise) and at least ten points.
    gains = [(kd, job_effect(part.assign(final_follow_rate=part["base_follow_rate"]), part, "final_follow_rate"))
             for kd, part in strata(pair, runs.params)]
    evidence += "; gain over the base per setting: " + "; ".join(
        f"{setting_or_all(kd, runs.params)}: {effect_text('final_follow_rate', e)}" for kd, e in gains)
    calls = [(kd, e, judge(e, MIN_EFFECT["rate"])) for kd, e in gains]
    learnt = [(kd, e) for kd, e, real in calls if real and e.diff >= 0.10]
    absent = all(real is False or (real and e.diff < 0) for _, e, real in calls)
    best = max(e.diff for _, e in gains)
    top_kd, top = max(gains, key=lambda g: g[1].diff)
    decided = decision_of("final_follow_rate", top, f"tuned vs base, {setting_or_all(top_kd, runs.params)}")
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
    if not (has_values(done, "base_knowledge_mc_acc") and has_values(done, "final_knowledge_mc_acc")):
        return Finding(key, claim, NOT_MEASURABLE, "no completed job reports "
                       "knowledge_mc_acc for both the base and the tuned model.")
    pair = done[["base_knowledge_mc_acc", "final_knowledge_mc_acc"]].dropna()
    evidence = (f"knowledge-probe multiple-choice accuracy: base "
                f"{_range_text('base_knowledge_mc_acc', pair['base_knowledge_mc_acc'])}, tuned "
                f"{_range_text('final_knowledge_mc_acc', pair['final_knowledge_mc_acc'])}")
    # Change per setting under the noise standard, in points.
    d = done.dropna(subset=["base_knowledge_mc_acc", "final_knowledge_mc_acc"])
    per = [(kd, job_effect(part.assign(final_knowledge_mc_acc=part["base_knowledge_mc_acc"]), part,
                        "final_knowledge_mc_acc")) for kd, part in strata(d, runs.params)]
    evidence += " (change per setting: " + "; ".join(
        f"{setting_or_all(kd, runs.params)}: {effect_text('final_knowledge_mc_acc', e)}" for kd, e in per) + ")"
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
        decision_of("final_knowledge_mc_acc", e, f"tuned vs base, {setting_or_all(kd, runs.params)}",
                  "probe multiple-choice accuracy"), target=f"a gain < {100 * KNOWLEDGE_GAIN:.0f} points")
    contrast = []
    for m, what in (("answer_mc_acc", "multiple-choice accuracy on the facts the SFT data asks about"),
                    ("knowledge_acc", "generated answers to the probe")):
        if has_values(done, f"base_{m}") and has_values(done, f"final_{m}"):
            contrast.append(f"{what}: {_range_text(f'base_{m}', done[f'base_{m}'].dropna())} → "
                            f"{_range_text(f'final_{m}', done[f'final_{m}'].dropna())}")
    if contrast:
        evidence += "; for contrast, " + "; ".join(contrast)
    if gained:
        verdict = NOT_SUPPORTED
        evidence += "; the probe improves at: " + "; ".join(setting_or_all(k, runs.params) for k in gained)
    elif clear:
        verdict = SUPPORTED
        if lost:
            # the claim holds (no gain), but the number is a loss: say so first, not as a gain
            evidence = ("no setting gains knowledge; the probe instead falls (knowledge is lost, i.e. "
                        "forgotten) at: " + "; ".join(f"{setting_or_all(k, runs.params)} "
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
    what = metric_name(metric)
    lr = runs.axis("lr")
    done = runs.done_jobs()
    claim = f"One learning rate gives the best {what}"
    if lr is None or len(sorted_values(done[lr])) < 2:
        return Finding(key, claim, INCONCLUSIVE, "not tested: this sweep does not vary the learning rate.")
    if not has_values(done, metric):
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
        c = job_effect(part[part[lr] == m.index[1]], part[part[lr] == m.index[0]], metric)
        wins.append((kd, m.index[0]))
        sigs.append(judge(c, min_effect(metric)))
        span = f"{fmt_param(lr, m.index[1])} → {fmt_value(lr, m.index[0])}"
        where = f"{span} ({setting_label(kd, others)})" if others else span
        decisions.append((abs(c.diff), decision_of(metric, c, where)))
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
    if not (has_values(done, "forgetting_pct") and has_values(done, "final_follow_rate")):
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
    decided = Decision(f"forgetting, {setting_label(best, runs.params)}",
                       fmt_metric("forgetting_pct", best["forgetting_pct"]), n=_jobs(best["n"]),
                       target=f"< {FORGETTING_BUDGET:g}%")
    return Finding(key, claim, SUPPORTED, evidence + ".",
                   {"best": {c: best[c] for c in runs.params}, "follow_rate": float(best["final_follow_rate"]),
                    "forgetting_pct": float(best["forgetting_pct"])}, decided)


def aggressive_settings(runs: RunSet) -> Finding:
    key = "aggressive_settings"
    claim = f"Some settings are too aggressive (forgetting above {FORGETTING_BUDGET:g}%)"
    done = runs.done_jobs()
    if not has_values(done, "forgetting_pct"):
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
    decided = Decision(f"forgetting, {setting_label(worst, runs.params)}",
                       fmt_metric("forgetting_pct", worst["forgetting_pct"]), n=_jobs(worst["n"]),
                       target=f"> {FORGETTING_BUDGET:g}%")
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
    metric = "final_follow_rate" if has_values(done, "final_follow_rate") else "final_response_loss"
    name = col_name_for(role)
    claim = f"The {name} changes the {metric_name(metric)}"
    if not has_values(done, metric):
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
        c = job_effect(part[part[col] == ordered[0]], part[part[col] == ordered[-1]], metric)
        real = judge(c, min_effect(metric))
        sig_any |= bool(real)
        flat_all &= real is False
        span = f"{fmt_param(col, ordered[0])} → {fmt_value(col, ordered[-1])}"
        where = f"{span} ({setting_label(kd, others)})" if others else span
        decisions.append((abs(c.diff), decision_of(metric, c, where)))
        prefix = f"{setting_label(kd, others)}: " if others else ""
        clauses.append(prefix + ", ".join(f"{fmt_value(col, k)} {fmt_level(metric, v, with_ci)}"
                                          for k, v in vals.items()))
    if n_groups == 0:
        return Finding(f"{role}_effect", claim, INCONCLUSIVE, "no group of jobs completed two values to compare.")
    verdict = SUPPORTED if sig_any else (NOT_SUPPORTED if flat_all else INCONCLUSIVE)
    lead = {SUPPORTED: "", NOT_SUPPORTED: "no difference beyond noise: ",
            INCONCLUSIVE: "differences within noise: "}[verdict]
    return Finding(f"{role}_effect", claim, verdict,
                   f"{lead}{metric_name(metric)} by {name}: " + "; ".join(clauses) + ".", {"axis": col},
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
    for role in ("template", "format"):
        f = categorical_effect(runs, role)
        if f is not None:
            out.append(f)
    return out
