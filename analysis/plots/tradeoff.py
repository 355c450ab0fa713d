"""What each job gained against what it forgot, with the Pareto front."""

from __future__ import annotations

from pathlib import Path

from matplotlib.lines import Line2D

from analysis.collect import RunSet
from analysis.plots.common import (
    add_header, add_legend, band_handles, fit_labels, forgetting_axis, make_palette, panel_grid,
    present_values, save_png, shade_band, status_note, y_percent,
)
from analysis.stats import pareto_mask
from analysis.style import Palette, fmt_param, metric_label, metric_scale, setting_label


#: Up to this many completed jobs every point of the trade-off is named.
MAX_NAMED = 12
#: Marker areas (points squared) of a job and of the ring marking a Pareto-front job.
POINT_S, RING_S = 46, 150


def plot_tradeoff(runs: RunSet, out_dir: str | Path, palette: Palette | None = None) -> Path | None:
    """Follow rate and answer accuracy against forgetting, one point per job, Pareto front marked."""
    done = runs.done_jobs()
    metrics = tradeoff_metrics(done)
    if not metrics:
        return None
    palette = palette or make_palette(runs)
    color_col = runs.axis("lr") or (runs.params[0] if runs.params else None)
    marker_col = next((c for c in runs.params if c != color_col), None)
    fig, axes = panel_grid(1, len(metrics), w=5.4, h=4.2)
    labels_by_ax: dict = {}
    points_by_ax: dict = {}
    steps_by_ax: dict = {}
    for ax, m in zip(axes.flat, metrics):
        pts = done.dropna(subset=["forgetting_pct", m])
        scale = metric_scale(m)
        shade_band(ax, vertical=True)
        for _, row in pts.iterrows():
            ax.scatter(row["forgetting_pct"], scale * row[m],
                       color=palette.color(color_col, row[color_col]) if color_col else "#1f4e79",
                       marker=palette.marker(marker_col, row[marker_col]) if marker_col else "o",
                       s=POINT_S, edgecolors="white", linewidths=0.6, zorder=3)
        front = pts[pareto_mask(pts, maximize=[m], minimize=["forgetting_pct"])]
        front = front.sort_values("forgetting_pct")
        ax.plot(front["forgetting_pct"], scale * front[m], color="black", lw=1.2, ls="--",
                drawstyle="steps-post", zorder=2)
        ax.scatter(front["forgetting_pct"], scale * front[m], s=RING_S, facecolors="none",
                   edgecolors="black", linewidths=1.3, zorder=4)
        # Every point is named while that stays readable; in a larger search the front's jobs
        # are, and points drawn on top of each other say how many they are.
        fx, fy = front["forgetting_pct"].tolist(), (scale * front[m]).tolist()
        # the front's steps (drawstyle steps-post): across to the next job, then up or down to it
        steps_by_ax[ax] = [seg for i in range(len(fx) - 1)
                           for seg in (((fx[i], fy[i]), (fx[i + 1], fy[i])), ((fx[i + 1], fy[i]), (fx[i + 1], fy[i + 1])))]
        points_by_ax[ax] = ([(x, y) for x, y in zip(pts["forgetting_pct"], scale * pts[m])]
                            + [(x, y) for x, y in zip(front["forgetting_pct"], scale * front[m])],
                            [POINT_S] * len(pts) + [RING_S] * len(front))
        named = pts if len(pts) <= MAX_NAMED else front
        for _, row in named.iterrows():
            labels_by_ax.setdefault(ax, []).append(ax.annotate(
                _point_label(row, runs), (row["forgetting_pct"], scale * row[m]),
                textcoords="offset points", xytext=(8, 0), va="center", fontsize=6.5, color="#222222",
                arrowprops=dict(arrowstyle="-", lw=0.5, color="#999999", shrinkA=1, shrinkB=5)))
        if len(pts) > MAX_NAMED:
            for (x, y), n in _stacks(pts, m, scale).items():
                labels_by_ax.setdefault(ax, []).append(ax.annotate(
                    f"×{n}", (x, y), textcoords="offset points", xytext=(6, 6), fontsize=7, color="#222222"))
        suffix = forgetting_axis(ax, pts["forgetting_pct"], "x")
        ax.set_xlabel("forgetting: raw-text loss\nchange vs base (%)" + suffix.replace("\n", " "))
        ax.set_ylabel(metric_label(m))
        # A rate that hardly varies (every job at 0%) still gets an axis of a few points, so the
        # percent ticks stay distinct.
        ys = scale * pts[m]
        lo, hi = float(ys.min()), float(ys.max())
        span = max(hi - lo, 10.0)
        ax.set_ylim(lo - 0.08 * span, lo + 1.08 * span)
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
    handles += band_handles()
    labels += [h.get_label() for h in band_handles()]
    add_legend(fig, handles, labels)
    add_header(fig, "Trade-off: what each job gained against what it forgot",
            "one point per completed job; up-left is better; circled = Pareto front (no other job\n"
            f"is better on both axes); {status_note(runs)}")
    for ax, texts in labels_by_ax.items():
        points, sizes = points_by_ax.get(ax, ([], []))
        fit_labels(fig, ax, texts, points=points, point_sizes=sizes, segments=steps_by_ax.get(ax, []))
    return save_png(fig, out_dir, "tradeoff")


def tradeoff_metrics(done) -> list[str]:
    """The gains drawn against forgetting: those at least two completed jobs report."""
    if "forgetting_pct" not in done:
        return []
    return [m for m in ("final_follow_rate", "final_answer_acc")
            if m in done and done[["forgetting_pct", m]].dropna().shape[0] >= 2]


def tradeoff_caption(runs: RunSet) -> str:
    """The caption names the panels the figure has."""
    gains = " and ".join(metric_label(m).split(" (")[0].lower() for m in tradeoff_metrics(runs.done_jobs()))
    return (f"What each job gained ({gains}) against what it forgot; the Pareto front joins the jobs no "
            "other job beats on both.")


def _point_label(row, runs: RunSet) -> str:
    """The job's swept values, one per line (its directory name when nothing was swept)."""
    return setting_label(row, runs.swept, sep="\n") if runs.swept else str(row["job"])


def _stacks(pts, metric: str, scale: float) -> dict[tuple[float, float], int]:
    """Positions where more than one job has the same (forgetting, metric) values."""
    key = pts[["forgetting_pct", metric]].round(6)
    counts = key.value_counts()
    return {(float(f), scale * float(v)): int(n) for (f, v), n in counts.items() if n > 1}
