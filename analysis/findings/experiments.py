"""Findings of the experiments that measure one metric split: the loss normalisation (answer
accuracy on questions with and without a long lead-in) and multi-turn conversations (answer
accuracy on the second turn). Each is computed only when its sweep's jobs report the metric.

Both are judged by the one noise standard (``analysis.noise``): seeds when a setting has
replicates, else the binomial noise of the held-out items each accuracy was measured on. The
jobs record how many second turns they scored (summary.json's ``scored``); for jobs from before
it, and for long-prompt questions, the counts are derived from the world settings (the configured
second turns less every question not scored; the long-prompt share of the scored questions)
and the evidence says so. Without any count the verdict is INCONCLUSIVE.
"""

from __future__ import annotations

import math

import pandas as pd

from analysis.collect import RunSet
from analysis.roles import key_of
from analysis.findings.common import MIN_EFFECT, config_value, has_values
from analysis.noise import Z95, Effect, effect, judge, level_interval, wilson
from analysis.verdicts import INCONCLUSIVE, NOT_MEASURABLE, NOT_SUPPORTED, SUPPORTED, Finding
from analysis.stats import mean_ci, strata
from analysis.style import setting_label

#: Smallest accuracy difference (fraction) worth calling an effect, as for every rate.
MIN_RATE = MIN_EFFECT["rate"]
#: Second-turn accuracy that counts as answering the second turn.
ANSWERS = 0.5
LOSS_NORM = key_of("loss_norm")
LONG, SHORT = "final_answer_acc_long_prompt", "final_answer_acc_short_prompt"
MULTI = "final_answer_acc_multi_turn"


def _pct(values: list[float]) -> str:
    m = mean_ci(values)
    text = f"{100 * m.mean:.1f}%"
    return text + (f" ± {100 * m.half:.1f}" if m.n >= 2 else "")


def _config(runs: RunSet, job: str, key: str) -> float | None:
    """A job's config value as a finite number (None when missing or not a number)."""
    value = config_value(runs, job, key)
    try:
        out = float(value)
    except (TypeError, ValueError):
        return None
    return out if math.isfinite(out) else None


def _se(rate: float, n: float | None) -> float:
    """Standard error of a rate measured on ``n`` items, from its Wilson interval (which stays
    honest at 0% and 100%); NaN without a count."""
    if n is None or not n >= 1 or not math.isfinite(rate):
        return math.nan
    k = round(rate * n)
    lo, hi = wilson(k, n)
    return (hi - lo) / (2 * Z95)


def _split_counts(runs: RunSet, row) -> tuple[float | None, float | None]:
    """(long, short) questions a job scored: the long-prompt share of its scored questions."""
    n, frac = row.get("items_answer"), _config(runs, row["job"], key_of("long_prompts"))
    if n is None or pd.isna(n) or frac is None or not 0 < frac < 1:
        return None, None
    return frac * float(n), (1 - frac) * float(n)


def _gaps(runs: RunSet, part: pd.DataFrame) -> tuple[list[float], list[float]]:
    """Each job's gap (short-prompt minus long-prompt accuracy) and its standard error over the
    job's items (NaN without the counts)."""
    vals, ses = [], []
    for _, row in part.iterrows():
        n_long, n_short = _split_counts(runs, row)
        vals.append(float(row[SHORT] - row[LONG]))
        ses.append(math.hypot(_se(float(row[SHORT]), n_short), _se(float(row[LONG]), n_long)))
    return vals, ses


def _gap_effect(runs: RunSet, a: pd.DataFrame | None, b: pd.DataFrame) -> Effect:
    """``gap(b) - gap(a)`` under the noise standard; with ``a`` None, ``gap(b)`` against no gap."""
    vb, sb = _gaps(runs, b)
    va, sa = _gaps(runs, a) if a is not None else ([0.0] * len(vb), [0.0] * len(vb))
    return effect(va, vb, se_a=sa, se_b=sb)


def _describe(e: Effect) -> str:
    return e.describe(scale=100, unit=" points")


def long_instructions_dilute(runs: RunSet) -> Finding | None:
    """Claim: dividing the loss by the sequence length lets a long instruction dilute its
    response's gradient; dividing by the batch's trained tokens does not. Measured as the
    accuracy gap (short-prompt minus long-prompt questions) of each loss normalisation."""
    key = "long_instructions_dilute"
    claim = ("Longer instructions dilute the gradient when the loss is divided by the sequence "
             "length, not under per-batch token normalisation")
    if LOSS_NORM not in runs.params:
        return None
    done = runs.done_jobs()
    if not (has_values(done, LONG) and has_values(done, SHORT)):
        return Finding(key, claim, NOT_MEASURABLE, "no completed job reports answer accuracy "
                       "split by prompt length (world long_prompt_fraction > 0).")
    done = done[done[LONG].notna() & done[SHORT].notna()]
    by_norm = {norm: done[done[LOSS_NORM] == norm] for norm in ("tokens", "sequence", "length")}
    by_norm = {k: v for k, v in by_norm.items() if not v.empty}
    gaps, parts = {}, []
    for norm, part in by_norm.items():
        gaps[norm] = mean_ci((part[SHORT] - part[LONG]).astype(float).tolist()).mean
        acc = f"; answer acc. {_pct(part['final_answer_acc'].tolist())}" if has_values(part, "final_answer_acc") else ""
        parts.append(f"{norm}: short prompts {_pct(part[SHORT].tolist())}, long "
                     f"{_pct(part[LONG].tolist())} (gap {100 * gaps[norm]:+.1f} points{acc})")
    counts = [_split_counts(runs, row) for _, row in done.iterrows()]
    if all(c[0] is not None for c in counts):
        n = sorted({round(c[0] + c[1]) for c in counts})
        parts.append(f"item noise from about {int(round(counts[0][0]))} long and {int(round(counts[0][1]))} "
                     f"short questions per job (long_prompt_fraction of the {'/'.join(map(str, n))} scored; "
                     "the jobs do not record the split)")
    evidence = "; ".join(parts)
    numbers: dict = {"gap": gaps}
    if "tokens" not in gaps or "length" not in gaps:
        return Finding(key, claim, INCONCLUSIVE, f"not tested: needs both tokens and length jobs. {evidence}.",
                       numbers)
    extra = _gap_effect(runs, by_norm["tokens"], by_norm["length"])
    tokens = _gap_effect(runs, None, by_norm["tokens"])
    numbers.update(extra=extra.diff, extra_low=extra.low, extra_high=extra.high)
    real, tok_real = judge(extra, MIN_RATE), judge(tokens, MIN_RATE)
    text = f"dividing by the length changes the long-prompt gap by {_describe(extra)}"
    if real and extra.diff > 0 and not (tok_real and tokens.diff > 0):
        verdict, lead = SUPPORTED, (f"{text}; under token normalisation the gap is {_describe(tokens)}, "
                                    "not beyond noise")
    elif real and extra.diff < 0:
        verdict, lead = NOT_SUPPORTED, f"the opposite: {text}"
    elif real is False:
        verdict, lead = NOT_SUPPORTED, (f"{text}, within {100 * MIN_RATE:g} points on either side: no "
                                        "dilution measured at this scale")
    elif real:
        verdict, lead = INCONCLUSIVE, (f"{text}, but long prompts also trail under token normalisation "
                                       f"({_describe(tokens)})")
    else:
        verdict, lead = INCONCLUSIVE, f"{text}: within noise (or no noise estimate)"
    # what decides: the change of the gap, unless long prompts trail under token normalisation too
    decided = tokens.decision("long-prompt gap under tokens", scale=100, unit=" points") \
        if real and extra.diff > 0 and tok_real and tokens.diff > 0 else \
        extra.decision("long-prompt gap, length vs tokens", scale=100, unit=" points")
    return Finding(key, claim, verdict, f"{lead}. {evidence}.", numbers, decided)


def _second_turns(runs: RunSet, row) -> float | None:
    """Second-turn questions a job scored, at least: the configured ones less every held-out
    question the job did not score (cut as too long or beyond eval.max_items); exactly, when the
    job recorded it (``items_multi_turn``, summary.json's ``scored``)."""
    recorded = row.get("items_multi_turn")
    if recorded is not None and not pd.isna(recorded) and float(recorded) > 0:
        return float(recorded)
    n_mt = _config(runs, row["job"], key_of("multi_turn_questions"))
    n_eval = _config(runs, row["job"], key_of("eval_questions"))
    scored = row.get("items_answer")
    if not n_mt or n_eval is None or scored is None or pd.isna(scored):
        return None
    lost = max(0.0, n_eval + n_mt - float(scored))
    return n_mt - lost if n_mt > lost else None


def answers_second_turn(runs: RunSet) -> Finding | None:
    """Claim: SFT on two-exchange conversations teaches the model to answer the second turn."""
    key = "answers_second_turn"
    claim = "The tuned model answers the second turn of a conversation"
    done = runs.done_jobs()
    if not has_values(done, MULTI):
        return None
    done = done[done[MULTI].notna()]
    others = [c for c in runs.params if c != runs.axis("seed")]
    has_base = has_values(done, "base_answer_acc_multi_turn")
    parts, calls, highs = [], [], []
    for kd, part in strata(done, others):
        vals = part[MULTI].astype(float).tolist()
        label = setting_label(kd, others) if others else "all jobs"
        single = (f", all questions {_pct(part['final_answer_acc'].tolist())}"
                  if has_values(part, "final_answer_acc") else "")
        items = [_second_turns(runs, row) for _, row in part.iterrows()]
        _low, high, _src = level_interval(vals, items)
        highs.append(high)  # NaN without a noise estimate: never "below" anything
        paired = part[part["base_answer_acc_multi_turn"].notna()] if has_base else part.iloc[:0]
        if not paired.empty:  # a job without its base value is left out of the gain, never read as 0
            n_pair = [_second_turns(runs, row) for _, row in paired.iterrows()]
            e = effect(paired["base_answer_acc_multi_turn"].astype(float).tolist(),
                       paired[MULTI].astype(float).tolist(), items_a=n_pair, items_b=n_pair)
            gain = f", gain over the base {_describe(e)}"
        else:
            e, gain = None, ""
        parts.append(f"{label}: second turn {_pct(vals)}{single}{gain}")
        calls.append((mean_ci(vals).mean, label, e))
    counts = sorted({int(n) for _, row in done.iterrows() if (n := _second_turns(runs, row)) is not None})
    recorded = "items_multi_turn" in done and done["items_multi_turn"].notna().all()
    noise = ("no count of second-turn questions recorded" if not counts else
             f"item noise from {'/'.join(map(str, counts))} second-turn questions per job (as the jobs "
             "counted them)" if recorded else
             f"item noise from at least {'/'.join(map(str, counts))} second-turn questions per job "
             f"({key_of('multi_turn_questions')} less every question not scored)")
    base_mean = float(done["base_answer_acc_multi_turn"].mean()) if has_base else None
    base_text = f"base model {100 * base_mean:.1f}%; " if base_mean is not None else ""
    best = max(calls, key=lambda c: c[0])
    # answering: a gain over the base beyond noise and at least ANSWERS; not answering: every
    # setting's accuracy is below ANSWERS beyond noise, or no setting gains over the base.
    verdicts = [(mean, label, e, judge(e, MIN_RATE) if e is not None else None, high)
                for (mean, label, e), high in zip(calls, highs)]
    if any(real and e.diff > 0 and mean >= ANSWERS for mean, _, e, real, _ in verdicts):
        verdict = SUPPORTED
    elif all(high < ANSWERS for *_, high in verdicts) or (
            all(e is not None for _, _, e, _, _ in verdicts) and all(real is False or (real and e.diff <= 0) for _, _, e, real, _ in verdicts)):
        verdict = NOT_SUPPORTED
    else:
        verdict = INCONCLUSIVE  # within noise, or no count and no seeds to judge it by
    evidence = (f"best {best[1]} {100 * best[0]:.1f}% (counts as answering: a gain over the base beyond "
                f"noise and at least {100 * ANSWERS:g}%; as not answering: under {100 * ANSWERS:g}% beyond "
                f"noise); {base_text}" + "; ".join(parts) + f"; {noise}.")
    # what decides: the gain of the best setting that answers, else of the best setting
    answering = [c for c, v in zip(calls, verdicts) if v[3] and v[2].diff > 0 and v[0] >= ANSWERS]
    top = max(answering or calls, key=lambda c: c[0])
    decided = top[2].decision(f"second turn, gain over the base, {top[1]}", scale=100, unit=" points") \
        if top[2] is not None else None
    return Finding(key, claim, verdict, evidence, {"best": best[0], "base": base_mean}, decided)


def experiment_findings(runs: RunSet) -> list[Finding]:
    return [f for f in (long_instructions_dilute(runs), answers_second_turn(runs)) if f is not None]
