"""What each job gained against what it forgot, with the Pareto front."""

from __future__ import annotations

from pathlib import Path

from matplotlib.lines import Line2D

from analysis.collect import RunSet
from analysis.plots.common import (
    add_header, add_legend, band_handle, forgetting_axis, make_palette, panel_grid, present_values,
    save_png, shade_band, status_note, y_percent,
)
from analysis.stats import pareto_mask
from analysis.style import Palette, fmt_param, metric_label, metric_scale, setting_label


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
    fig, axes = panel_grid(1, len(metrics), w=5.0, h=3.9)
    for ax, m in zip(axes.flat, metrics):
        pts = done.dropna(subset=["forgetting_pct", m])
        scale = metric_scale(m)
        shade_band(ax, vertical=True)
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
        suffix = forgetting_axis(ax, pts["forgetting_pct"], "x")
        ax.set_xlabel("forgetting: raw-text loss change vs base (%)" + suffix)
        ax.set_ylabel(metric_label(m))
        y_percent(ax)
        ax.set_title(f"{metric_label(m).split(' (')[0]} vs forgetting", fontsize=10)
        ax.grid(alpha=0.3)
    handles, labels = [], []
    if color_col:
        for v in present_values(done, color_col):
            handles.append(Line2D([], [], color=palette.color(color_col, v), marker="o", ls="", ms=7))
            labels.append(fmt_param(color_col, v))
    if marker_col:
        for v in present_values(done, marker_col):
            handles.append(Line2D([], [], color="#555555", marker=palette.marker(marker_col, v), ls="", ms=7))
            labels.append(fmt_param(marker_col, v))
    handles.append(Line2D([], [], color="black", ls="--", marker="o", mfc="none", ms=10))
    labels.append("Pareto front")
    handles.append(band_handle())
    labels.append(band_handle().get_label())
    add_legend(fig, handles, labels)
    add_header(fig, "Trade-off: what each job gained against what it forgot",
            "one point per completed job; up-left is better; circled = Pareto front (no other job\n"
            f"is better on both axes); {status_note(runs)}")
    return save_png(fig, out_dir, "tradeoff")
