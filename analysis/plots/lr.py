"""The learning-rate comparison: training and held-out response loss against the step, a line per rate."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from matplotlib.lines import Line2D

from analysis.collect import RunSet
from analysis.pruning import draw_pruned, pruned_jobs
from analysis.plots.common import (
    add_header, add_legend, facet_columns, facet_ncols, facet_title, make_palette, mean_curve,
    missing_note, panel_grid, present_values, save_png, seed_note, smooth, split_facets,
    status_note, with_n,
)
from analysis.style import Palette, col_name, fmt_value


def plot_lr_comparison(runs: RunSet, out_dir: str | Path, palette: Palette | None = None) -> Path | None:
    """Training loss and held-out response loss against step, one line per learning rate,
    one column per combination of the other swept settings."""
    lr = runs.axis("lr")
    done = runs.done_jobs()
    if lr is None or len(present_values(done, lr)) < 2:
        return None
    palette = palette or make_palette(runs)
    cur = runs.done_curves()
    rows = []
    train = cur[(cur["kind"] == "train") & (cur["metric"] == "loss")]
    if not train.empty:
        rows.append(("train", smooth(train), "training loss (nats/token)", "training loss (smoothed)"))
    resp = cur[(cur["kind"] == "eval") & (cur["metric"] == "response_loss")]
    if not resp.empty:
        rows.append(("eval", resp, "response loss (nats/token)", "held-out response loss"))
    if not rows:
        return None

    facet_cols = facet_columns(done, [c for c in runs.params if c != lr])
    shown_jobs = pd.concat([done, pruned_jobs(runs)])  # a facet may hold only pruned jobs
    facets = [(key, part[part["done"]]) for key, part in split_facets(shown_jobs, facet_cols)]
    ncols = facet_ncols(shown_jobs, facet_cols, len(facets))
    blocks = math.ceil(len(facets) / ncols)
    fig, axes = panel_grid(len(rows) * blocks, ncols)
    lrs = present_values(done, lr)
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
                mc = mean_curve(sub)
                color = palette.color(lr, v)
                ax.plot(mc["step"], mc["mean"], color=color, lw=1.8,
                        marker="o" if name == "eval" else None, ms=3.5)
                if (mc["n"] > 1).any():
                    ax.fill_between(mc["step"], mc["min"], mc["max"], color=color, alpha=0.18, lw=0)
                ns[v].append(int(mc["n"].max()))
                ylims[name] += [float(np.nanmin(mc["mean"])), float(np.nanmax(mc["mean"]))]
            ylims[name] += draw_pruned(ax, runs, key, name, "loss" if name == "train" else "response_loss",
                                       lambda v: palette.color(lr, v), lr, smooth if name == "train" else None)
            missing_note(ax, lr, lrs, shown)
            ax.set_xlabel("optimizer step")
            ax.set_ylabel(ylabel)
            title = what + (f"\n{facet_title(key)}" if key else "")
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
    labels = [with_n(fmt_value(lr, v), ns[v], runs) for v in lrs]
    add_legend(fig, handles, labels, title=f"{col_name(lr)} ({lr})")
    by = f"; columns: {', '.join(col_name(c) for c in facet_cols)}" if facet_cols else ""
    note = status_note(runs)
    if not pruned_jobs(runs).empty:
        note = note.replace(": not shown)", "") + "; pruned jobs dashed up to their stop (x))"
    add_header(fig, "Learning-rate comparison: how fast and how far each lr learns",
            f"{note}; {seed_note(runs, curves=True)}{by}")
    return save_png(fig, out_dir, "lr_comparison")
