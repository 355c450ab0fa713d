"""Small statistics used by plots and findings: seed means with confidence intervals, rank
correlation, a two-group comparison and the Pareto front.

Only numpy and pandas: a sweep has a handful of seeds per setting, so a Student-t interval
from a short quantile table is all that is needed.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

# Two-sided 95% Student-t quantiles t(0.975, df).
_T975 = {
    1: 12.706, 2: 4.303, 3: 3.182, 4: 2.776, 5: 2.571, 6: 2.447, 7: 2.365, 8: 2.306,
    9: 2.262, 10: 2.228, 11: 2.201, 12: 2.179, 13: 2.160, 14: 2.145, 15: 2.131,
    16: 2.120, 17: 2.110, 18: 2.101, 19: 2.093, 20: 2.086, 25: 2.060, 30: 2.042,
    40: 2.021, 60: 2.000, 120: 1.980,
}


def t_quantile_975(dof: int) -> float:
    """t(0.975, dof), rounded conservatively (the next smaller tabulated dof)."""
    if dof < 1:
        return math.nan
    if dof in _T975:
        return _T975[dof]
    smaller = [d for d in _T975 if d <= dof]
    return _T975[max(smaller)] if dof <= 120 else 1.960


@dataclass(frozen=True)
class MeanCI:
    """Mean of ``n`` values with the half-width of its 95% confidence interval (NaN if n < 2)."""

    mean: float
    half: float
    n: int
    std: float

    @property
    def low(self) -> float:
        return self.mean - self.half

    @property
    def high(self) -> float:
        return self.mean + self.half


def mean_ci(values: Iterable[float]) -> MeanCI:
    """Mean and 95% t-interval of the finite values (non-finite ones are ignored)."""
    arr = np.asarray([v for v in values if v is not None], dtype=float)
    arr = arr[np.isfinite(arr)]
    n = int(arr.size)
    if n == 0:
        return MeanCI(math.nan, math.nan, 0, math.nan)
    mean = float(arr.mean())
    if n < 2:
        return MeanCI(mean, math.nan, 1, math.nan)
    std = float(arr.std(ddof=1))
    return MeanCI(mean, t_quantile_975(n - 1) * std / math.sqrt(n), n, std)


def strata(df: pd.DataFrame, cols: Sequence[str]) -> list[tuple[dict[str, Any], pd.DataFrame]]:
    """``df`` split per combination of ``cols`` (sorted, missing values kept as a group of their
    own), each part with its key as ``{column: value}``; the whole frame as one part keyed
    ``{}`` when ``cols`` is empty."""
    cols = list(cols)
    if not cols:
        return [({}, df)]
    return [(dict(zip(cols, key if isinstance(key, tuple) else (key,))), part)
            for key, part in df.groupby(cols, dropna=False, sort=True)]


def aggregate(df: pd.DataFrame, by: Sequence[str], value: str) -> pd.DataFrame:
    """Group ``df`` by ``by`` and summarise ``value`` per group: mean, ci (half-width), n, std.

    Groups keep their key columns; rows whose value is missing do not count towards ``n``.
    With an empty ``by`` the whole frame is one group.
    """
    cols = list(by)
    rows = []
    for key, part in strata(df, cols):
        m = mean_ci(pd.to_numeric(part[value], errors="coerce")) if value in part else mean_ci([])
        rows.append({**key, "mean": m.mean, "ci": m.half, "n": m.n, "std": m.std})
    return pd.DataFrame(rows, columns=cols + ["mean", "ci", "n", "std"])


def spearman(x: Sequence[float], y: Sequence[float]) -> float:
    """Spearman rank correlation (average ranks for ties); NaN with fewer than 3 points or no spread."""
    sx = pd.Series(np.asarray(x, dtype=float))
    sy = pd.Series(np.asarray(y, dtype=float))
    ok = sx.notna() & sy.notna() & np.isfinite(sx) & np.isfinite(sy)
    sx, sy = sx[ok], sy[ok]
    if len(sx) < 3:
        return math.nan
    rx, ry = sx.rank(), sy.rank()
    if rx.std() == 0 or ry.std() == 0:
        return math.nan
    return float(np.corrcoef(rx, ry)[0, 1])


def pareto_mask(df: pd.DataFrame, maximize: Sequence[str] = (), minimize: Sequence[str] = ()) -> pd.Series:
    """Boolean Series (aligned with ``df.index``): True for rows no other row dominates.

    Row ``a`` dominates ``b`` when it is at least as good on every objective and strictly better
    on one. Rows with a missing or non-finite objective are never on the front.
    """
    maximize, minimize = list(maximize), list(minimize)
    if not maximize and not minimize:
        raise ValueError("pareto_front needs at least one column to maximize or minimize")
    missing = [c for c in maximize + minimize if c not in df.columns]
    if missing:
        raise KeyError(f"pareto_front: no column(s) {missing} in the table")
    # Orient every objective so that larger is better.
    vals = np.column_stack(
        [pd.to_numeric(df[c], errors="coerce").to_numpy(dtype=float) for c in maximize]
        + [-pd.to_numeric(df[c], errors="coerce").to_numpy(dtype=float) for c in minimize]
    )
    ok = np.isfinite(vals).all(axis=1)
    on_front = np.zeros(len(df), dtype=bool)
    idx = np.flatnonzero(ok)
    pts = vals[idx]
    for j, p in zip(idx, pts):
        ge = (pts >= p).all(axis=1)
        gt = (pts > p).any(axis=1)
        on_front[j] = not (ge & gt).any()
    return pd.Series(on_front, index=df.index, name="pareto")


def pareto_front(df: pd.DataFrame, maximize: Sequence[str] = (), minimize: Sequence[str] = ()) -> pd.DataFrame:
    """The rows of ``df`` on the Pareto front (non-dominated), in their original order.

    ``pareto_front(jobs, maximize=["final_follow_rate"], minimize=["forgetting_pct"])`` gives
    the settings for which no other setting follows better *and* forgets less.
    """
    return df[pareto_mask(df, maximize=maximize, minimize=minimize)]
