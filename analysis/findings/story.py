"""The story a sweep over learning rate x replay can tell, checked against targets.

The base model knows the facts (greedy completion in pre-training phrasing) but does not answer
questions about them; a tuned model answers them, also about the probe entities SFT never
mentioned, and still knows them; the same learning rate without replay forgets; a learning rate
that is too small never learns the format. Each target is a fixed number of this story, stated
in ``TARGETS``; whether a value meets it is judged by the one noise standard (``analysis.noise``):
its 95% interval from seeds, else from the held-out items it was measured on, lies beyond the
target (met), short of it (missed), or across it (within noise). A value with no noise estimate
(no seeds, no item count: the base-knowledge completion) is compared as a fixed target on the
value, and the evidence says so. A finding is ``supported`` when every target is met,
``not supported`` when one is missed, ``inconclusive`` when none is missed but one is within
noise, or when the sweep cannot test it.

Values are per setting (the swept parameters other than seeds); with seeds they are seed means
with 95% confidence intervals.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass

import pandas as pd

from analysis.collect import RunSet
from analysis.roles import key_of
from analysis.verdicts import INCONCLUSIVE, NOT_MEASURABLE, NOT_SUPPORTED, SUPPORTED, Decision, Finding, at_bound
from analysis.noise import (
    ITEMS, MET, MISSED, NOISE_NAMES, NONE, SEEDS, WITHIN, Z95, against_target, effect, items_column, level_interval,
    se_column,
)
from analysis.stats import mean_ci
from analysis.style import fmt_value, setting_label

#: (column, comparison, threshold). Rates are fractions, forgetting in percent.
TARGETS: dict[str, list[tuple[str, str, float]]] = {
    "base": [("base_follow_rate", "<=", 0.05), ("base_base_knowledge_sft", ">=", 0.90),
             ("base_base_knowledge_probe", ">=", 0.90), ("base_answer_acc", "<=", 0.10),
             ("base_knowledge_acc", "<=", 0.10)],
    "best": [("final_follow_rate", ">=", 0.95), ("final_answer_acc", ">=", 0.75),
             ("final_knowledge_acc", ">=", 0.80), ("forgetting_pct", "<=", 5.0)],
    # with 3 or more seeds the answer and probe targets are these (on the seed mean)
    "best_seeds": [("final_follow_rate", ">=", 0.95), ("final_answer_acc", ">=", 0.70),
                   ("final_knowledge_acc", ">=", 0.75), ("forgetting_pct", "<=", 5.0)],
}
#: The tuned model's base-knowledge completion stays within this many points of the base's.
KNOWLEDGE_KEPT = 0.05
#: Without replay at the best setting's lr: forgetting at least this (%), probe this much lower.
NO_REPLAY_FORGETTING = 50.0
NO_REPLAY_PROBE_DROP = 0.30
#: The smallest learning rate follows at most this share of prompts.
SMALL_LR_FOLLOW = 0.20

_NAMES = {"base_follow_rate": "follow", "final_follow_rate": "follow",
          "base_answer_acc": "answer acc.", "final_answer_acc": "answer acc.",
          "base_knowledge_acc": "probe acc.", "final_knowledge_acc": "probe acc.",
          "base_base_knowledge_sft": "base knowledge (SFT entities)",
          "final_base_knowledge_sft": "base knowledge (SFT entities)",
          "base_base_knowledge_probe": "base knowledge (probe entities)",
          "final_base_knowledge_probe": "base knowledge (probe entities)",
          "forgetting_pct": "forgetting"}


def _fmt(col: str, values: list[float]) -> str:
    m = mean_ci(values)
    pct = col == "forgetting_pct"
    scale = 1.0 if pct else 100.0
    sign = "+" if pct else ""
    text = f"{m.mean * scale:{sign}.1f}%"
    if m.n >= 2 and not math.isnan(m.half):
        text += f" ± {m.half * scale:.1f}"
    return text


@dataclass(frozen=True)
class _Result:
    """One target checked: its state, its evidence text, and how close it came (in points)."""

    state: str
    text: str
    decision: Decision | None = None
    margin: float = math.inf


def _interval(col: str, part: pd.DataFrame) -> tuple[float, float, str]:
    """95% interval of the mean of ``col`` over ``part`` by the noise standard (NaN: none),
    and where it came from."""
    values = _values(part, col)
    if not values:
        return math.nan, math.nan, NONE
    if len(values) >= 2:
        m = mean_ci(values)
        return m.low, m.high, SEEDS
    items = items_column(col)
    if items is not None and items in part:
        return level_interval(values, part.loc[part[col].notna(), items].tolist())
    se = se_column(col)
    if se in part and part[se].notna().all():
        half = Z95 * float(part[se].iloc[0])
        return values[0] - half, values[0] + half, ITEMS
    return math.nan, math.nan, NONE


def _margin(state: str, judged: bool, op: str, limit: float, value: float, low: float, high: float) -> float:
    """How far a check is from going the other way: the interval's near end (or the value) from
    the limit."""
    near = value if not judged else (high if op == "<=" else low) if state == MET else \
        (low if op == "<=" else high) if state == MISSED else value
    return abs(near - limit)


def _jobs(n: int) -> str:
    return f"{n} job{'s' if n != 1 else ''}"


def _target_text(state: str, judged: bool, target: str, low: float, high: float, fmt) -> str:
    if not judged:
        return f"fixed target {target}, {state} on the value; no noise estimate"
    return f"95% CI {fmt(low)} to {fmt(high)}; target {target}, {state}{' beyond noise' if state != WITHIN else ''}"


def _check(col: str, op: str, limit: float, part: pd.DataFrame) -> _Result:
    values = _values(part, col)
    mean = float(pd.Series(values, dtype=float).mean())
    low, high, source = _interval(col, part)
    state, judged = against_target(op, limit, mean, low, high)
    pct = col == "forgetting_pct"
    lim = f"{limit:+g}%" if pct else f"{100 * limit:g}%"
    fmt = (lambda v: f"{v:+.1f}%") if pct else (lambda v: f"{100 * v:.1f}%")  # noqa: E731
    decision = Decision(_NAMES.get(col, col), _fmt(col, values), fmt(low) if judged else "",
                        fmt(high) if judged else "", _jobs(len(values)), NOISE_NAMES[source if judged else NONE],
                        f"{op} {lim}")
    return _Result(state, f"{_NAMES.get(col, col)} {_fmt(col, values)} "
                          f"({_target_text(state, judged, f'{op} {lim}', low, high, fmt)})",
                   decision, (1.0 if pct else 100.0) * _margin(state, judged, op, limit, mean, low, high))


def _settings(runs: RunSet) -> pd.DataFrame:
    """Completed jobs with a ``setting`` key (the swept non-seed parameters)."""
    done = runs.done_jobs().copy()
    params = runs.params
    done["_setting"] = done[params].astype(str).agg("|".join, axis=1) if params else "all"
    return done


def _values(part: pd.DataFrame, col: str) -> list[float]:
    return part[col].dropna().astype(float).tolist() if col in part else []


def _verdict(results: list[_Result]) -> str:
    states = {r.state for r in results}
    return NOT_SUPPORTED if MISSED in states else INCONCLUSIVE if WITHIN in states else SUPPORTED


def _deciding(results: list[_Result]) -> Decision | None:
    """The check that decided: among those in the verdict's state (missed, else within noise,
    else met), the one that came closest to going the other way."""
    state = {NOT_SUPPORTED: MISSED, INCONCLUSIVE: WITHIN, SUPPORTED: MET}[_verdict(results)]
    picks = [r for r in results if r.state == state and r.decision is not None]
    return min(picks, key=lambda r: r.margin).decision if picks else None


def _finding(key: str, claim: str, results: list[_Result], evidence: str, numbers: dict) -> Finding:
    return Finding(key, claim, _verdict(results), evidence, numbers, _deciding(results))


def base_knows_but_does_not_answer(runs: RunSet) -> Finding:
    key = "base_knows_not_answers"
    claim = "The base model knows the facts but does not answer questions about them"
    done = _settings(runs)
    cols = [c for c, _, _ in TARGETS["base"]]
    if "base_base_knowledge_sft" not in done or done["base_base_knowledge_sft"].isna().all():
        return Finding(key, claim, NOT_MEASURABLE, "no job reports base-knowledge completion.")
    # one value per base model: the jobs of a seed share it (the first job stands for it, with
    # its item counts)
    seed = runs.axis("seed")
    base = done.groupby(seed, dropna=False).head(1) if seed else done.head(1)
    results = [_check(c, op, lim, base) for c, op, lim in TARGETS["base"] if c in base]
    return _finding(key, claim, results, "; ".join(r.text for r in results) + ".",
                    {"base": {c: float(base[c].mean()) for c in cols if c in base}})


def _best_setting(done: pd.DataFrame) -> tuple[str, pd.DataFrame] | None:
    """The setting with the highest answer + probe accuracy among those forgetting <= 5%
    (any setting when none does)."""
    need = ["final_answer_acc", "final_knowledge_acc", "forgetting_pct"]
    if any(c not in done or done[c].isna().all() for c in need):
        return None
    means = done.groupby("_setting")[need].mean()
    means["score"] = means["final_answer_acc"] + means["final_knowledge_acc"]
    ok = means[means["forgetting_pct"] <= TARGETS["best"][3][2]]
    pick = (ok if not ok.empty else means)["score"].idxmax()
    return pick, done[done["_setting"] == pick]


def best_setting_answers_and_keeps(runs: RunSet) -> Finding:
    key = "best_answers_and_keeps"
    claim = ("The best tuned setting answers held-out and probe questions and still knows "
             "what the base knew, with little forgetting")
    done = _settings(runs)
    best = _best_setting(done)
    if best is None:
        return Finding(key, claim, NOT_MEASURABLE, "answer accuracy, probe accuracy or "
                       "forgetting not reported.")
    _, part = best
    n_seeds = part[runs.axis("seed")].nunique() if runs.axis("seed") else 1
    targets = TARGETS["best_seeds"] if n_seeds >= 3 else TARGETS["best"]
    results = [_check(c, op, lim, part) for c, op, lim in targets]
    for group in ("sft", "probe"):
        b, f = f"base_base_knowledge_{group}", f"final_base_knowledge_{group}"
        if b in part and f in part and part[f].notna().any():
            pair = part.dropna(subset=[b, f])
            e = effect(pair[f].astype(float).tolist(), pair[b].astype(float).tolist())  # the drop, base - tuned
            state, judged = against_target("<=", KNOWLEDGE_KEPT, e.diff, e.low, e.high)
            target = f"a drop <= {100 * KNOWLEDGE_KEPT:g} points"
            name = f"base knowledge ({'SFT' if group == 'sft' else 'probe'} entities)"
            decision = e.decision(f"{name} drop", scale=100, unit=" points") if judged else \
                Decision(f"{name} drop", f"{100 * e.diff:+.1f} points", n=e.jobs)
            points = lambda v: f"{100 * v:+.1f} points"  # noqa: E731
            results.append(_Result(state, f"{name} "
                                   f"{_fmt(f, _values(part, f))} vs base {_fmt(b, _values(part, b))} "
                                   f"({_target_text(state, judged, target, e.low, e.high, points)})",
                                   dataclasses.replace(decision, target=target),
                                   100 * _margin(state, judged, "<=", KNOWLEDGE_KEPT, e.diff, e.low, e.high)))
    label = setting_label(part.iloc[0], runs.params) if runs.params else "all jobs"
    seeds = f" over {n_seeds} seeds (mean ± 95% CI)" if n_seeds >= 2 else ""
    criterion = (f"best (criterion: the highest answer + probe accuracy among the settings forgetting "
                 f"<= {TARGETS['best'][3][2]:g}%): ")
    return _finding(key, claim, results, f"{criterion}{label}{seeds}: " + "; ".join(r.text for r in results) + ".",
                    {"setting": {c: part.iloc[0][c] for c in runs.params}, "n_seeds": int(n_seeds)})


def replay_is_what_keeps_it(runs: RunSet) -> Finding:
    key = "no_replay_forgets"
    claim = "The same learning rate without replay forgets (>= 50%) and loses the probe (>= 30 points)"
    done = _settings(runs)
    lr, rp = runs.axis("lr"), runs.axis("replay")
    best = _best_setting(done)
    if rp is None or best is None:
        return Finding(key, claim, INCONCLUSIVE, "not tested: the sweep does not vary the replay ratio.")
    _, part = best
    # the learning rate is the swept one, or else the same in every job (a sweep over replay)
    lr = lr or key_of("lr")
    best_lr, best_rp = part.iloc[0].get(lr), part.iloc[0][rp]
    others = [c for c in runs.params if c not in (lr, rp)]
    same = done[done[rp] == 0]
    if lr in done:
        same = same[same[lr] == best_lr]
    for c in others:
        same = same[same[c] == part.iloc[0][c]]
    if same.empty or best_rp == 0:
        return Finding(key, claim, INCONCLUSIVE, f"not tested: no completed job at {fmt_value(lr, best_lr)} "
                       "without replay, or the best setting has no replay.")
    forgets = _check("forgetting_pct", ">=", NO_REPLAY_FORGETTING, same)
    col = "final_knowledge_acc"
    items = items_column(col)
    n = (lambda d: d.loc[d[col].notna(), items].tolist() if items in d else None)  # noqa: E731
    e = effect(_values(same, col), _values(part, col), items_a=n(same), items_b=n(part))  # with replay minus without
    drop = e.diff
    state_p, judged = against_target(">=", NO_REPLAY_PROBE_DROP, drop, e.low, e.high)
    target = f">= {100 * NO_REPLAY_PROBE_DROP:g} points"
    f_decision = dataclasses.replace(forgets.decision, what="forgetting without replay")
    p_decision = e.decision("probe acc. drop without replay", scale=100, unit=" points") if judged else \
        Decision("probe acc. drop without replay", f"{100 * drop:+.1f} points", n=e.jobs)
    results = [_Result(forgets.state, f"without replay {forgets.text}; with {fmt_value(rp, best_rp)} "
                                      f"{_fmt('forgetting_pct', _values(part, 'forgetting_pct'))}",
                       f_decision, forgets.margin),
               _Result(state_p, f"probe acc. {_fmt(col, _values(same, col))} vs {_fmt(col, _values(part, col))}: "
                                f"{100 * drop:.0f} points lower "
                                f"({_target_text(state_p, judged, target, e.low, e.high, lambda v: f'{100 * v:.1f}')})",
                       dataclasses.replace(p_decision, target=target),
                       100 * _margin(state_p, judged, ">=", NO_REPLAY_PROBE_DROP, drop, e.low, e.high))]
    for group in ("sft", "probe"):
        f = f"final_base_knowledge_{group}"
        if f in same and same[f].notna().any():
            results.append(_Result(MET, f"base knowledge ({'SFT' if group == 'sft' else 'probe'} entities) "
                                        f"without replay {_fmt(f, _values(same, f))}"))
    where = f"at {fmt_value(lr, best_lr)}" if lr in done else "at the sweep's one learning rate"
    return _finding(key, claim, results, f"{where}: "
                    + "; ".join(r.text for r in results) + ".", {"lr": best_lr, "probe_drop": drop})


def smallest_lr_does_not_learn(runs: RunSet) -> Finding:
    key = "smallest_lr_no_format"
    claim = f"The smallest learning rate is too small to learn the format (follow <= {100 * SMALL_LR_FOLLOW:g}%)"
    done = _settings(runs)
    lr = runs.axis("lr")
    if lr is None or done[lr].nunique() < 2 or "final_follow_rate" not in done:
        return Finding(key, claim, INCONCLUSIVE, "not tested: the sweep does not vary the learning rate.")
    rates = done["final_follow_rate"].dropna().tolist()
    if "base_follow_rate" in done:
        rates += done["base_follow_rate"].dropna().tolist()
    if at_bound(rates) is not None:
        return Finding(key, claim, NOT_MEASURABLE,
                       f"the base model and every tuned job follow {100 * at_bound(rates):.0f}% of held-out "
                       "prompts: the follow rate sits at its bound, so a learning rate too small to learn the "
                       "format cannot be told from one that learnt nothing measurable.")
    low = done[lr].min()
    part = done[done[lr] == low]
    per = [g for _, g in part.groupby("_setting")]
    worst = max(per, key=lambda g: float(g["final_follow_rate"].mean()))
    check = _check("final_follow_rate", "<=", SMALL_LR_FOLLOW, worst)
    verdict = {MET: SUPPORTED, MISSED: NOT_SUPPORTED, WITHIN: INCONCLUSIVE}[check.state]
    where = setting_label(worst.iloc[0], runs.params)
    return Finding(key, claim, verdict,
                   f"at {fmt_value(lr, low)} the highest follow rate over the other settings: {check.text}.",
                   {"lr": low}, dataclasses.replace(check.decision, what=f"follow, {where}"))


def story_findings(runs: RunSet) -> list[Finding]:
    """The four findings, or none when the sweep measured no base-knowledge completion (a sweep
    on other data, or jobs from before the metric existed)."""
    done = runs.done_jobs()
    if done.empty or "base_base_knowledge_sft" not in done or done["base_base_knowledge_sft"].isna().all():
        return []
    return [base_knows_but_does_not_answer(runs), best_setting_answers_and_keeps(runs),
            replay_is_what_keeps_it(runs), smallest_lr_does_not_learn(runs)]

