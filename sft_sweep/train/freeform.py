"""Metrics for free-form answers, each with the number of items it rests on and its uncertainty.

A researcher's own held-out conversations have no answer key, only a reference answer. What can
be measured on them:

- ``response_nats_per_byte``: per held-out conversation, the nats the model needs for the
  reference answer (its end-of-turn marker included) divided by the answer's bytes; averaged over
  the conversations, with a 95% interval over them.
- ``rouge_l``: ROUGE-L F-measure of the greedy answer against the reference (``rouge-score``),
  over the prompts whose reference fits the generation room.
- per-item, paired base -> tuned differences of both (the same items, so item difficulty cancels),
  and the forgetting percentage with an interval from the paired per-window raw-text losses.

Intervals are normal-approximation 95% intervals of a mean: mean +- z * sd / sqrt(n), with the
sample standard deviation (ddof=1); a mean of fewer than two items has none.
"""

from __future__ import annotations

import logging

import math
from statistics import NormalDist
from typing import Any, Sequence

import numpy as np

Z95 = NormalDist().inv_cdf(0.975)

#: A metric measured on fewer than this share of its items is absent (with its reason).
MIN_MEASURED_SHARE = 0.5

ROUGE_MISSING = "the rouge-score package is not installed (pip install rouge-score)"


def mean_interval(values: Sequence[float], scale: float = 1.0) -> dict[str, Any] | None:
    """``{"mean", "ci95": [lo, hi], "n"}`` of ``values`` times ``scale`` (no ``ci95`` below 2 items);
    None for no values."""
    x = np.asarray([v for v in values if v is not None], dtype=np.float64) * scale
    if len(x) == 0:
        return None
    out: dict[str, Any] = {"mean": float(x.mean()), "n": int(len(x))}
    if len(x) >= 2:
        half = Z95 * float(x.std(ddof=1)) / math.sqrt(len(x))
        out["ci95"] = [out["mean"] - half, out["mean"] + half]
    return out


def paired_interval(base: Sequence[float | None], tuned: Sequence[float | None],
                    scale: float = 1.0) -> dict[str, Any] | None:
    """The interval of the per-item difference tuned - base over the items both measured."""
    if len(base) != len(tuned):
        return None
    diffs = [t - b for b, t in zip(base, tuned) if b is not None and t is not None]
    return mean_interval(diffs, scale)


def excludes_zero(interval: dict[str, Any] | None) -> bool | None:
    """Whether an interval lies wholly on one side of zero (None when there is no interval)."""
    if not interval or "ci95" not in interval:
        return None
    lo, hi = interval["ci95"]
    return lo > 0 or hi < 0


def rouge_l_scores(answers: Sequence[str], references: Sequence[str]) -> list[float] | None:
    """ROUGE-L F-measure per (answer, reference); None when rouge-score is not installed."""
    try:
        from rouge_score import rouge_scorer
    except ImportError:
        return None
    # rouge-score logs "Using default tokenizer." at INFO through absl on every scorer made: a
    # stray line in each job's terminal output that says nothing about the job
    logging.getLogger("absl").setLevel(logging.WARNING)
    scorer = rouge_scorer.RougeScorer(["rougeL"])
    return [float(scorer.score(ref, ans)["rougeL"].fmeasure) for ans, ref in zip(answers, references)]


def per_byte_losses(nll_sums: np.ndarray, n_bytes: Sequence[int]) -> list[float | None]:
    """Per item: nats / bytes of its reference (None for an item with no byte in the block)."""
    return [float(s) / b if b > 0 else None for s, b in zip(nll_sums, n_bytes)]


def too_few(name: str, measured: int, of: int, why: str) -> str | None:
    """The reason a metric is absent when it rests on less than ``MIN_MEASURED_SHARE`` of its
    items, else None."""
    if of and measured >= MIN_MEASURED_SHARE * of and measured > 0:
        return None
    return f"{name}: only {measured} of {of} held-out items {why}"


def free_form_summary(base_items: dict | None, tuned_items: dict, base_metrics: dict,
                      not_measured: dict[str, str], decoding: dict[str, Any]) -> dict[str, Any]:
    """summary.json's ``free_form`` section: each metric's interval for the base and the tuned
    model, the paired base -> tuned change, and the forgetting interval."""
    out: dict[str, Any] = {"decoding": decoding, "base": {}, "final": {}, "paired": {}}
    base_items = base_items or {}
    for metric in ("response_nats_per_byte", "rouge_l"):
        if metric in not_measured:
            continue
        for side, items in (("base", base_items), ("final", tuned_items)):
            iv = mean_interval(items.get(metric) or [])
            if iv is not None:
                out[side][metric] = iv
        if metric in base_items and metric in tuned_items:
            iv = paired_interval(base_items[metric], tuned_items[metric])
            if iv is not None:
                iv["excludes_zero"] = excludes_zero(iv)
                out["paired"][metric] = iv
    raw_base = base_metrics.get("raw_loss")
    if raw_base and base_items.get("raw_loss") and tuned_items.get("raw_loss"):
        iv = paired_interval(base_items["raw_loss"], tuned_items["raw_loss"], scale=100.0 / raw_base)
        if iv is not None:
            iv["excludes_zero"] = excludes_zero(iv)
            out["forgetting_pct"] = iv
    if not base_items:
        out["paired_not_measured"] = ("the base evaluation was cached before per-item scores were kept; "
                                      "remove its eval cache entry to measure the paired changes")
    return out
