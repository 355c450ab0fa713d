"""The learning-forgetting front: every job and weight blend, coloured by method and mitigation."""

from __future__ import annotations

import math
from pathlib import Path

import pandas as pd
from matplotlib import colormaps
from matplotlib.lines import Line2D

from analysis.collect import RunSet
from analysis.roles import key_of
from analysis.front import FREEZE, FULL, LORA, Learning, front_applies, front_points, learning_of
from analysis.plots.common import (
    BASE_COLOR, add_header, add_legend, band_handles, fit_labels, forgetting_axis, panel_grid, save_png,
    shade_band, status_note, y_percent,
)
from analysis.stats import pareto_mask
from analysis.style import Palette, fmt_num, fmt_value

#: Up to this many points per panel every point is named; beyond it only the front's.
MAX_NAMED = 14
#: Marker areas (points squared): a job or blend, the ring of a front point, the base model.
POINT_S, RING_S, BASE_S = 46, 150, 120
#: Panels side by side at most (one per combination of the other swept settings), else one panel.
MAX_PANELS = 4
_METHOD_ORDER = {FULL: 0, LORA: 1, FREEZE: 2}


def front_caption(runs: RunSet) -> str:
    learning = learning_of(runs)
    what = learning.label if learning else "learning"
    return (f"Learning ({what}) against forgetting: one filled marker per job and one hollow marker per "
            "weight blend (1 − t) · base + t · tuned, joined to the job it blends, coloured by method and "
            "mitigation; the step line joins the Pareto front (no other point learns more and forgets less).")


def variant_colors(points: pd.DataFrame) -> dict[str, object]:
    """A colour per variant, full fine-tuning first, then LoRA by rank, freezing, the rest."""
    order = (points.drop_duplicates("variant")
             .assign(_x=lambda d: (d["replay"] > 0) | (d["l2"] > 0) | (d["neftune"] > 0),
                     _m=lambda d: d["method"].map(lambda m: _METHOD_ORDER.get(m, 3)),
                     _r=lambda d: d["rank"].fillna(0))
             .sort_values(["_x", "_m", "_r", "variant"])["variant"].tolist())
    cmap = colormaps["tab10"]
    return {v: cmap(i % cmap.N) for i, v in enumerate(order)}


def plot_front(runs: RunSet, out_dir: str | Path, palette: Palette | None = None) -> Path | None:
    """Learning against forgetting for every job and blend, the Pareto front drawn; None for a
    sweep that compares no method or mitigation (see ``analysis.front.front_applies``)."""
    if not front_applies(runs):
        return None
    learning = learning_of(runs)
    if learning is None:
        return None
    pts = front_points(runs, learning).dropna(subset=["learning", "forgetting_pct"])
    if len(pts) < 2:
        return None
    colors = variant_colors(pts)
    contexts = sorted(pts["context"].unique())
    panels = [(c, pts[pts["context"] == c]) for c in contexts] if 1 < len(contexts) <= MAX_PANELS \
        else [("", pts)]
    fig, axes = panel_grid(1, len(panels), w=6.0, h=4.6)
    scale = 100.0 if learning.metric == "final_answer_acc" else 1.0
    for ax, (ctx, part) in zip(axes.flat, panels):
        _draw_panel(fig, ax, runs, part, learning, colors, scale)
        if ctx:
            ax.set_title(ctx, fontsize=10)
    handles = [Line2D([], [], color=c, marker="o", ls="", ms=7) for c in colors.values()]
    labels = list(colors)
    if (pts["kind"] == "blend").any():
        handles.append(Line2D([], [], color="#555555", marker="o", mfc="white", ls=":", ms=7))
        labels.append("weight blend (1 − t) · base + t · tuned,\njoined to its job (hollow)")
    if pts["base_learning"].notna().any():
        handles.append(Line2D([], [], color=BASE_COLOR, marker="*", ls="", ms=11))
        labels.append("base model")
    handles.append(Line2D([], [], color="black", ls="--", marker="o", mfc="none", ms=10))
    labels.append("Pareto front")
    handles += band_handles()
    labels += [h.get_label() for h in band_handles()]
    add_legend(fig, handles, labels, title="method / mitigation")
    n_blends = int((pts["kind"] == "blend").sum())
    add_header(fig, "Learning against forgetting: every way to fine-tune on one front",
               (f"filled = job, hollow = weight blend ({n_blends}); " if n_blends else "one point per job; ")
               + "up-left is better; circled = Pareto front\n"
               "(no other point learns more and forgets less); " + status_note(runs))
    return save_png(fig, out_dir, "front")


def _draw_panel(fig, ax, runs: RunSet, pts: pd.DataFrame, learning: Learning, colors: dict, scale: float) -> None:
    shade_band(ax, vertical=True)
    y = lambda v: scale * v  # noqa: E731
    # each job joined to its blends, from t = 1 (the job) down
    for job, group in pts.groupby("job", sort=False):
        if (group["kind"] == "blend").any():
            path = group.sort_values("t", ascending=False)
            ax.plot(path["forgetting_pct"], y(path["learning"]), color=colors[group.iloc[0]["variant"]],
                    lw=0.9, ls=":", zorder=2)
    for _, r in pts.iterrows():
        c = colors[r["variant"]]
        if r["kind"] == "blend":
            ax.scatter(r["forgetting_pct"], y(r["learning"]), s=POINT_S, facecolors="white", edgecolors=[c],
                       linewidths=1.4, zorder=3)
        else:
            ax.scatter(r["forgetting_pct"], y(r["learning"]), s=POINT_S, color=c, edgecolors="white",
                       linewidths=0.6, zorder=3)
    points = [(x, y(v)) for x, v in zip(pts["forgetting_pct"], pts["learning"])]
    sizes = [POINT_S] * len(pts)
    base = pts["base_learning"].dropna()
    if not base.empty:
        ax.scatter([0.0], [y(base.mean())], marker="*", s=BASE_S, color=BASE_COLOR, zorder=3)
        points.append((0.0, y(base.mean())))
        sizes.append(BASE_S)
    oriented = pts.assign(_up=learning.sign * pts["learning"])
    front = pts[pareto_mask(oriented, maximize=["_up"], minimize=["forgetting_pct"])].sort_values("forgetting_pct")
    fx, fy = front["forgetting_pct"].tolist(), [y(v) for v in front["learning"]]
    ax.plot(fx, fy, color="black", lw=1.2, ls="--", drawstyle="steps-post", zorder=2)
    ax.scatter(fx, fy, s=RING_S, facecolors="none", edgecolors="black", linewidths=1.3, zorder=4)
    points += list(zip(fx, fy))
    sizes += [RING_S] * len(fx)
    steps = [seg for i in range(len(fx) - 1)
             for seg in (((fx[i], fy[i]), (fx[i + 1], fy[i])), ((fx[i + 1], fy[i]), (fx[i + 1], fy[i + 1])))]
    named = pts if len(pts) <= MAX_NAMED else front
    # a job is named by its learning rate where its variant ran at several (its colour names the rest)
    n_lr = pts[pts["kind"] == "job"].groupby("variant")["lr"].nunique()
    named = named[(named["kind"] == "blend") | named["variant"].map(lambda v: n_lr.get(v, 0) > 1)
                  | (len(runs.seeds) > 0)]
    texts = [ax.annotate(_point_label(r, runs), (r["forgetting_pct"], y(r["learning"])), textcoords="offset points",
                         xytext=(8, 0), va="center", fontsize=6.5, color="#222222",
                         arrowprops=dict(arrowstyle="-", lw=0.5, color="#999999", shrinkA=1, shrinkB=5))
             for _, r in named.iterrows()]
    xs = list(pts["forgetting_pct"]) + [0.0]
    suffix = forgetting_axis(ax, xs, "x")
    ax.set_xlabel("forgetting: raw-text loss\nchange vs base (%)" + suffix.replace("\n", " "))
    ax.set_ylabel(learning.label)
    ys = [p[1] for p in points]
    lo, hi = min(ys), max(ys)
    span = max(hi - lo, 10.0 if scale == 100.0 else 0.05)
    ax.set_ylim(lo - 0.08 * span, lo + 1.08 * span)
    if learning.sign < 0:
        ax.invert_yaxis()  # lower loss is more learnt: up stays better
    if scale == 100.0:
        y_percent(ax)
    ax.grid(alpha=0.3)
    fit_labels(fig, ax, texts, points=points, point_sizes=sizes, segments=steps)


def _point_label(r: pd.Series, runs: RunSet) -> str:
    """A blend by its t; a job by its learning rate (and seed), its colour naming its method."""
    if r["kind"] == "blend":
        return f"t={fmt_num(r['t'])}"
    parts = [] if r["lr"] is None or (isinstance(r["lr"], float) and math.isnan(r["lr"])) \
        else [f"lr {fmt_value(key_of('lr'), r['lr'])}"]
    parts += [f"seed {fmt_num(r[s])}" for s in runs.seeds if s in r and r[s] is not None and not pd.isna(r[s])]
    return ", ".join(parts) or str(r["job"])
