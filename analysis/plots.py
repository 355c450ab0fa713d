"""Figures of a sweep, as PNG files.

Every function takes a ``RunSet`` and an output directory and returns the path of the PNG it
wrote, or ``None`` when the sweep lacks what the figure needs (the learning-rate comparison of
a sweep that did not vary the learning rate, ...). Only completed jobs are drawn.

Conventions in all figures: the title says what the figure answers and the subtitle how to
read it, axes carry units, the learning rate is on a log axis, legends sit outside the data,
and a value keeps its colour in every figure (``Palette``). With several seeds a curve is the
seed mean with the seeds' range as a band, a final value the seed mean with its 95% confidence
interval as error bar, and ``n`` (completed seeds) is shown.

Matplotlib is used through ``Figure`` objects only (no pyplot), so importing this module
never changes the caller's backend and works headless.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from matplotlib.figure import Figure
from matplotlib.lines import Line2D
from matplotlib.patches import Patch
from matplotlib.ticker import (
    FixedLocator, FuncFormatter, MaxNLocator, NullFormatter, NullLocator, PercentFormatter,
)

from analysis.collect import RunSet
from analysis.stats import aggregate, mean_ci, pareto_mask, t_quantile_975
from analysis.style import (
    AGGRESSIVE_BAND, Palette, col_name, fmt_param, fmt_sci, fmt_value, metric_label,
    metric_scale, setting_label, sorted_values,
)
from sft_sweep.jobfiles import atomic_path, forgetting_pct

DPI = 110
PANEL_W, PANEL_H = 4.6, 3.3
BAND_COLOR = "#d62728"
BASE_COLOR = "#7f7f7f"
FACET_MAX_COLS = 4

__all__ = [
    "PLOTS", "plot_all", "plot_lr_comparison", "plot_forgetting", "plot_forgetting_curves",
    "plot_mixing", "plot_tradeoff", "plot_categories", "plot_seeds", "plot_base_vs_tuned",
    "make_palette",
]


def make_palette(runs: RunSet) -> Palette:
    return Palette(runs.jobs, runs.swept)


# ======================================================================================
# Shared helpers
# ======================================================================================


def _grid(nrows: int, ncols: int, *, w: float = PANEL_W, h: float = PANEL_H) -> tuple[Figure, np.ndarray]:
    fig = Figure(figsize=(w * ncols, h * nrows), layout="constrained")
    axes = fig.subplots(nrows, ncols, squeeze=False)
    return fig, axes


def _save(fig: Figure, out_dir: Path, name: str) -> Path:
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    path = out_dir / f"{name}.png"
    with atomic_path(path) as tmp:
        fig.savefig(tmp, dpi=DPI, facecolor="white", format="png")
    return path


def _header(fig: Figure, title: str, subtitle: str) -> None:
    """Bold title and a smaller explanatory subtitle above the panels.

    The figure grows by the header's height and the layout engine keeps the panels below it,
    so nothing overlaps and no "tight" bounding-box pass (a second full draw) is needed.
    """
    n_lines = subtitle.count("\n") + 1
    title_pt, sub_pt, pad_pt = 13, 9, 6
    header_in = (pad_pt + title_pt * 1.35 + 3 + n_lines * sub_pt * 1.3 + pad_pt) / 72
    w, h = fig.get_size_inches()
    longest_sub = max(len(line) for line in subtitle.split("\n"))
    w = max(w, 0.112 * len(title) + 0.6, 0.072 * longest_sub + 0.6)  # room for the text itself
    total = h + header_in
    fig.set_size_inches(w, total)
    fig.get_layout_engine().set(rect=(0, 0, 1, h / total))
    y_title = 1 - (pad_pt / 72) / total
    y_sub = 1 - ((pad_pt + title_pt * 1.35 + 3) / 72) / total
    fig.text(0.5, y_title, title, ha="center", va="top", fontsize=title_pt, fontweight="bold")
    fig.text(0.5, y_sub, subtitle, ha="center", va="top", fontsize=sub_pt, color="#333333",
             linespacing=1.3)


def _legend(fig: Figure, handles: list, labels: list, title: str | None = None):
    """One legend for the figure, right of the panels (the layout engine makes room for it)."""
    if not handles:
        return None
    return fig.legend(handles, labels, title=title, loc="outside right center", frameon=False,
                      fontsize=9, title_fontsize=9, alignment="left")


def _log_lr_axis(ax, values: Sequence[float]) -> None:
    ax.set_xscale("log")
    vals = sorted(v for v in values if v and v > 0)
    if not vals:
        return
    if len(vals) <= 6:  # a tick at every swept value
        ax.set_xticks(vals)
        ax.set_xticklabels([fmt_sci(v) for v in vals])
    else:  # many values (a search): decades only
        ax.xaxis.set_major_formatter(FuncFormatter(lambda v, _: fmt_sci(v)))
    ax.xaxis.set_minor_formatter(NullFormatter())
    ax.set_xlim(vals[0] / 2.0, vals[-1] * 2.0)


def _shade_band(ax, *, vertical: bool = False) -> None:
    lo, hi = AGGRESSIVE_BAND
    if vertical:
        ax.axvspan(lo, hi, color=BAND_COLOR, alpha=0.10, lw=0, zorder=0)
        ax.axvline(lo, color=BAND_COLOR, lw=0.8, ls=":", zorder=0)
    else:
        ax.axhspan(lo, hi, color=BAND_COLOR, alpha=0.10, lw=0, zorder=0)
        ax.axhline(lo, color=BAND_COLOR, lw=0.8, ls=":", zorder=0)


def _band_handle() -> Patch:
    lo, hi = AGGRESSIVE_BAND
    return Patch(facecolor=BAND_COLOR, alpha=0.18, label=f"{lo:g}–{hi:g}% forgetting: too aggressive")


def _facets(done: pd.DataFrame, cols: Sequence[str]) -> list[tuple[dict[str, Any], pd.DataFrame]]:
    """Sub-tables of ``done`` per combination of ``cols`` (one facet when ``cols`` is empty)."""
    if not cols:
        return [({}, done)]
    out = []
    for key, part in done.groupby(list(cols), dropna=False, sort=True):
        key = key if isinstance(key, tuple) else (key,)
        out.append((dict(zip(cols, key)), part))
    order = {c: {v: i for i, v in enumerate(sorted_values(done[c]))} for c in cols}
    out.sort(key=lambda kv: tuple(order[c].get(kv[0][c], -1) for c in cols))
    return out


MAX_FACETS = 12
#: More line series than this (a search) are not drawn one per combination.
MAX_SERIES = 8


def _facet_cols(done: pd.DataFrame, cols: Sequence[str]) -> list[str]:
    """The settings to split panels by: none when that would give more than ``MAX_FACETS``
    panels (a random / Optuna search, where every job has its own combination)."""
    cols = list(cols)
    n = len(done.groupby(cols, dropna=False)) if cols and not done.empty else 1
    return cols if n <= MAX_FACETS else []


def _facet_ncols(done: pd.DataFrame, facet_cols: Sequence[str], n_facets: int) -> int:
    """Columns of the facet grid: the values of the last facet setting when the facets form a
    full grid (rows then read as the other setting), else a balanced wrap of at most 4."""
    if len(facet_cols) >= 2:
        n_last = len(_values(done, facet_cols[-1]))
        if 2 <= n_last <= 5 and n_facets % n_last == 0:
            return n_last
    blocks = math.ceil(n_facets / FACET_MAX_COLS)
    return max(1, math.ceil(n_facets / blocks))


def _mean_curve(rows: pd.DataFrame) -> pd.DataFrame:
    """Per step: mean over jobs, 95% CI half-width and number of jobs (rows: job, step, value)."""
    table = rows.pivot_table(index="step", columns="job", values="value", aggfunc="mean")
    n = table.count(axis=1)
    mean = table.mean(axis=1)
    std = table.std(axis=1, ddof=1)
    t = n.map(lambda k: t_quantile_975(int(k) - 1) if k >= 2 else math.nan)
    ci = t * std / np.sqrt(n)
    return pd.DataFrame({"step": table.index.to_numpy(), "mean": mean.to_numpy(),
                         "ci": ci.to_numpy(), "n": n.to_numpy(),
                         "min": table.min(axis=1).to_numpy(), "max": table.max(axis=1).to_numpy()})


def _smooth(rows: pd.DataFrame) -> pd.DataFrame:
    """Exponential moving average of each job's curve (span ~ 1/20 of its points)."""
    parts = []
    for _, part in rows.sort_values("step").groupby("job", sort=False):
        span = max(1, round(len(part) / 20))
        part = part.copy()
        if span > 1:
            part["value"] = part["value"].ewm(span=span, adjust=True).mean()
        parts.append(part)
    return pd.concat(parts, ignore_index=True) if parts else rows


def _with_n(label: str, ns: Sequence[int], runs: RunSet) -> str:
    """``label (n=2)`` when the sweep has seeds (how many completed), else just ``label``."""
    return f"{label} ({_n_text(ns)})" if runs.seeds else label


def _range_err(values: pd.Series) -> list[list[float]]:
    """Error-bar extents from the mean down to the min and up to the max (never negative)."""
    m = float(values.mean())
    return [[max(0.0, m - float(values.min()))], [max(0.0, float(values.max()) - m)]]


def _n_text(ns: Sequence[int]) -> str:
    ns = sorted({int(n) for n in ns if n and not pd.isna(n)})
    if not ns:
        return "n=0"
    return f"n={ns[0]}" if len(ns) == 1 else f"n={ns[0]}–{ns[-1]}"


def _status_note(runs: RunSet) -> str:
    total = len(runs.jobs)
    done = int(runs.jobs["done"].sum())
    if done == total:
        return f"{done} jobs"
    other = {k: v for k, v in runs.status_counts().items() if k not in ("completed", "skipped")}
    rest = ", ".join(f"{v} {k}" for k, v in sorted(other.items()))
    return f"{done} of {total} jobs completed ({rest}: not shown)"


def _seed_note(runs: RunSet, *, curves: bool = False) -> str:
    n = runs.n_seeds()
    if runs.seeds and n > 1:
        if curves:
            return f"line = mean of up to {n} seeds, band = range over the seeds"
        return f"mean of up to {n} seeds, error bars = 95% CI"
    return "one run per setting (no seed replicates)"


def _missing_note(ax, col: str, wanted: Sequence[Any], shown: Sequence[Any]) -> None:
    """Say inside a facet which values have no completed job there."""
    missing = [v for v in wanted if v not in set(shown)]
    if missing:
        ax.text(0.98, 0.98, "no completed job: " + ", ".join(fmt_param(col, v) for v in missing),
                transform=ax.transAxes, ha="right", va="top", fontsize=7.5, color="#555555",
                bbox=dict(boxstyle="round,pad=0.2", fc="white", ec="#cccccc", alpha=0.9))


def _facet_title(key: dict[str, Any]) -> str:
    return setting_label(key, list(key)) if key else ""


def _y_percent(ax) -> None:
    ax.yaxis.set_major_formatter(PercentFormatter(decimals=0))


def _signed_percent(ax, axis: str = "y") -> None:
    target = ax.yaxis if axis == "y" else ax.xaxis
    target.set_major_locator(MaxNLocator(nbins=7, steps=[1, 2, 5, 10]))
    target.set_major_formatter(FuncFormatter(lambda v, _: f"{v:+.0f}%" if v else "0%"))


#: Forgetting above this (%) switches its axis to a symmetric log scale, so that a sweep with
#: +10% and +700% jobs still shows the small values and the 10-15% band.
SYMLOG_ABOVE = 150.0
_NICE = (0, 5, 10, 20, 50, 100, 200, 500, 1000, 2000, 5000, 10000)


def _forgetting_axis(ax, values, axis: str = "y") -> str:
    """Scale, limits and % ticks of a forgetting axis (0 and the band always in view).

    Returns the label suffix to append (a second line "(log scale above 10%)" with symlog).
    """
    vals = np.asarray([v for v in values if v is not None and np.isfinite(v)], dtype=float)
    lo = min(float(vals.min()) if vals.size else 0.0, 0.0)
    hi = max(float(vals.max()) if vals.size else 0.0, AGGRESSIVE_BAND[1] + 2)
    set_scale, set_lim = (ax.set_yscale, ax.set_ylim) if axis == "y" else (ax.set_xscale, ax.set_xlim)
    target = ax.yaxis if axis == "y" else ax.xaxis
    if hi <= SYMLOG_ABOVE and lo >= -SYMLOG_ABOVE:
        pad = 0.07 * (hi - lo)
        set_lim(lo - pad, hi + pad)
        _signed_percent(ax, axis)
        return ""
    lin = AGGRESSIVE_BAND[0]
    set_scale("symlog", linthresh=lin, linscale=0.6)
    set_lim(lo * 1.3 - 1 if lo < 0 else -1, hi * 1.3)
    nice = _NICE if axis == "y" else (0, 10, 100, 1000, 10000)  # an x axis has less room for labels
    ticks = [t for t in nice if t <= hi * 1.3] + [-t for t in nice if t and -t >= lo * 1.3]
    target.set_major_locator(FixedLocator(sorted(ticks)))
    target.set_minor_locator(NullLocator())
    target.set_major_formatter(FuncFormatter(lambda v, _: f"{v:+.0f}%" if v else "0%"))
    return f"\n(log scale above {lin:g}%)"


def _values(df: pd.DataFrame, col: str) -> list:
    return sorted_values(df[col]) if col in df else []


# ======================================================================================
# Learning-rate comparison
# ======================================================================================


def plot_lr_comparison(runs: RunSet, out_dir: str | Path, palette: Palette | None = None) -> Path | None:
    """Training loss and held-out response loss against step, one line per learning rate,
    one column per combination of the other swept settings."""
    lr = runs.axis("lr")
    done = runs.done_jobs()
    if lr is None or len(_values(done, lr)) < 2:
        return None
    palette = palette or make_palette(runs)
    cur = runs.done_curves()
    rows = []
    train = cur[(cur["kind"] == "train") & (cur["metric"] == "loss")]
    if not train.empty:
        rows.append(("train", _smooth(train), "training loss (nats/token)", "training loss (smoothed)"))
    resp = cur[(cur["kind"] == "eval") & (cur["metric"] == "response_loss")]
    if not resp.empty:
        rows.append(("eval", resp, "response loss (nats/token)", "held-out response loss"))
    if not rows:
        return None

    facet_cols = _facet_cols(done, [c for c in runs.params if c != lr])
    facets = _facets(done, facet_cols)
    ncols = _facet_ncols(done, facet_cols, len(facets))
    blocks = math.ceil(len(facets) / ncols)
    fig, axes = _grid(len(rows) * blocks, ncols)
    lrs = _values(done, lr)
    ns: dict[Any, list[int]] = {v: [] for v in lrs}
    ylims: dict[str, list[float]] = {name: [] for name, *_ in rows}
    for fi, (key, part) in enumerate(facets):
        block, col = divmod(fi, ncols)
        for ri, (name, data, ylabel, what) in enumerate(rows):
            ax = axes[block * len(rows) + ri, col]
            shown = []
            for v in lrs:
                jobs = part.loc[part[lr] == v, "job"]
                sub = data[data["job"].isin(set(jobs))]
                if sub.empty:
                    continue
                shown.append(v)
                mc = _mean_curve(sub)
                color = palette.color(lr, v)
                ax.plot(mc["step"], mc["mean"], color=color, lw=1.8,
                        marker="o" if name == "eval" else None, ms=3.5)
                if (mc["n"] > 1).any():
                    ax.fill_between(mc["step"], mc["min"], mc["max"], color=color, alpha=0.18, lw=0)
                ns[v].append(int(mc["n"].max()))
                ylims[name] += [float(np.nanmin(mc["mean"])), float(np.nanmax(mc["mean"]))]
            _missing_note(ax, lr, lrs, shown)
            ax.set_xlabel("optimizer step")
            ax.set_ylabel(ylabel)
            title = what + (f"\n{_facet_title(key)}" if key else "")
            ax.set_title(title, fontsize=10)
            ax.grid(alpha=0.3)
    # Same y range per metric across facets, so the facets compare directly.
    for block in range(blocks):
        for ri, (name, *_rest) in enumerate(rows):
            lo, hi = min(ylims[name], default=0), max(ylims[name], default=1)
            pad = 0.05 * (hi - lo or 1)
            for col in range(ncols):
                axes[block * len(rows) + ri, col].set_ylim(lo - pad, hi + pad)
    for fi in range(len(facets), blocks * ncols):
        block, col = divmod(fi, ncols)
        for ri in range(len(rows)):
            axes[block * len(rows) + ri, col].set_visible(False)

    handles = [Line2D([], [], color=palette.color(lr, v), lw=2.5) for v in lrs]
    labels = [_with_n(fmt_value(lr, v), ns[v], runs) for v in lrs]
    _legend(fig, handles, labels, title=f"{col_name(lr)} ({lr})")
    by = f"; columns: {', '.join(col_name(c) for c in facet_cols)}" if facet_cols else ""
    _header(fig, "Learning-rate comparison: how fast and how far each lr learns",
            f"{_status_note(runs)}; {_seed_note(runs, curves=True)}{by}")
    return _save(fig, out_dir, "lr_comparison")


# ======================================================================================
# Forgetting
# ======================================================================================


def _series_cols(runs: RunSet, exclude: Sequence[str]) -> tuple[str | None, str | None]:
    """Which swept settings become colour and line style (epochs and replay first)."""
    rest = [c for c in runs.params if c not in exclude]
    pref = [c for c in rest if runs.axis("epochs") == c or runs.axis("replay") == c]
    ordered = pref + [c for c in rest if c not in pref]
    return (ordered[0] if ordered else None), (ordered[1] if len(ordered) > 1 else None)


def plot_forgetting(runs: RunSet, out_dir: str | Path, palette: Palette | None = None) -> Path | None:
    """Raw-text loss change (%) against learning rate, one line per epochs / replay ratio,
    with the 10-15% "too aggressive" band shaded."""
    lr = runs.axis("lr")
    done = runs.done_jobs()
    if lr is None or "forgetting_pct" not in done or len(_values(done, lr)) < 2:
        return None
    done = done[done["forgetting_pct"].notna()]
    if done.empty:
        return None
    palette = palette or make_palette(runs)
    color_col, style_col = _series_cols(runs, [lr])
    extra = [c for c in runs.params if c not in (lr, color_col, style_col)]
    group_cols = [c for c in (color_col, style_col) if c] + extra
    if group_cols and len(done.groupby(group_cols, dropna=False)) > MAX_SERIES:
        color_col = style_col = None  # a search: one line through all jobs, not one per job
        group_cols = []

    fig, axes = _grid(1, 1, w=6.2, h=4.2)
    ax = axes[0, 0]
    _shade_band(ax)
    ax.axhline(0, color="black", lw=0.8)
    agg = aggregate(done, [lr] + group_cols, "forgetting_pct")
    handles, labels = [], []
    series = list(agg.groupby(group_cols, dropna=False, sort=True)) if group_cols else [((), agg)]
    annotate = len(series) <= 3 and len(agg) <= 15
    for si, (key, part) in enumerate(series):
        key = key if isinstance(key, tuple) else (key,)
        kd = dict(zip(group_cols, key))
        # Nudge the series apart on the log axis so error bars at the same lr do not overlap.
        dodge = 10 ** (0.025 * (si - (len(series) - 1) / 2))
        part = part.sort_values(lr)
        color = palette.color(color_col, kd.get(color_col)) if color_col else palette.color(lr, None)
        if not color_col:
            color = "#1f4e79"
        ls = palette.linestyle(style_col, kd.get(style_col)) if style_col else "-"
        marker = palette.marker(style_col, kd.get(style_col)) if style_col else "o"
        ax.errorbar(part[lr] * dodge, part["mean"], yerr=part["ci"].fillna(0), color=color, ls=ls,
                    marker=marker, ms=6, lw=1.8, capsize=4)
        # individual jobs (seeds) as small dots behind the mean
        mask = np.ones(len(done), dtype=bool)
        for c, v in kd.items():
            mask &= (done[c] == v).to_numpy()
        pts = done[mask]
        if runs.seeds and len(pts) > len(part):
            ax.scatter(pts[lr] * dodge, pts["forgetting_pct"], color=color, s=12, alpha=0.5, zorder=1, lw=0)
        if annotate:
            for x, y in zip(part[lr] * dodge, part["mean"]):
                ax.annotate(f"{y:+.1f}%", (x, y), textcoords="offset points", xytext=(9, 0),
                            va="center", fontsize=8, color=color)
        handles.append(Line2D([], [], color=color, ls=ls, marker=marker, lw=1.8))
        labels.append(_with_n(setting_label(kd, group_cols) if group_cols else "all jobs", part["n"], runs))
    _log_lr_axis(ax, _values(done, lr))
    ax.set_xlabel(f"{col_name(lr)} ({lr}, log scale)")
    extent = list(agg["mean"] + agg["ci"].fillna(0)) + list(agg["mean"] - agg["ci"].fillna(0)) \
        + list(done["forgetting_pct"])
    suffix = _forgetting_axis(ax, extent)
    ax.set_ylabel("raw-text loss change vs base model (%)" + suffix)
    ax.grid(alpha=0.3)
    handles.append(_band_handle())
    labels.append(_band_handle().get_label())
    _legend(fig, handles, labels, title=", ".join(col_name(c) for c in group_cols) or None)
    _header(fig, "Forgetting: how much the tuned model lost on pre-training text",
            "100 × (raw-text loss after SFT − base) / base; higher = more forgotten\n"
            f"{_status_note(runs)}; {_seed_note(runs)}"
            + ("; small dots = single seeds" if runs.seeds and runs.n_seeds() > 1 else ""))
    return _save(fig, out_dir, "forgetting_vs_lr")


def _forgetting_rows(runs: RunSet) -> pd.DataFrame:
    """Eval rows as raw-text loss change (%) relative to each job's step-0 (base) value."""
    cur = runs.done_curves()
    raw = cur[(cur["kind"] == "eval") & (cur["metric"] == "raw_loss")][["job", "step", "value"]]
    if raw.empty:
        return raw
    base = raw.sort_values("step").groupby("job")["value"].first()
    first_step = raw.groupby("job")["step"].min()
    jobs = runs.done_jobs().set_index("job")
    if "base_raw_loss" in jobs:
        # Jobs whose eval rows do not start at step 0 use the summary's base evaluation.
        use_summary = first_step[first_step > 0].index
        base.loc[use_summary] = jobs.loc[use_summary, "base_raw_loss"]
    raw = raw.assign(value=forgetting_pct(raw["job"].map(base), raw["value"]))
    return raw[np.isfinite(raw["value"])]


def plot_forgetting_curves(runs: RunSet, out_dir: str | Path, palette: Palette | None = None) -> Path | None:
    """Raw-text loss change (%) against step (from the eval rows, relative to step 0), one
    line per learning rate (or per the first swept setting), faceted by the other settings."""
    rows = _forgetting_rows(runs)
    done = runs.done_jobs()
    if rows.empty or rows["step"].nunique() < 2:
        return None
    palette = palette or make_palette(runs)
    color_col = runs.axis("lr") or (runs.params[0] if runs.params else None)
    facet_cols = _facet_cols(done, [c for c in runs.params if c != color_col])
    facets = _facets(done, facet_cols)
    ncols = _facet_ncols(done, facet_cols, len(facets))
    nrows = math.ceil(len(facets) / ncols)
    fig, axes = _grid(nrows, ncols)
    values = _values(done, color_col) if color_col else [None]
    ns: dict[Any, list[int]] = {v: [] for v in values}
    lo, hi = 0.0, AGGRESSIVE_BAND[1] + 2
    for fi, (key, part) in enumerate(facets):
        ax = axes.flat[fi]
        _shade_band(ax)
        ax.axhline(0, color="black", lw=0.8)
        shown = []
        for v in values:
            jobs = part["job"] if color_col is None else part.loc[part[color_col] == v, "job"]
            sub = rows[rows["job"].isin(set(jobs))]
            if sub.empty:
                continue
            shown.append(v)
            mc = _mean_curve(sub)
            color = palette.color(color_col, v) if color_col else "#1f4e79"
            ax.plot(mc["step"], mc["mean"], color=color, lw=1.8, marker="o", ms=3.5)
            if (mc["n"] > 1).any():
                ax.fill_between(mc["step"], mc["min"], mc["max"], color=color, alpha=0.18, lw=0)
            ns[v].append(int(mc["n"].max()))
            lo = min(lo, float(np.nanmin(mc["mean"])))
            hi = max(hi, float(np.nanmax(mc["mean"])))
        if color_col:
            _missing_note(ax, color_col, values, shown)
        ax.set_title(_facet_title(key) or "all jobs", fontsize=10)
        ax.set_xlabel("optimizer step")
        ax.grid(alpha=0.3)
    for fi in range(len(facets)):
        suffix = _forgetting_axis(axes.flat[fi], [lo, hi])
        axes.flat[fi].set_ylabel("raw-text loss change vs step 0 (%)" + suffix)
    for fi in range(len(facets), nrows * ncols):
        axes.flat[fi].set_visible(False)
    handles = [Line2D([], [], color=palette.color(color_col, v) if color_col else "#1f4e79", lw=2.5)
               for v in values]
    labels = [_with_n(fmt_value(color_col, v) if color_col else "all jobs", ns[v], runs)
              for v in values]
    handles.append(_band_handle())
    labels.append(_band_handle().get_label())
    _legend(fig, handles, labels, title=f"{col_name(color_col)} ({color_col})" if color_col else None)
    _header(fig, "Forgetting during training: raw-text loss relative to the base model",
            "eval rows: 100 × (raw-text loss − its value at step 0) / value at step 0\n"
            f"{_status_note(runs)}; {_seed_note(runs, curves=True)}")
    return _save(fig, out_dir, "forgetting_vs_step")


# ======================================================================================
# Mixing
# ======================================================================================


def plot_mixing(runs: RunSet, out_dir: str | Path, palette: Palette | None = None) -> Path | None:
    """Forgetting and follow rate against the replay ratio, one line per learning rate."""
    rp = runs.axis("replay")
    done = runs.done_jobs()
    if rp is None or len(_values(done, rp)) < 2:
        return None
    metrics = [m for m in ("forgetting_pct", "final_follow_rate", "final_answer_acc")
               if m in done and done[m].notna().any()][:2]
    if not metrics:
        return None
    palette = palette or make_palette(runs)
    color_col, style_col = _series_cols(runs, [rp])
    if runs.axis("lr") and runs.axis("lr") != rp:
        color_col = runs.axis("lr")
        style_col = next((c for c in runs.params if c not in (rp, color_col)), None)
    group_cols = [c for c in (color_col, style_col) if c]
    group_cols += [c for c in runs.params if c not in group_cols and c != rp]
    if group_cols and len(done.groupby(group_cols, dropna=False)) > MAX_SERIES:
        color_col = style_col = None
        group_cols = []
    fig, axes = _grid(1, len(metrics))
    handles, labels = {}, {}
    for ax, m in zip(axes.flat, metrics):
        scale = metric_scale(m)
        agg = aggregate(done.dropna(subset=[m]), [rp] + group_cols, m)
        if m == "forgetting_pct":
            _shade_band(ax)
            ax.axhline(0, color="black", lw=0.8)
        groups = agg.groupby(group_cols, dropna=False, sort=True) if group_cols else [((), agg)]
        for key, part in groups:
            key = key if isinstance(key, tuple) else (key,)
            kd = dict(zip(group_cols, key))
            part = part.sort_values(rp)
            color = palette.color(color_col, kd.get(color_col)) if color_col else "#1f4e79"
            ls = palette.linestyle(style_col, kd.get(style_col)) if style_col else "-"
            marker = palette.marker(style_col, kd.get(style_col)) if style_col else "o"
            ax.errorbar(100 * part[rp].astype(float), scale * part["mean"], yerr=scale * part["ci"].fillna(0),
                        color=color, ls=ls, marker=marker, ms=6, lw=1.8, capsize=4)
            label = (setting_label(kd, group_cols) if group_cols else "all jobs")
            handles[label] = Line2D([], [], color=color, ls=ls, marker=marker, lw=1.8)
            labels.setdefault(label, []).extend(part["n"].tolist())
        ax.set_xlabel(f"{col_name(rp)} ({rp})")
        ax.margins(x=0.08)
        ax.set_ylabel(metric_label(m))
        ax.xaxis.set_major_formatter(PercentFormatter(decimals=0))
        ax.set_xticks([100 * float(v) for v in _values(done, rp)])
        if m == "forgetting_pct":
            ax.set_ylabel(metric_label(m) + _forgetting_axis(ax, done[m]))
        else:
            _y_percent(ax)
        ax.set_title({"forgetting_pct": "forgetting"}.get(m, metric_label(m).split(" (")[0]), fontsize=10)
        ax.grid(alpha=0.3)
    hl = list(handles.values()) + [_band_handle()]
    ll = [_with_n(k, v, runs) for k, v in labels.items()] + [_band_handle().get_label()]
    _legend(fig, hl, ll, title=", ".join(col_name(c) for c in group_cols) or None)
    _header(fig, "Mixing pre-training text back in: forgetting and follow rate vs replay ratio",
            "replay ratio = share of training sequences that are raw pre-training text\n"
            f"{_status_note(runs)}; {_seed_note(runs)}")
    return _save(fig, out_dir, "mixing")


# ======================================================================================
# Trade-off
# ======================================================================================


def plot_tradeoff(runs: RunSet, out_dir: str | Path, palette: Palette | None = None) -> Path | None:
    """Follow rate and answer accuracy against forgetting, one point per job, Pareto front marked."""
    done = runs.done_jobs()
    if "forgetting_pct" not in done:
        return None
    metrics = [m for m in ("final_follow_rate", "final_answer_acc")
               if m in done and done[["forgetting_pct", m]].dropna().shape[0] >= 2]
    if not metrics:
        return None
    palette = palette or make_palette(runs)
    color_col = runs.axis("lr") or (runs.params[0] if runs.params else None)
    marker_col = next((c for c in runs.params if c != color_col), None)
    fig, axes = _grid(1, len(metrics), w=5.0, h=3.9)
    for ax, m in zip(axes.flat, metrics):
        pts = done.dropna(subset=["forgetting_pct", m])
        scale = metric_scale(m)
        _shade_band(ax, vertical=True)
        for _, row in pts.iterrows():
            ax.scatter(row["forgetting_pct"], scale * row[m],
                       color=palette.color(color_col, row[color_col]) if color_col else "#1f4e79",
                       marker=palette.marker(marker_col, row[marker_col]) if marker_col else "o",
                       s=46, edgecolors="white", linewidths=0.6, zorder=3)
        front = pts[pareto_mask(pts, maximize=[m], minimize=["forgetting_pct"])]
        front = front.sort_values("forgetting_pct")
        ax.plot(front["forgetting_pct"], scale * front[m], color="black", lw=1.2, ls="--",
                drawstyle="steps-post", zorder=2)
        ax.scatter(front["forgetting_pct"], scale * front[m], s=150, facecolors="none",
                   edgecolors="black", linewidths=1.3, zorder=4)
        # Name the front's jobs only when that stays readable; the report lists them anyway.
        if len(front) <= 4 and len(runs.swept) <= 2:
            ys = scale * pts[m]
            low_band = float(ys.min()) + 0.2 * (float(ys.max()) - float(ys.min()))
            for _, row in front.iterrows():
                below = scale * row[m] > low_band  # labels near the bottom go above the point
                ax.annotate(setting_label(row, runs.swept, sep="\n") if runs.swept else row["job"],
                            (row["forgetting_pct"], scale * row[m]), textcoords="offset points",
                            xytext=(9, -2 if below else 4), fontsize=7, va="top" if below else "bottom",
                            color="#222222")
        suffix = _forgetting_axis(ax, pts["forgetting_pct"], "x")
        ax.set_xlabel("forgetting: raw-text loss change vs base (%)" + suffix)
        ax.set_ylabel(metric_label(m))
        _y_percent(ax)
        ax.set_title(f"{metric_label(m).split(' (')[0]} vs forgetting", fontsize=10)
        ax.grid(alpha=0.3)
    handles, labels = [], []
    if color_col:
        for v in _values(done, color_col):
            handles.append(Line2D([], [], color=palette.color(color_col, v), marker="o", ls="", ms=7))
            labels.append(fmt_param(color_col, v))
    if marker_col:
        for v in _values(done, marker_col):
            handles.append(Line2D([], [], color="#555555", marker=palette.marker(marker_col, v), ls="", ms=7))
            labels.append(fmt_param(marker_col, v))
    handles.append(Line2D([], [], color="black", ls="--", marker="o", mfc="none", ms=10))
    labels.append("Pareto front")
    handles.append(_band_handle())
    labels.append(_band_handle().get_label())
    _legend(fig, handles, labels)
    _header(fig, "Trade-off: what each job gained against what it forgot",
            "one point per completed job; up-left is better; circled = Pareto front (no other job\n"
            f"is better on both axes); {_status_note(runs)}")
    return _save(fig, out_dir, "tradeoff")


# ======================================================================================
# Templates / formats and other text-valued settings
# ======================================================================================


def _categorical_cols(runs: RunSet) -> list[str]:
    done = runs.done_jobs()
    out = []
    for c in runs.params:
        vals = _values(done, c)
        if len(vals) >= 2 and not all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in vals):
            out.append(c)
    return out


def plot_categories(runs: RunSet, out_dir: str | Path, palette: Palette | None = None) -> Path | None:
    """Templates, data formats, models (any swept text-valued setting) side by side: final
    follow rate, answer accuracy, forgetting and response loss per value, grouped by lr."""
    cats = _categorical_cols(runs)
    done = runs.done_jobs()
    if not cats:
        return None
    metrics = [m for m in ("final_follow_rate", "final_answer_acc", "forgetting_pct", "final_response_loss")
               if m in done and done[m].notna().any()]
    if not metrics:
        return None
    palette = palette or make_palette(runs)
    fig, axes = _grid(len(cats), len(metrics), w=3.9, h=3.2)
    legend_cols = set()
    pooled_any = False
    for ri, cat in enumerate(cats):
        group = runs.axis("lr") if runs.axis("lr") not in (None, cat) else next(
            (c for c in runs.params if c != cat), None)
        if group:
            legend_cols.add(group)
        # Settings neither on the x axis nor in the bar colour are averaged over: whiskers then
        # show their range, not a seed CI (which would mix real effects into "noise").
        pooled = [c for c in runs.params if c not in (cat, group)]
        pooled_any |= bool(pooled)
        cvals = _values(done, cat)
        gvals = _values(done, group) if group else [None]
        width = 0.8 / len(gvals)
        for ci_, m in enumerate(metrics):
            ax = axes[ri, ci_]
            scale = metric_scale(m)
            data = done.dropna(subset=[m])
            for gi, g in enumerate(gvals):
                sub = data if group is None else data[data[group] == g]
                xs, ys, lo, hi = [], [], [], []
                for xi, cv in enumerate(cvals):
                    vals = sub.loc[sub[cat] == cv, m].astype(float)
                    if vals.empty:
                        continue
                    mean = float(vals.mean())
                    if pooled:
                        low, high = float(vals.min()), float(vals.max())
                    else:
                        ci = mean_ci(vals).half
                        low, high = (mean, mean) if math.isnan(ci) else (mean - ci, mean + ci)
                    xs.append(xi - 0.4 + width * (gi + 0.5))
                    ys.append(scale * mean)
                    lo.append(max(0.0, scale * (mean - low)))  # rounding must not make it negative
                    hi.append(max(0.0, scale * (high - mean)))
                ax.bar(xs, ys, width=width * 0.92, yerr=[lo, hi], capsize=3,
                       color=palette.color(group, g) if group else palette.color(cat, cvals[0]),
                       edgecolor="white", lw=0.5)
            ax.set_xticks(range(len(cvals)))
            ax.set_xticklabels([fmt_value(cat, v) for v in cvals], rotation=20 if len(cvals) > 3 else 0)
            ax.set_xlabel(f"{col_name(cat)} ({cat})")
            ax.set_ylabel(metric_label(m), fontsize=8)
            if m == "forgetting_pct":
                _shade_band(ax)
                ax.axhline(0, color="black", lw=0.8)
                ax.set_ylabel(metric_label(m) + _forgetting_axis(ax, done[m]), fontsize=8)
            elif scale == 100.0:
                _y_percent(ax)
            ax.grid(alpha=0.3, axis="y")
            ax.set_title(metric_label(m).split(" (")[0], fontsize=10)
    handles, labels = [], []
    for g in sorted(legend_cols):
        for v in _values(done, g):
            handles.append(Patch(facecolor=palette.color(g, v)))
            labels.append(fmt_param(g, v))
    _legend(fig, handles, labels)
    _header(fig, "Side by side: " + ", ".join(col_name(c) for c in cats),
            "final evaluation; bars = mean over "
            + ("seeds and the other settings, whiskers = their min–max" if pooled_any
               else "seeds, whiskers = 95% CI")
            + f"; {_status_note(runs)}")
    return _save(fig, out_dir, "categories")


# ======================================================================================
# Seeds
# ======================================================================================


def plot_seeds(runs: RunSet, out_dir: str | Path, palette: Palette | None = None) -> Path | None:
    """Per setting: every seed as a dot, the mean with its 95% confidence interval, and n."""
    done = runs.done_jobs()
    if not runs.seeds or runs.n_seeds() < 2:
        return None
    metrics = [m for m in ("forgetting_pct", "final_follow_rate", "final_response_loss")
               if m in done and done[m].notna().any()]
    if not metrics:
        return None
    palette = palette or make_palette(runs)
    params = runs.params
    color_col = runs.axis("lr") or (params[0] if params else None)
    settings = _facets(done, params)
    width = max(4.6, 0.55 * len(settings) + 1.5)
    fig, axes = _grid(1, len(metrics), w=width, h=3.6)
    rng = np.random.default_rng(0)
    for ax, m in zip(axes.flat, metrics):
        scale = metric_scale(m)
        suffix = ""
        for xi, (key, part) in enumerate(settings):
            vals = scale * part[m].dropna().to_numpy(dtype=float)
            if vals.size == 0:
                continue
            color = palette.color(color_col, key.get(color_col)) if color_col else "#1f4e79"
            jitter = rng.uniform(-0.07, 0.07, size=vals.size)
            ax.scatter(xi - 0.14 + jitter, vals, s=22, color=color, alpha=0.7, lw=0, zorder=2)
            agg = aggregate(part, [], m).iloc[0]
            ax.errorbar([xi + 0.1], [scale * agg["mean"]], yerr=[scale * (0 if pd.isna(agg["ci"]) else agg["ci"])],
                        color=color, marker="D", ms=6, capsize=5, lw=1.8, zorder=3)
            ax.annotate(f"n={int(agg['n'])}", (xi, 1.0), xycoords=("data", "axes fraction"),
                        xytext=(0, -2), textcoords="offset points", ha="center", va="top",
                        fontsize=7, color="#444444")
        if m == "forgetting_pct":
            _shade_band(ax)
            ax.axhline(0, color="black", lw=0.8)
            suffix = _forgetting_axis(ax, done[m])
        elif scale == 100.0:
            _y_percent(ax)
        lo, hi = ax.get_ylim()
        if ax.get_yscale() == "linear":
            ax.set_ylim(lo, hi + 0.12 * (hi - lo))  # room for the n labels
        ax.set_xticks(range(len(settings)))
        ax.set_xticklabels([setting_label(k, params, sep="\n") for k, _ in settings], fontsize=7)
        ax.set_xlim(-0.6, len(settings) - 0.4)
        ax.set_ylabel(metric_label(m) + (suffix if m == "forgetting_pct" else ""), fontsize=9)
        ax.set_title(metric_label(m).split(" (")[0], fontsize=10)
        ax.grid(alpha=0.3, axis="y")
    handles = [Line2D([], [], color="#555555", marker="o", ls="", ms=4, alpha=0.6),
               Line2D([], [], color="#555555", marker="D", ms=6, lw=1.8)]
    labels = ["one seed", "mean ± 95% CI"]
    if color_col:
        for v in _values(done, color_col):
            handles.append(Patch(facecolor=palette.color(color_col, v)))
            labels.append(fmt_param(color_col, v))
    _legend(fig, handles, labels)
    seeds = ", ".join(runs.seeds)
    _header(fig, "Seed-to-seed variation: how much of a difference is noise",
            f"seeds ({seeds}) per setting; a CI wider than a gap between settings means that gap is not "
            f"established; {_status_note(runs)}")
    return _save(fig, out_dir, "seeds")


# ======================================================================================
# Base vs tuned
# ======================================================================================


def plot_base_vs_tuned(runs: RunSet, out_dir: str | Path, palette: Palette | None = None) -> Path | None:
    """Base model vs tuned models on each evaluation rate: what SFT changes (following the
    format, answering) and what it does not (the knowledge probe)."""
    done = runs.done_jobs()
    metrics = [m for m in ("follow_rate", "answer_acc", "answer_mc_acc", "knowledge_acc", "knowledge_mc_acc")
               if f"final_{m}" in done and done[f"final_{m}"].notna().any()
               and f"base_{m}" in done and done[f"base_{m}"].notna().any()]
    if not metrics or done.empty:
        return None
    palette = palette or make_palette(runs)
    group = runs.axis("lr") or (runs.params[0] if runs.params else None)
    gvals = _values(done, group) if group else [None]
    nbars = 1 + len(gvals)
    width = 0.84 / nbars
    fig, axes = _grid(1, 1, w=max(6.5, 1.5 * len(metrics) + 2), h=4.0)
    ax = axes[0, 0]
    for mi, m in enumerate(metrics):
        x0 = mi - 0.42
        base = 100 * done[f"base_{m}"].dropna()
        bars = ax.bar(x0 + width * 0.5, base.mean(), width=width * 0.92, color=BASE_COLOR,
                      yerr=_range_err(base), capsize=3)
        ax.bar_label(bars, fmt="%.0f%%", fontsize=7, padding=2)
        for gi, g in enumerate(gvals):
            part = done if group is None else done[done[group] == g]
            vals = 100 * part[f"final_{m}"].dropna()
            if vals.empty:
                continue
            x = x0 + width * (gi + 1.5)
            bars = ax.bar(x, vals.mean(), width=width * 0.92,
                          color=palette.color(group, g) if group else "#1f4e79",
                          yerr=_range_err(vals), capsize=3)
            ax.bar_label(bars, fmt="%.0f%%", fontsize=7, padding=2)
    ax.set_xticks(range(len(metrics)))
    names = {"follow_rate": "follow rate", "answer_acc": "answer\naccuracy",
             "answer_mc_acc": "answer\nmultiple-choice", "knowledge_acc": "knowledge probe\naccuracy",
             "knowledge_mc_acc": "knowledge probe\nmultiple-choice"}
    ax.set_xticklabels([names[m] for m in metrics])
    ax.set_ylabel("% of held-out prompts")
    ax.set_ylim(0, 105)
    _y_percent(ax)
    ax.grid(alpha=0.3, axis="y")
    if "knowledge_mc_acc" in metrics or "knowledge_acc" in metrics:
        first_k = min(metrics.index(m) for m in metrics if m.startswith("knowledge"))
        ax.axvline(first_k - 0.5, color="#444444", lw=0.8, ls=":")
        ax.text(first_k - 0.45, 101, "knowledge probe: facts the SFT data never asks about",
                fontsize=8, color="#444444", va="bottom")
    handles = [Patch(facecolor=BASE_COLOR)] + [Patch(facecolor=palette.color(group, g) if group else "#1f4e79")
                                               for g in gvals]
    labels = ["base model"] + [f"tuned, {fmt_param(group, g)}" if group else "tuned" for g in gvals]
    _legend(fig, handles, labels)
    _header(fig, "What SFT changes: answering in format vs knowing facts",
            f"bars = mean over completed jobs, whiskers = min–max; {_status_note(runs)}")
    return _save(fig, out_dir, "base_vs_tuned")


# ======================================================================================
# All of them
# ======================================================================================

#: (name, function, caption) in report order.
PLOTS: list[tuple[str, Callable[..., Path | None], str]] = [
    ("lr_comparison", plot_lr_comparison,
     "Training loss (top) and held-out response loss (bottom) against optimizer step, one line "
     "per learning rate; columns split the other swept settings."),
    ("forgetting_vs_lr", plot_forgetting,
     "Forgetting (raw-text loss change against the base model) at the end of training, against "
     "the learning rate. The shaded band marks 10-15%, where fine-tuning is too aggressive."),
    ("forgetting_vs_step", plot_forgetting_curves,
     "How forgetting builds up during training (eval rows, relative to step 0)."),
    ("mixing", plot_mixing,
     "Replaying pre-training text: forgetting and follow rate against the replay ratio."),
    ("tradeoff", plot_tradeoff,
     "What each job gained (follow rate, answer accuracy) against what it forgot; the Pareto "
     "front joins the jobs no other job beats on both."),
    ("categories", plot_categories,
     "Text-valued settings (template, data format, model) compared side by side."),
    ("seeds", plot_seeds,
     "Seed-to-seed spread per setting with 95% confidence intervals."),
    ("base_vs_tuned", plot_base_vs_tuned,
     "Base model against tuned models: SFT teaches the format (follow rate, answers), the "
     "knowledge probe shows whether it added facts."),
]


def plot_all(runs: RunSet, out_dir: str | Path, *, on_error: Callable[[str, Exception], None] | None = None
             ) -> dict[str, Path]:
    """Every figure the sweep supports, as ``{name: path}``. A figure that fails is passed to
    ``on_error`` (or re-raised without one) and the others are still drawn."""
    palette = make_palette(runs)
    written: dict[str, Path] = {}
    for name, fn, _caption in PLOTS:
        try:
            path = fn(runs, out_dir, palette)
        except Exception as exc:  # noqa: BLE001
            if on_error is None:
                raise
            on_error(name, exc)
            continue
        if path is not None:
            written[name] = path
    return written
