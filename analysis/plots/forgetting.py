"""Forgetting: the raw-text loss change at the end against the learning rate, and along training."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from matplotlib.lines import Line2D

from analysis.collect import RunSet
from analysis.plots.common import (
    MAX_SERIES, add_header, add_legend, band_handles, facet_columns, facet_ncols, facet_title,
    fit_labels, forgetting_axis, log_lr_axis, make_palette, mean_curve, missing_note, panel_grid,
    present_values, save_png, seed_note, series_cols, shade_band, split_facets, status_note, with_n,
)
from analysis.stats import aggregate, strata
from analysis.style import AGGRESSIVE_BAND, Palette, col_name, fmt_value, setting_label
from sft_sweep.jobfiles import forgetting_pct


#: Marker size (points) of a series' mean.
MARKER_MS = 6


def plot_forgetting(runs: RunSet, out_dir: str | Path, palette: Palette | None = None) -> Path | None:
    """Raw-text loss change (%) against learning rate, one line per epochs / replay ratio,
    with the "too aggressive" band (``AGGRESSIVE_BAND``) shaded."""
    lr = runs.axis("lr")
    done = runs.done_jobs()
    if lr is None or "forgetting_pct" not in done or len(present_values(done, lr)) < 2:
        return None
    done = done[done["forgetting_pct"].notna()]
    if done.empty:
        return None
    palette = palette or make_palette(runs)
    color_col, style_col = series_cols(runs, [lr])
    extra = [c for c in runs.params if c not in (lr, color_col, style_col)]
    group_cols = [c for c in (color_col, style_col) if c] + extra
    if group_cols and len(done.groupby(group_cols, dropna=False)) > MAX_SERIES:
        color_col = style_col = None  # a search: one line through all jobs, not one per job
        group_cols = []

    fig, axes = panel_grid(1, 1, w=6.2, h=4.2)
    ax = axes[0, 0]
    shade_band(ax)
    ax.axhline(0, color="black", lw=0.8)
    agg = aggregate(done, [lr] + group_cols, "forgetting_pct")
    handles, labels = [], []
    series = strata(agg, group_cols)
    annotate = len(series) <= 3 and len(agg) <= 15
    value_labels = []
    marks: list = []  # the series' markers and line segments, which no value label may cover
    lines: list = []
    for si, (kd, part) in enumerate(series):
        # Nudge the series apart on the log axis so error bars at the same lr do not overlap.
        dodge = 10 ** (0.025 * (si - (len(series) - 1) / 2))
        part = part.sort_values(lr)
        color = palette.color(color_col, kd.get(color_col)) if color_col else palette.color(lr, None)
        if not color_col:
            color = "#1f4e79"
        ls = palette.linestyle(style_col, kd.get(style_col)) if style_col else "-"
        marker = palette.marker(style_col, kd.get(style_col)) if style_col else "o"
        ax.errorbar(part[lr] * dodge, part["mean"], yerr=part["ci"].fillna(0), color=color, ls=ls,
                    marker=marker, ms=MARKER_MS, lw=1.8, capsize=4)
        # individual jobs (seeds) as small dots behind the mean
        mask = np.ones(len(done), dtype=bool)
        for c, v in kd.items():
            mask &= (done[c] == v).to_numpy()
        pts = done[mask]
        if runs.seeds and len(pts) > len(part):
            ax.scatter(pts[lr] * dodge, pts["forgetting_pct"], color=color, s=12, alpha=0.5, zorder=1, lw=0)
        xs, ys = [float(x) * dodge for x in part[lr]], [float(y) for y in part["mean"]]
        marks += list(zip(xs, ys))
        lines += list(zip(zip(xs, ys), zip(xs[1:], ys[1:])))
        if annotate:
            for x, y in zip(part[lr] * dodge, part["mean"]):
                value_labels.append(ax.annotate(f"{y:+.1f}%", (x, y), textcoords="offset points",
                                                xytext=(9, 0), va="center", fontsize=8, color=color))
        handles.append(Line2D([], [], color=color, ls=ls, marker=marker, lw=1.8))
        labels.append(with_n(setting_label(kd, group_cols) if group_cols else "all jobs", part["n"], runs))
    log_lr_axis(ax, present_values(done, lr))
    ax.set_xlabel(f"{col_name(lr)} ({lr}, log scale)")
    extent = list(agg["mean"] + agg["ci"].fillna(0)) + list(agg["mean"] - agg["ci"].fillna(0)) \
        + list(done["forgetting_pct"])
    suffix = forgetting_axis(ax, extent)
    ax.set_ylabel("raw-text loss change vs base model (%)" + suffix)
    ax.grid(alpha=0.3)
    handles += band_handles()
    labels += [h.get_label() for h in band_handles()]
    add_legend(fig, handles, labels, title=", ".join(col_name(c) for c in group_cols) or None)
    add_header(fig, "Forgetting: how much the tuned model lost on pre-training text",
            "100 × (raw-text loss after SFT − base) / base; higher = more forgotten\n"
            f"{status_note(runs)}; {seed_note(runs)}"
            + ("; small dots = single seeds" if runs.seeds and runs.n_seeds() > 1 else ""))
    fit_labels(fig, ax, value_labels, points=marks, point_sizes=[MARKER_MS ** 2] * len(marks), segments=lines)
    return save_png(fig, out_dir, "forgetting_vs_lr")


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
    facet_cols = facet_columns(done, [c for c in runs.params if c != color_col])
    facets = split_facets(done, facet_cols)
    ncols = facet_ncols(done, facet_cols, len(facets))
    nrows = math.ceil(len(facets) / ncols)
    fig, axes = panel_grid(nrows, ncols)
    values = present_values(done, color_col) if color_col else [None]
    ns: dict[Any, list[int]] = {v: [] for v in values}
    lo, hi = 0.0, AGGRESSIVE_BAND[1] + 2
    for fi, (key, part) in enumerate(facets):
        ax = axes.flat[fi]
        shade_band(ax)
        ax.axhline(0, color="black", lw=0.8)
        shown = []
        for v in values:
            jobs = part["job"] if color_col is None else part.loc[part[color_col] == v, "job"]
            sub = rows[rows["job"].isin(set(jobs))]
            if sub.empty:
                continue
            shown.append(v)
            mc = mean_curve(sub)
            color = palette.color(color_col, v) if color_col else "#1f4e79"
            ax.plot(mc["step"], mc["mean"], color=color, lw=1.8, marker="o", ms=3.5)
            if (mc["n"] > 1).any():
                ax.fill_between(mc["step"], mc["min"], mc["max"], color=color, alpha=0.18, lw=0)
            ns[v].append(int(mc["n"].max()))
            lo = min(lo, float(np.nanmin(mc["mean"])))
            hi = max(hi, float(np.nanmax(mc["mean"])))
        if color_col:
            missing_note(ax, color_col, values, shown)
        ax.set_title(facet_title(key) or "all jobs", fontsize=10)
        ax.set_xlabel("optimizer step")
        ax.grid(alpha=0.3)
    for fi in range(len(facets)):
        suffix = forgetting_axis(axes.flat[fi], [lo, hi])
        axes.flat[fi].set_ylabel("raw-text loss change vs step 0 (%)" + suffix)
    for fi in range(len(facets), nrows * ncols):
        axes.flat[fi].set_visible(False)
    handles = [Line2D([], [], color=palette.color(color_col, v) if color_col else "#1f4e79", lw=2.5)
               for v in values]
    labels = [with_n(fmt_value(color_col, v) if color_col else "all jobs", ns[v], runs)
              for v in values]
    handles += band_handles()
    labels += [h.get_label() for h in band_handles()]
    add_legend(fig, handles, labels, title=f"{col_name(color_col)} ({color_col})" if color_col else None)
    add_header(fig, "Forgetting during training: raw-text loss relative to the base model",
            "eval rows: 100 × (raw-text loss − its value at step 0) / value at step 0\n"
            f"{status_note(runs)}; {seed_note(runs, curves=True)}")
    return save_png(fig, out_dir, "forgetting_vs_step")
