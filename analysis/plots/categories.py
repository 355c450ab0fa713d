"""Text-valued settings (template, data format, model) side by side."""

from __future__ import annotations

import math
from pathlib import Path

from matplotlib.patches import Patch

from analysis.collect import RunSet
from analysis.plots.common import (
    add_header, add_legend, forgetting_axis, make_palette, panel_grid, present_values, save_png,
    shade_band, status_note, y_percent,
)
from analysis.stats import mean_ci
from analysis.style import Palette, col_name, fmt_param, fmt_value, metric_label, metric_scale


def _categorical_cols(runs: RunSet) -> list[str]:
    done = runs.done_jobs()
    out = []
    for c in runs.params:
        vals = present_values(done, c)
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
    fig, axes = panel_grid(len(cats), len(metrics), w=3.9, h=3.2)
    legend_cols = set()
    pooled_names: list[str] = []
    most_jobs = 0  # the most jobs behind one bar: 1 means no bar has an interval to draw
    for ri, cat in enumerate(cats):
        group = runs.axis("lr") if runs.axis("lr") not in (None, cat) else next(
            (c for c in runs.params if c != cat), None)
        if group:
            legend_cols.add(group)
        # Settings neither on the x axis nor in the bar colour are averaged over: whiskers then
        # show their range, not a seed CI (which would mix real effects into "noise").
        pooled = [c for c in runs.params if c not in (cat, group)]
        pooled_names += [col_name(c) for c in pooled if col_name(c) not in pooled_names]
        cvals = present_values(done, cat)
        gvals = present_values(done, group) if group else [None]
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
                    most_jobs = max(most_jobs, len(vals))
                    if len(vals) == 1:
                        low = high = mean  # one job: no interval
                    elif pooled:
                        low, high = float(vals.min()), float(vals.max())
                    else:
                        ci = mean_ci(vals).half
                        low, high = (mean, mean) if math.isnan(ci) else (mean - ci, mean + ci)
                    xs.append(xi - 0.4 + width * (gi + 0.5))
                    ys.append(scale * mean)
                    lo.append(max(0.0, scale * (mean - low)))  # rounding must not make it negative
                    hi.append(max(0.0, scale * (high - mean)))
                ax.bar(xs, ys, width=width * 0.92, yerr=[lo, hi] if any(lo) or any(hi) else None, capsize=3,
                       color=palette.color(group, g) if group else palette.color(cat, cvals[0]),
                       edgecolor="white", lw=0.5)
            ax.set_xticks(range(len(cvals)))
            ax.set_xticklabels([fmt_value(cat, v) for v in cvals], rotation=20 if len(cvals) > 3 else 0)
            ax.set_xlabel(f"{col_name(cat)} ({cat})")
            ax.set_ylabel(metric_label(m), fontsize=8)
            if m == "forgetting_pct":
                shade_band(ax)
                ax.axhline(0, color="black", lw=0.8)
                ax.set_ylabel(metric_label(m) + forgetting_axis(ax, done[m]), fontsize=8)
            elif scale == 100.0:
                y_percent(ax)
            ax.grid(alpha=0.3, axis="y")
            ax.set_title(metric_label(m).split(" (")[0], fontsize=10)
    handles, labels = [], []
    for g in sorted(legend_cols):
        for v in present_values(done, g):
            handles.append(Patch(facecolor=palette.color(g, v)))
            labels.append(fmt_param(g, v))
    add_legend(fig, handles, labels)
    if most_jobs <= 1:
        what = "each bar one job (no whiskers: one job has no interval)"
    elif pooled_names:
        what = ("bars = mean over " + " and ".join(["seeds"] * bool(runs.seeds) + pooled_names)
                + ", whiskers = their min–max")
    else:
        what = "bars = mean over seeds, whiskers = 95% CI"
    add_header(fig, "Side by side: " + ", ".join(col_name(c) for c in cats),
               f"final evaluation; {what}; {status_note(runs)}")
    return save_png(fig, out_dir, "categories")
