"""Findings of the experiments that measure one metric split: the loss normalisation (answer
accuracy on questions with and without a long lead-in) and multi-turn conversations (answer
accuracy on the second turn). Each is computed only when its sweep's jobs report the metric.

Single-seed accuracies on ~40 questions have a binomial standard error of ~7 points, so a
difference under :data:`MIN_DIFF` is treated as noise; with seeds, the means are compared with
the same margin and their 95% CIs are shown.
"""

from __future__ import annotations

import pandas as pd

from analysis.collect import RunSet
from analysis.verdicts import INCONCLUSIVE, NOT_MEASURABLE, NOT_SUPPORTED, SUPPORTED, Finding
from analysis.stats import mean_ci, strata
from analysis.style import setting_label

#: Smallest accuracy difference (fraction) that counts as an effect.
MIN_DIFF = 0.10
LOSS_NORM = "train.loss_norm"
LONG, SHORT = "final_answer_acc_long_prompt", "final_answer_acc_short_prompt"
MULTI = "final_answer_acc_multi_turn"


def _pct(values: list[float]) -> str:
    m = mean_ci(values)
    text = f"{100 * m.mean:.1f}%"
    return text + (f" ± {100 * m.half:.1f}" if m.n >= 2 else "")


def _has(df: pd.DataFrame, col: str) -> bool:
    return col in df and df[col].notna().any()


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
    if not (_has(done, LONG) and _has(done, SHORT)):
        return Finding(key, claim, NOT_MEASURABLE, "no completed job reports answer accuracy "
                       "split by prompt length (world long_prompt_fraction > 0).")
    done = done[done[LONG].notna() & done[SHORT].notna()]
    gaps, parts = {}, []
    for norm in ("tokens", "sequence", "length"):
        part = done[done[LOSS_NORM] == norm]
        if part.empty:
            continue
        gap = (part[SHORT] - part[LONG]).astype(float).tolist()
        gaps[norm] = mean_ci(gap).mean
        acc = f"; answer acc. {_pct(part['final_answer_acc'].tolist())}" if _has(part, "final_answer_acc") else ""
        parts.append(f"{norm}: short prompts {_pct(part[SHORT].tolist())}, long "
                     f"{_pct(part[LONG].tolist())} (gap {100 * gaps[norm]:+.1f} points{acc})")
    evidence = "; ".join(parts)
    numbers = {"gap": gaps}
    if "tokens" not in gaps or "length" not in gaps:
        return Finding(key, claim, INCONCLUSIVE, f"not tested: needs both tokens and length jobs. {evidence}.",
                       numbers)
    extra = gaps["length"] - gaps["tokens"]
    if extra >= MIN_DIFF and abs(gaps["tokens"]) < MIN_DIFF:
        verdict, lead = SUPPORTED, (f"dividing by the length widens the long-prompt gap by "
                                    f"{100 * extra:.1f} points; token normalisation keeps it under "
                                    f"{100 * MIN_DIFF:g}")
    elif abs(extra) < MIN_DIFF:
        verdict, lead = NOT_SUPPORTED, (f"the gap differs by {100 * extra:+.1f} points between length "
                                        f"and token normalisation, within the {100 * MIN_DIFF:g}-point "
                                        f"noise margin: no dilution measured at this scale")
    elif extra <= -MIN_DIFF:
        verdict, lead = NOT_SUPPORTED, (f"the opposite: dividing by the length narrows the gap by "
                                        f"{100 * -extra:.1f} points")
    else:
        verdict, lead = INCONCLUSIVE, (f"dividing by the length widens the gap by {100 * extra:.1f} "
                                       f"points, but long prompts also trail by "
                                       f"{100 * gaps['tokens']:.1f} under token normalisation")
    return Finding(key, claim, verdict, f"{lead}. {evidence}.", numbers)


def answers_second_turn(runs: RunSet) -> Finding | None:
    """Claim: SFT on two-exchange conversations teaches the model to answer the second turn."""
    key = "answers_second_turn"
    claim = "The tuned model answers the second turn of a conversation"
    done = runs.done_jobs()
    if not _has(done, MULTI):
        return None
    done = done[done[MULTI].notna()]
    others = [c for c in runs.params if c != runs.axis("seed")]
    parts, best = [], None
    for _, part in strata(done, others):
        vals = part[MULTI].astype(float).tolist()
        label = setting_label(part.iloc[0], others) if others else "all jobs"
        single = (f", all questions {_pct(part['final_answer_acc'].tolist())}"
                  if _has(part, "final_answer_acc") else "")
        parts.append(f"{label}: second turn {_pct(vals)}{single}")
        mean = mean_ci(vals).mean
        if best is None or mean > best[0]:
            best = (mean, label)
    base = (float(done["base_answer_acc_multi_turn"].mean())
            if _has(done, "base_answer_acc_multi_turn") else None)
    base_text = f"base model {100 * base:.1f}%; " if base is not None else ""
    ref = base if base is not None else 0.0
    if best[0] >= 0.5 and best[0] - ref >= MIN_DIFF:
        verdict = SUPPORTED
    elif best[0] - ref < MIN_DIFF:
        verdict = NOT_SUPPORTED
    else:
        verdict = INCONCLUSIVE  # learnt something, but answers fewer than half
    evidence = (f"best {best[1]} {100 * best[0]:.1f}% (counts as answering: >= 50% and "
                f">= {100 * MIN_DIFF:g} points over the base); {base_text}" + "; ".join(parts) + ".")
    return Finding(key, claim, verdict, evidence, {"best": best[0], "base": base})


def experiment_findings(runs: RunSet) -> list[Finding]:
    return [f for f in (long_instructions_dilute(runs), answers_second_turn(runs)) if f is not None]
