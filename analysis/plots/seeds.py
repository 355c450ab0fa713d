"""Seed-to-seed spread per setting, with 95% confidence intervals."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
from matplotlib.lines import Line2D
from matplotlib.patches import Patch

from analysis.collect import RunSet
from analysis.plots.common import (
    add_header, add_legend, forgetting_axis, make_palette, panel_grid, present_values, save_png,
    shade_band, split_facets, status_note, y_percent,
)
from analysis.stats import aggregate
from analysis.style import Palette, fmt_param, metric_label, metric_scale, setting_label


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
    settings = split_facets(done, params)
    width = max(4.6, 0.55 * len(settings) + 1.5)
    fig, axes = panel_grid(1, len(metrics), w=width, h=3.6)
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
            shade_band(ax)
            ax.axhline(0, color="black", lw=0.8)
            suffix = forgetting_axis(ax, done[m])
        elif scale == 100.0:
            y_percent(ax)
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
        for v in present_values(done, color_col):
            handles.append(Patch(facecolor=palette.color(color_col, v)))
            labels.append(fmt_param(color_col, v))
    add_legend(fig, handles, labels)
    seeds = ", ".join(runs.seeds)
    add_header(fig, "Seed-to-seed variation: how much of a difference is noise",
            f"seeds ({seeds}) per setting; a CI wider than a gap between settings means that gap is not "
            f"established; {status_note(runs)}")
    return save_png(fig, out_dir, "seeds")
