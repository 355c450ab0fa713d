"""How values, columns and metrics are written and coloured, the same way in every figure,
table and finding."""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from typing import Any

import pandas as pd

from analysis.roles import describe, role_of  # noqa: F401 - role_of: a column's role, asked of style too

#: metric -> (label with unit, kind): kind "rate" is a 0-1 fraction shown as %, "pct" already in %.
METRICS = {
    "forgetting_pct": ("raw-text loss change vs base (%)", "pct"),
    "raw_loss": ("raw-text loss (nats/token)", "loss"),
    "response_loss": ("held-out response loss (nats/token)", "loss"),
    "loss": ("training loss (nats/token)", "loss"),
    "follow_rate": ("follow rate (% of held-out prompts)", "rate"),
    "answer_acc": ("answer accuracy (%)", "rate"),
    "answer_mc_acc": ("answer multiple-choice accuracy (%)", "rate"),
    "knowledge_acc": ("knowledge-probe accuracy (%)", "rate"),
    "knowledge_mc_acc": ("knowledge-probe multiple-choice accuracy (%)", "rate"),
    "grad_norm": ("gradient norm", "num"),
    "tokens_per_s": ("throughput (tokens/s)", "num"),
}

#: The "too aggressive" forgetting band (%), shaded in the forgetting figures.
AGGRESSIVE_BAND = (10.0, 15.0)

# Colour maps of settings whose description names none (numeric axes: ordered; text: qualitative).
_DEFAULT_NUMERIC = ("plasma", 0.0, 0.8)
_DEFAULT_CATEGORICAL = "tab10"
MARKERS = ("o", "s", "^", "D", "v", "P", "X", "*", "<", ">")
LINESTYLES = ("-", "--", ":", "-.", (0, (5, 1, 1, 1)), (0, (1, 3)))
MISSING_COLOR = "#999999"


def col_name(col: str) -> str:
    """Readable name of a parameter column (``optim.lr`` -> ``learning rate``)."""
    d = describe(col)
    return d.label if d and d.label else col


#: Last key segments that say nothing on their own: ``data.name`` is shown as ``data``.
_GENERIC_KEYS = {"name", "source", "path", "type", "kind", "file"}


def col_short(col: str) -> str:
    d = describe(col)
    if d and d.short:
        return d.short
    parts = col.split(".")
    if len(parts) >= 2 and parts[-1] in _GENERIC_KEYS:
        return parts[-2] if parts[-1] == "name" else f"{parts[-2]} {parts[-1]}"
    return parts[-1]


def is_missing(v: Any) -> bool:
    if v is None:
        return True
    try:
        return bool(pd.isna(v))
    except (TypeError, ValueError):
        return False


def fmt_sci(v: float) -> str:
    """``0.0001`` -> ``1e-4``, ``0.0003`` -> ``3e-4``, ``2.5e-05`` -> ``2.5e-5``."""
    if v == 0:
        return "0"
    mant, exp = f"{v:.3e}".split("e")
    mant = mant.rstrip("0").rstrip(".")
    return f"{mant}e{int(exp)}"


def fmt_num(v: Any, digits: int = 3) -> str:
    """A number for people: ints as ints, small or large floats in short scientific form."""
    if is_missing(v):
        return "—"
    if isinstance(v, bool):
        return str(v).lower()
    if isinstance(v, (int,)) or (isinstance(v, float) and v.is_integer() and abs(v) < 1e6):
        return str(int(v))
    if not isinstance(v, (float, int)):
        try:
            v = float(v)
        except (TypeError, ValueError):
            return str(v)
    if not math.isfinite(v):
        return str(v)
    if abs(v) < 1e-3 or abs(v) >= 1e6:
        return fmt_sci(v)
    return f"{v:.{digits}g}"


def fmt_value(col: str | None, v: Any) -> str:
    """A parameter value as its setting's description says it prints (the learning rate in sci
    form, the replay ratio in %, a list of values with its brackets)."""
    if is_missing(v):
        return "—"
    d = describe(col)
    show = d.show if d else "plain"
    if isinstance(v, (int, float)) and not isinstance(v, bool):
        if show == "sci":
            return fmt_sci(float(v))
        if show == "percent":
            return f"{100 * float(v):.3g}%"
    if show == "list" and isinstance(v, (list, tuple)):
        return "[" + ", ".join(fmt_num(x) if isinstance(x, (int, float)) else str(x) for x in v) + "]"
    return fmt_num(v) if isinstance(v, (int, float)) else str(v)


def fmt_param(col: str, v: Any) -> str:
    """``lr 1e-4``, ``epochs 2``, ``replay 5%``, ``template alpaca``."""
    return f"{col_short(col)} {fmt_value(col, v)}"


def setting_label(values: dict[str, Any] | pd.Series, cols: Sequence[str], sep: str = ", ") -> str:
    if not cols:
        return "all jobs"
    return sep.join(fmt_param(c, values[c]) for c in cols)


def fmt_metric(metric: str, v: Any, *, signed: bool = False, ci: float | None = None) -> str:
    """A metric value with its unit: rates as % (``94%``), forgetting as signed % (``+16.1%``),
    losses with three decimals; with ``ci`` the 95% half-width follows (``+16.1 ± 0.4%``)."""
    if is_missing(v):
        return "—"
    base = metric.split("_", 1)[1] if metric.startswith(("final_", "base_")) else metric
    kind = METRICS.get(base, ("", "num"))[1]
    v = float(v)
    has_ci = ci is not None and not is_missing(ci)
    if kind == "rate":
        num, unit, scale = f"{100 * v:.{1 if has_ci else 0}f}", "%", 100.0
    elif kind == "pct":
        num = f"{v:+.1f}" if (signed or base == "forgetting_pct") else f"{v:.1f}"
        unit, scale = "%", 1.0
    elif kind == "loss":
        num, unit, scale = f"{v:.3f}", "", 1.0
    else:
        num, unit, scale = fmt_num(v), "", 1.0
    if has_ci:
        prec = 1 if unit == "%" else 3
        return f"{num} ± {scale * float(ci):.{prec}f}{unit}"
    return f"{num}{unit}"


def metric_label(metric: str) -> str:
    base = metric.split("_", 1)[1] if metric.startswith(("final_", "base_")) else metric
    return METRICS.get(base, (base, "num"))[0]


def metric_scale(metric: str) -> float:
    """Factor that turns stored values into plotted ones (rates 0-1 -> %)."""
    base = metric.split("_", 1)[1] if metric.startswith(("final_", "base_")) else metric
    return 100.0 if METRICS.get(base, ("", "num"))[1] == "rate" else 1.0


def sorted_values(values: Iterable[Any]) -> list[Any]:
    """Distinct non-missing values, numbers ascending, then text alphabetically."""
    seen: dict[Any, None] = {}
    for v in values:
        if not is_missing(v):
            seen.setdefault(v, None)
    nums = sorted(v for v in seen if isinstance(v, (int, float)) and not isinstance(v, bool))
    rest = sorted((v for v in seen if not (isinstance(v, (int, float)) and not isinstance(v, bool))),
                  key=str)
    return nums + rest


class Palette:
    """Colour, marker and line style per (column, value), fixed for one report.

    Numeric axes get an ordered colour map (low lr dark, high lr light), text axes a
    qualitative one; every figure asks the same palette, so ``lr 1e-4`` has one colour
    throughout.
    """

    def __init__(self, jobs: pd.DataFrame, columns: Sequence[str]) -> None:
        from matplotlib import colormaps

        self._colors: dict[str, dict[Any, Any]] = {}
        self._index: dict[str, dict[Any, int]] = {}
        for col in columns:
            values = sorted_values(jobs[col]) if col in jobs else []
            self._index[col] = {v: i for i, v in enumerate(values)}
            colors = getattr(describe(col), "colors", None)
            numeric = values and all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in values)
            if numeric:
                name, lo, hi = colors if isinstance(colors, tuple) else _DEFAULT_NUMERIC
                cmap = colormaps[name]
                n = len(values)
                pos = [lo + (hi - lo) * (i / (n - 1) if n > 1 else 0.5) for i in range(n)]
                self._colors[col] = {v: cmap(p) for v, p in zip(values, pos)}
            else:
                cmap = colormaps[colors if isinstance(colors, str) else _DEFAULT_CATEGORICAL]
                self._colors[col] = {v: cmap(i % cmap.N) for i, v in enumerate(values)}

    def color(self, col: str | None, value: Any) -> Any:
        if col is None:
            return "#1f77b4"
        return self._colors.get(col, {}).get(value, MISSING_COLOR)

    def marker(self, col: str | None, value: Any) -> str:
        if col is None:
            return "o"
        return MARKERS[self._index.get(col, {}).get(value, 0) % len(MARKERS)]

    def linestyle(self, col: str | None, value: Any) -> Any:
        if col is None:
            return "-"
        return LINESTYLES[self._index.get(col, {}).get(value, 0) % len(LINESTYLES)]
