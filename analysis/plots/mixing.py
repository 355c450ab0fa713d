"""Replaying pre-training text: forgetting and follow rate against the replay ratio."""

from __future__ import annotations

from pathlib import Path

from matplotlib.lines import Line2D
from matplotlib.ticker import PercentFormatter

from analysis.collect import RunSet
from analysis.plots.common import (
    MAX_SERIES, add_header, add_legend, band_handles, forgetting_axis, make_palette, panel_grid,
    present_values, save_png, seed_note, series_cols, shade_band, status_note, with_n, y_percent,
)
from analysis.stats import aggregate, strata
from analysis.style import Palette, col_name, metric_label, metric_scale, setting_label


def mixing_metrics(done) -> list[str]:
    """The panels: forgetting and the first gain some job reports (follow rate, else answers)."""
    return [m for m in ("forgetting_pct", "final_follow_rate", "final_answer_acc")
            if m in done and done[m].notna().any()][:2]


def _panel_name(m: str) -> str:
    return "forgetting" if m == "forgetting_pct" else metric_label(m).split(" (")[0]


def mixing_caption(runs: RunSet) -> str:
    """The caption names the panels the figure has."""
    names = " and ".join(_panel_name(m) for m in mixing_metrics(runs.done_jobs())) or "the metrics"
    return f"Replaying pre-training text: {names} against the replay ratio."


def plot_mixing(runs: RunSet, out_dir: str | Path, palette: Palette | None = None) -> Path | None:
    """Forgetting and follow rate against the replay ratio, one line per learning rate."""
    rp = runs.axis("replay")
    done = runs.done_jobs()
    if rp is None or len(present_values(done, rp)) < 2:
        return None
    metrics = mixing_metrics(done)
    if not metrics:
        return None
    palette = palette or make_palette(runs)
    color_col, style_col = series_cols(runs, [rp])
    if runs.axis("lr") and runs.axis("lr") != rp:
        color_col = runs.axis("lr")
        style_col = next((c for c in runs.params if c not in (rp, color_col)), None)
    group_cols = [c for c in (color_col, style_col) if c]
    group_cols += [c for c in runs.params if c not in group_cols and c != rp]
    if group_cols and len(done.groupby(group_cols, dropna=False)) > MAX_SERIES:
        color_col = style_col = None
        group_cols = []
    fig, axes = panel_grid(1, len(metrics))
    handles, labels = {}, {}
    for ax, m in zip(axes.flat, metrics):
        scale = metric_scale(m)
        agg = aggregate(done.dropna(subset=[m]), [rp] + group_cols, m)
        if m == "forgetting_pct":
            shade_band(ax)
            ax.axhline(0, color="black", lw=0.8)
        for kd, part in strata(agg, group_cols):
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
        ax.set_xticks([100 * float(v) for v in present_values(done, rp)])
        if m == "forgetting_pct":
            ax.set_ylabel(metric_label(m) + forgetting_axis(ax, done[m]))
        else:
            y_percent(ax)
        ax.set_title(_panel_name(m), fontsize=10)
        ax.grid(alpha=0.3)
    hl = list(handles.values()) + band_handles()
    ll = [with_n(k, v, runs) for k, v in labels.items()] + [h.get_label() for h in band_handles()]
    add_legend(fig, hl, ll, title=", ".join(col_name(c) for c in group_cols) or None)
    add_header(fig, f"Mixing pre-training text back in: {' and '.join(_panel_name(m) for m in metrics)} "
               "vs replay ratio",
            "replay ratio = share of training sequences that are raw pre-training text\n"
            f"{status_note(runs)}; {seed_note(runs)}")
    return save_png(fig, out_dir, "mixing")
