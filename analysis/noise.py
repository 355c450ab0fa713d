"""The one noise standard every finding uses: an effect counts only when it exceeds its noise.

An effect is the difference ``b - a`` between two groups of jobs (two settings) in one metric.
Its 95% interval comes from, in this order:

1. **seeds**: both groups have two or more jobs (replicates): Welch's t interval of the
   difference of the means;
2. **items**: a rate measured on a known number of held-out items in every job (the counts the
   jobs record): the successes and items of each group are pooled and the difference of the
   two proportions gets Newcombe's score interval (built from the two Wilson intervals);
3. **items, as a per-job interval**: a value every job recorded with its own 95% interval over
   its held-out items (forgetting, from the raw-text loss of each held-out window): the groups'
   means get standard errors from those intervals and the difference a normal interval;
4. **none**: no noise estimate (one job per group and a value without its interval, or a rate
   whose item count the job did not record). Such an effect is never called real or absent.

The call (:func:`judge`): *real* when the interval excludes zero and the difference is at
least the metric's smallest effect of interest; *absent* when the whole interval lies within
that smallest effect on either side; otherwise (or without an estimate) *unknown*.

A value held against a fixed target (:func:`against_target`) is *met* or *missed* when its 95%
interval lies beyond the target, *within noise* when the interval crosses it. Shares of held-out
items pooled over the jobs of a setting (:class:`Share`, Wilson intervals; :func:`difference`
of two settings, Newcombe's interval) are the items route for findings that count items.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from analysis.stats import MeanCI, mean_ci, t_quantile_975
from analysis.verdicts import Decision

Z95 = 1.959964
SEEDS, ITEMS, NONE = "seeds", "items", "none"
#: How the report names where an interval came from.
NOISE_NAMES = {SEEDS: "seed noise", ITEMS: "item noise", NONE: "no noise estimate"}


@dataclass(frozen=True)
class Effect:
    """``b - a`` with its 95% interval (NaN bounds without a noise estimate)."""

    a: MeanCI
    b: MeanCI
    diff: float
    low: float
    high: float
    source: str  # SEEDS, ITEMS or NONE

    @property
    def half(self) -> float:
        return (self.high - self.low) / 2

    @property
    def n(self) -> tuple[int, int]:
        return self.a.n, self.b.n

    @property
    def jobs(self) -> str:
        return f"{self.a.n} vs {self.b.n} job{'s' if self.b.n != 1 else ''}"

    @property
    def noise(self) -> str:
        return NOISE_NAMES[self.source]

    def decision(self, what: str, scale: float = 1.0, unit: str = "", digits: int = 1) -> Decision:
        """This effect as what decided a verdict (printed as ``describe`` prints it)."""
        f = lambda v: f"{scale * v:+.{digits}f}"  # noqa: E731
        bounded = self.source != NONE and math.isfinite(self.low) and math.isfinite(self.high)
        return Decision(what, f"{f(self.diff)}{unit}", f(self.low) if bounded else "",
                        f(self.high) if bounded else "", self.jobs, self.noise)

    def describe(self, scale: float = 1.0, unit: str = "", digits: int = 1) -> str:
        """``+12.0 points (95% CI +4.1 to +19.9; n = 1 vs 1 jobs; item noise)``."""
        f = lambda v: f"{scale * v:+.{digits}f}"  # noqa: E731
        jobs = f"n = {self.a.n} vs {self.b.n} job{'s' if self.b.n != 1 else ''}"
        if self.source == NONE:
            return f"{f(self.diff)}{unit} (no noise estimate: {jobs}, no item counts recorded)"
        what = "seed noise" if self.source == SEEDS else "item noise"
        return f"{f(self.diff)}{unit} (95% CI {f(self.low)} to {f(self.high)}; {jobs}; {what})"


def wilson(successes: float, trials: float, z: float = Z95) -> tuple[float, float]:
    """Wilson score interval of a proportion (NaN bounds for zero trials)."""
    if trials <= 0:
        return math.nan, math.nan
    p = successes / trials
    denom = 1 + z * z / trials
    centre = (p + z * z / (2 * trials)) / denom
    half = z * math.sqrt(p * (1 - p) / trials + z * z / (4 * trials * trials)) / denom
    return max(0.0, centre - half), min(1.0, centre + half)


def newcombe(k_a: float, n_a: float, k_b: float, n_b: float) -> tuple[float, float, float]:
    """Difference ``p_b - p_a`` of two proportions with Newcombe's hybrid score interval."""
    pa, pb = k_a / n_a, k_b / n_b
    la, ua = wilson(k_a, n_a)
    lb, ub = wilson(k_b, n_b)
    d = pb - pa
    low = d - math.sqrt((pb - lb) ** 2 + (ua - pa) ** 2)
    high = d + math.sqrt((ub - pb) ** 2 + (pa - la) ** 2)
    return d, low, high


def _pooled(rates: np.ndarray, items: np.ndarray) -> tuple[float, float]:
    """Successes and trials of jobs that each measured ``rate`` on ``items`` items."""
    return float(np.round(rates * items).sum()), float(items.sum())


def effect(a: Sequence[float], b: Sequence[float], *, items_a: Sequence[float] | None = None,
           items_b: Sequence[float] | None = None, se_a: Sequence[float] | None = None,
           se_b: Sequence[float] | None = None) -> Effect:
    """The effect ``b - a`` of two groups of job values, with the interval of the standard.

    ``items_a`` / ``items_b``: for a rate, the number of held-out items each job's value was
    measured on (aligned with ``a`` / ``b``; a missing or zero count means unknown).
    ``se_a`` / ``se_b``: each job's standard error of its value over its held-out items."""
    va, vb = list(a), list(b)
    ma, mb = mean_ci(va), mean_ci(vb)
    diff = mb.mean - ma.mean
    if not math.isfinite(diff):
        return Effect(ma, mb, diff, math.nan, math.nan, NONE)
    if ma.n >= 2 and mb.n >= 2:
        var_a, var_b = ma.std ** 2 / ma.n, mb.std ** 2 / mb.n
        se = math.sqrt(var_a + var_b)
        if se == 0:
            return Effect(ma, mb, diff, diff, diff, SEEDS)
        # Welch-Satterthwaite degrees of freedom, rounded down (conservative).
        dof = (var_a + var_b) ** 2 / ((var_a ** 2 / (ma.n - 1) if var_a else 0)
                                      + (var_b ** 2 / (mb.n - 1) if var_b else 0))
        half = t_quantile_975(max(1, int(dof))) * se
        return Effect(ma, mb, diff, diff - half, diff + half, SEEDS)
    counts = _item_counts(va, items_a), _item_counts(vb, items_b)
    if counts[0] is not None and counts[1] is not None:
        (ra, na), (rb, nb) = counts
        ka, ta = _pooled(ra, na)
        kb, tb = _pooled(rb, nb)
        d, low, high = newcombe(ka, ta, kb, tb)
        # the pooled proportions are the item-weighted means; report the plain means' difference
        return Effect(ma, mb, diff, low + (diff - d), high + (diff - d), ITEMS)
    se = _mean_se(va, se_a), _mean_se(vb, se_b)
    if se[0] is not None and se[1] is not None:
        half = Z95 * math.hypot(*se)
        return Effect(ma, mb, diff, diff - half, diff + half, ITEMS)
    return Effect(ma, mb, diff, math.nan, math.nan, NONE)


def _mean_se(values: list[float], se: Sequence[float] | None) -> float | None:
    """Standard error of the mean of independent job values, each with its own standard error."""
    if se is None or len(se) != len(values) or not values:
        return None
    s = np.asarray([math.nan if v is None else v for v in se], dtype=float)
    if not (np.isfinite(s).all() and (s >= 0).all()):
        return None
    return float(math.sqrt((s ** 2).sum()) / len(s))


def se_column(metric: str) -> str:
    """The jobs-table column holding a job's standard error of ``metric`` (may be absent)."""
    return f"se_{metric}"


def _item_counts(values: list[float], items: Sequence[float] | None) -> tuple[np.ndarray, np.ndarray] | None:
    if items is None or len(items) != len(values) or not values:
        return None
    rates = np.asarray(values, dtype=float)
    n = np.asarray([math.nan if v is None else v for v in items], dtype=float)
    if not (np.isfinite(rates).all() and np.isfinite(n).all() and (n > 0).all()):
        return None
    if ((rates < 0) | (rates > 1)).any():
        return None
    return rates, n


#: Which recorded item count a rate was measured on (``items_<set>`` columns of the jobs table).
ITEM_SETS = {"follow_rate": "follow", "answer_acc": "answer", "answer_mc_acc": "answer",
             "knowledge_acc": "knowledge", "knowledge_mc_acc": "knowledge"}


def items_column(metric: str) -> str | None:
    """The jobs-table column holding the item count of ``metric`` (``final_answer_acc`` ->
    ``items_answer``), or None for a metric that is not a share of held-out items."""
    base = metric.split("_", 1)[1] if metric.startswith(("final_", "base_")) else metric
    return f"items_{ITEM_SETS[base]}" if base in ITEM_SETS else None


def judge(e: Effect, min_effect: float) -> bool | None:
    """True: a real effect; False: no effect of ``min_effect`` or more; None: cannot tell."""
    if e.source == NONE or not (math.isfinite(e.low) and math.isfinite(e.high)):
        return None
    if (e.low > 0 or e.high < 0) and abs(e.diff) >= min_effect:
        return True
    if -min_effect < e.low and e.high < min_effect:
        return False
    return None


def level_interval(values: Sequence[float], items: Sequence[float] | None = None) -> tuple[float, float, str]:
    """The 95% interval of one group's mean under the same standard (seeds, else items)."""
    m = mean_ci(values)
    if m.n >= 2:
        return m.low, m.high, SEEDS
    c = _item_counts(list(values), items)
    if c is not None:
        k, n = _pooled(*c)
        lo, hi = wilson(k, n)
        return lo, hi, ITEMS
    return math.nan, math.nan, NONE


# ---- a value against a fixed target -------------------------------------------------------

MET, MISSED, WITHIN = "met", "missed", "within noise"


def against_target(op: str, limit: float, value: float, low: float, high: float) -> tuple[str, bool]:
    """A value held against a target (``op`` ``<=`` or ``>=`` ``limit``), with its 95% interval:
    (state, judged by noise): met or missed beyond noise, within noise, or, without an interval,
    met or missed on the value alone."""
    if not (math.isfinite(low) and math.isfinite(high)):
        return (MET if (value <= limit if op == "<=" else value >= limit) else MISSED), False
    if (high <= limit) if op == "<=" else (low >= limit):
        return MET, True
    if (low > limit) if op == "<=" else (high < limit):
        return MISSED, True
    return WITHIN, True


# ---- shares of items pooled over the jobs of a setting ------------------------------------

@dataclass(frozen=True)
class Share:
    """``k`` of ``n`` items, with its Wilson 95% interval."""

    k: int
    n: int

    @property
    def p(self) -> float:
        return self.k / self.n if self.n else math.nan

    @property
    def interval(self) -> tuple[float, float]:
        return wilson(self.k, self.n)

    def __add__(self, other: "Share") -> "Share":
        return Share(self.k + other.k, self.n + other.n)

    def text(self) -> str:
        lo, hi = self.interval
        return f"{100 * self.p:.0f}% ({self.k}/{self.n}, {100 * lo:.0f}-{100 * hi:.0f})"


def share(rate: Any, n: Any) -> Share | None:
    """The share a job's rate stands for over its ``n`` items (None when either is missing)."""
    if rate is None or n is None or pd.isna(rate) or pd.isna(n) or int(n) <= 0:
        return None
    return Share(int(round(float(rate) * int(n))), int(n))


def difference(a: Share, b: Share) -> tuple[float, float, float]:
    """``a.p - b.p`` with Newcombe's 95% interval (independent items)."""
    return newcombe(b.k, b.n, a.k, a.n)
