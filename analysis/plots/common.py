"""What every figure of the report shares: sizes and colours, saving a PNG atomically, titles
and legends, the learning-rate and forgetting axes, facets, seed means and notes."""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from matplotlib.figure import Figure
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.patches import Patch, Rectangle
from matplotlib.text import Text
from matplotlib.transforms import Bbox, blended_transform_factory
from matplotlib.ticker import (
    FixedLocator, FuncFormatter, MaxNLocator, NullFormatter, NullLocator, PercentFormatter,
)

from analysis.collect import RunSet
from analysis.stats import strata, t_quantile_975
from analysis.style import (
    AGGRESSIVE_BAND, Palette, fmt_param, fmt_sci, setting_label, sorted_values,
)
from sft_sweep.jobfiles import atomic_path

DPI = 110
PANEL_W, PANEL_H = 4.6, 3.3
BAND_COLOR = "#d62728"
BAND_ALPHA = 0.12
ABOVE_ALPHA = 0.05
#: Far enough beyond any forgetting axis (%) for the "above the band" shading to reach its edge.
ABOVE_FAR = 1e9
BASE_COLOR = "#7f7f7f"
FACET_MAX_COLS = 4



def make_palette(runs: RunSet) -> Palette:
    return Palette(runs.jobs, runs.swept)




def panel_grid(nrows: int, ncols: int, *, w: float = PANEL_W, h: float = PANEL_H) -> tuple[Figure, np.ndarray]:
    fig = Figure(figsize=(w * ncols, h * nrows), layout="constrained")
    FigureCanvasAgg(fig)  # a renderer for measuring text (fit_labels); still no pyplot
    axes = fig.subplots(nrows, ncols, squeeze=False)
    return fig, axes


def save_png(fig: Figure, out_dir: Path, name: str) -> Path:
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    path = out_dir / f"{name}.png"
    with atomic_path(path) as tmp:
        fig.savefig(tmp, dpi=DPI, facecolor="white", format="png")
    return path


def add_header(fig: Figure, title: str, subtitle: str) -> None:
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


def add_legend(fig: Figure, handles: list, labels: list, title: str | None = None):
    """One legend for the figure, right of the panels (the layout engine makes room for it)."""
    if not handles:
        return None
    return fig.legend(handles, labels, title=title, loc="outside right center", frameon=False,
                      fontsize=9, title_fontsize=9, alignment="left")


def log_lr_axis(ax, values: Sequence[float]) -> None:
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


def shade_band(ax, *, vertical: bool = False) -> None:
    """Shade the forgetting threshold ``AGGRESSIVE_BAND`` and, lighter, everything beyond it:
    forgetting inside the band is where fine-tuning turns too aggressive, above it it is."""
    lo, hi = AGGRESSIVE_BAND
    span, line = (ax.axvspan, ax.axvline) if vertical else (ax.axhspan, ax.axhline)
    span(lo, hi, color=BAND_COLOR, alpha=BAND_ALPHA, lw=0, zorder=0)
    line(lo, color=BAND_COLOR, lw=0.8, ls=":", zorder=0)
    # Beyond the band up to the edge of the axes, whatever its limits turn out to be: an artist
    # added with add_artist does not widen the data limits the way a span would.
    if vertical:
        rect = Rectangle((hi, 0), ABOVE_FAR, 1, transform=blended_transform_factory(ax.transData, ax.transAxes))
    else:
        rect = Rectangle((0, hi), 1, ABOVE_FAR, transform=blended_transform_factory(ax.transAxes, ax.transData))
    rect.set(facecolor=BAND_COLOR, alpha=ABOVE_ALPHA, lw=0, zorder=0, gid="above-band")
    ax.add_artist(rect)


def band_handles() -> list[Patch]:
    """Legend entries of what ``shade_band`` shades, labelled with what each region means."""
    lo, hi = AGGRESSIVE_BAND
    return [Patch(facecolor=BAND_COLOR, alpha=BAND_ALPHA * 1.8,
                  label=f"{lo:g}–{hi:g}% forgetting: threshold of too aggressive SFT"),
            Patch(facecolor=BAND_COLOR, alpha=ABOVE_ALPHA * 1.8, label=f"above {hi:g}%: too aggressive")]


def fit_labels(fig: Figure, ax, labels: Sequence[Any], pad_px: float = 2.0,
               points: Sequence[tuple[float, float]] = (), point_px: float = 5.0,
               point_sizes: Sequence[float] = (),
               segments: Sequence[tuple[tuple[float, float], tuple[float, float]]] = ()) -> None:
    """Move value labels (annotations placed with an offset in points) so that each lies inside
    the axes and covers neither another label nor a data point of ``points`` (data coordinates,
    each a square of ``2 * point_px`` pixels, or, with ``point_sizes``, of the marker's own size:
    a scatter's ``s`` in points squared, one per point, so a large ring is avoided as a whole),
    nor a line of ``segments`` (pairs of data points, e.g. the steps of a Pareto front).

    A label that crosses the right or left edge goes to the other side of its point, one that
    crosses the top or bottom is moved inside, and overlapping labels are pushed apart
    vertically. Positions are measured on the laid-out figure, so the result holds for the
    saved PNG (offsets are in points, which scale with the dpi).
    """
    labels = [t for t in labels if t is not None]
    if not labels:
        return
    to_pt = 72.0 / fig.dpi
    # half the marker's width in pixels, plus one so a label does not touch its edge
    radii = [math.sqrt(s) / 2 / to_pt + 1 for s in point_sizes] if len(point_sizes) else [point_px] * len(points)

    def placement():
        return [(t.xyann, t.get_horizontalalignment()) for t in labels]

    drawn = None  # the placement at the last layout
    for _round in range(3):
        if placement() == drawn:
            break  # nothing moved since the last layout: another round would decide the same
        drawn = placement()
        fig.draw_without_rendering()
        renderer = fig.canvas.get_renderer()
        box = ax.get_window_extent(renderer)
        for t in labels:
            bb = text_box(t, renderer)
            dx, dy = t.xyann
            if bb.x1 > box.x1 - pad_px and dx >= 0:
                t.xyann = (-abs(dx), dy)
                t.set_horizontalalignment("right")
            elif bb.x0 < box.x0 + pad_px and dx <= 0:
                t.xyann = (abs(dx), dy)
                t.set_horizontalalignment("left")
        for _ in range(20):  # pairwise pushes; a few passes settle a handful of labels
            moved = False
            boxes = [text_box(t, renderer) for t in labels]
            for i in range(len(labels)):
                for j in range(i + 1, len(labels)):
                    bi, bj = boxes[i], boxes[j]
                    if bi.overlaps(bj):
                        lo_i, hi_i = (i, j) if (bi.y0 + bi.y1) <= (bj.y0 + bj.y1) else (j, i)
                        overlap_y = min(bi.y1, bj.y1) - max(bi.y0, bj.y0)
                        push = (overlap_y + 2) / 2 * to_pt
                        labels[lo_i].xyann = (labels[lo_i].xyann[0], labels[lo_i].xyann[1] - push)
                        labels[hi_i].xyann = (labels[hi_i].xyann[0], labels[hi_i].xyann[1] + push)
                        # only these two moved; a label's box depends on its own offset alone
                        boxes[lo_i], boxes[hi_i] = text_box(labels[lo_i], renderer), text_box(labels[hi_i], renderer)
                        moved = True
            marks = [Bbox.from_extents(x - r, y - r, x + r, y + r)
                     for (x, y), r in zip(ax.transData.transform(points), radii)] if len(points) else []
            marks += _segment_marks(ax, segments)
            for t in labels:  # off the data points, to the side the label's own point is not
                bb = text_box(t, renderer)
                for mark in marks:
                    if bb.overlaps(mark):
                        # the smaller move that keeps the label inside the axes
                        shifts = sorted((mark.y1 - bb.y0 + 1, -(bb.y1 - mark.y0 + 1)), key=abs)
                        fits = [d for d in shifts if box.y0 + pad_px <= bb.y0 + d and bb.y1 + d <= box.y1 - pad_px]
                        shift = (fits or shifts)[0]
                        t.xyann = (t.xyann[0], t.xyann[1] + shift * to_pt)
                        bb = text_box(t, renderer)
                        moved = True
            for t in labels:  # back inside the top and bottom edges
                bb = text_box(t, renderer)
                dx, dy = t.xyann
                if bb.y1 > box.y1 - pad_px:
                    t.xyann = (dx, dy - (bb.y1 - box.y1 + pad_px) * to_pt)
                    moved = True
                elif bb.y0 < box.y0 + pad_px:
                    t.xyann = (dx, dy + (box.y0 + pad_px - bb.y0) * to_pt)
                    moved = True
            if not moved:
                break


def _segment_marks(ax, segments, step_px: float = 3.0, half_px: float = 1.5) -> list[Bbox]:
    """Small boxes along each segment (display coordinates), for labels to keep off a line."""
    out = []
    for a, b in segments:
        (x0, y0), (x1, y1) = ax.transData.transform([a, b])
        n = max(1, int(math.hypot(x1 - x0, y1 - y0) / step_px))
        for i in range(n + 1):
            x, y = x0 + (x1 - x0) * i / n, y0 + (y1 - y0) * i / n
            out.append(Bbox.from_extents(x - half_px, y - half_px, x + half_px, y + half_px))
    return out


def text_box(label, renderer):
    """Display box of a label's text alone (an annotation's own extent includes its arrow)."""
    if hasattr(label, "update_positions"):
        label.update_positions(renderer)
    return Text.get_window_extent(label, renderer)


def split_facets(done: pd.DataFrame, cols: Sequence[str]) -> list[tuple[dict[str, Any], pd.DataFrame]]:
    """Sub-tables of ``done`` per combination of ``cols`` (one facet when ``cols`` is empty)."""
    out = strata(done, cols)
    if not cols:
        return out
    order = {c: {v: i for i, v in enumerate(sorted_values(done[c]))} for c in cols}
    out.sort(key=lambda kv: tuple(order[c].get(kv[0][c], -1) for c in cols))
    return out


MAX_FACETS = 12
#: More line series than this (a search) are not drawn one per combination.
MAX_SERIES = 8


def facet_columns(done: pd.DataFrame, cols: Sequence[str]) -> list[str]:
    """The settings to split panels by: none when that would give more than ``MAX_FACETS``
    panels (a random / Optuna search, where every job has its own combination)."""
    cols = list(cols)
    n = len(done.groupby(cols, dropna=False)) if cols and not done.empty else 1
    return cols if n <= MAX_FACETS else []


def facet_ncols(done: pd.DataFrame, facet_cols: Sequence[str], n_facets: int) -> int:
    """Columns of the facet grid: the values of the last facet setting when the facets form a
    full grid (rows then read as the other setting), else a balanced wrap of at most 4."""
    if len(facet_cols) >= 2:
        n_last = len(present_values(done, facet_cols[-1]))
        if 2 <= n_last <= 5 and n_facets % n_last == 0:
            return n_last
    blocks = math.ceil(n_facets / FACET_MAX_COLS)
    return max(1, math.ceil(n_facets / blocks))


def mean_curve(rows: pd.DataFrame) -> pd.DataFrame:
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


def smooth(rows: pd.DataFrame) -> pd.DataFrame:
    """Exponential moving average of each job's curve (span ~ 1/20 of its points)."""
    parts = []
    for _, part in rows.sort_values("step").groupby("job", sort=False):
        span = max(1, round(len(part) / 20))
        part = part.copy()
        if span > 1:
            part["value"] = part["value"].ewm(span=span, adjust=True).mean()
        parts.append(part)
    return pd.concat(parts, ignore_index=True) if parts else rows


def with_n(label: str, ns: Sequence[int], runs: RunSet) -> str:
    """``label (n=2)`` when the sweep has seeds (how many completed), else just ``label``."""
    return f"{label} ({n_text(ns)})" if runs.seeds else label


def range_err(values: pd.Series) -> list[list[float]]:
    """Error-bar extents from the mean down to the min and up to the max (never negative)."""
    m = float(values.mean())
    return [[max(0.0, m - float(values.min()))], [max(0.0, float(values.max()) - m)]]


def n_text(ns: Sequence[int]) -> str:
    ns = sorted({int(n) for n in ns if n and not pd.isna(n)})
    if not ns:
        return "n=0"
    return f"n={ns[0]}" if len(ns) == 1 else f"n={ns[0]}–{ns[-1]}"


def status_note(runs: RunSet) -> str:
    total = len(runs.jobs)
    done = int(runs.jobs["done"].sum())
    if done == total:
        return f"{done} jobs"
    other = {k: v for k, v in runs.status_counts().items() if k not in ("completed", "skipped")}
    rest = ", ".join(f"{v} {k}" for k, v in sorted(other.items()))
    return f"{done} of {total} jobs completed ({rest}: not shown)"


def seed_note(runs: RunSet, *, curves: bool = False) -> str:
    n = runs.n_seeds()
    if runs.seeds and n > 1:
        if curves:
            return f"line = mean of up to {n} seeds, band = range over the seeds"
        return f"mean of up to {n} seeds, error bars = 95% CI"
    return "one run per setting (no seed replicates)"


def missing_note(ax, col: str, wanted: Sequence[Any], shown: Sequence[Any]) -> None:
    """Say inside a facet which values have no completed job there."""
    missing = [v for v in wanted if v not in set(shown)]
    if missing:
        ax.text(0.98, 0.98, "no completed job: " + ", ".join(fmt_param(col, v) for v in missing),
                transform=ax.transAxes, ha="right", va="top", fontsize=7.5, color="#555555", zorder=1,
                bbox=dict(boxstyle="round,pad=0.2", fc="white", ec="#cccccc", alpha=0.7))  # under the data


def facet_title(key: dict[str, Any]) -> str:
    return setting_label(key, list(key)) if key else ""


#: Smallest span (percentage points) a % axis shows: a flat series would otherwise get ticks a
#: fraction of a point apart, all printed as the same whole percentage ("0%, 0%, -0%").
MIN_PERCENT_SPAN = 5.0


def y_percent(ax) -> None:
    lo, hi = ax.get_ylim()
    if hi - lo < MIN_PERCENT_SPAN:
        mid = (lo + hi) / 2
        lo, hi = mid - MIN_PERCENT_SPAN / 2, mid + MIN_PERCENT_SPAN / 2
        if lo < 0 <= (lo + hi) / 2:
            lo, hi = 0.0, MIN_PERCENT_SPAN  # shares are never negative: start the axis at 0
        ax.set_ylim(lo, hi)
    ax.yaxis.set_major_formatter(PercentFormatter(decimals=0))


def signed_percent(ax, axis: str = "y") -> None:
    target = ax.yaxis if axis == "y" else ax.xaxis
    target.set_major_locator(MaxNLocator(nbins=7, steps=[1, 2, 5, 10]))
    target.set_major_formatter(FuncFormatter(lambda v, _: f"{v:+.0f}%" if v else "0%"))


#: Forgetting above this (%) switches its axis to a symmetric log scale, so that a sweep with
#: +10% and +700% jobs still shows the small values and the 10-15% band.
SYMLOG_ABOVE = 150.0
NICE_TICKS = (0, 5, 10, 20, 50, 100, 200, 500, 1000, 2000, 5000, 10000)


def forgetting_axis(ax, values, axis: str = "y") -> str:
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
        signed_percent(ax, axis)
        return ""
    lin = AGGRESSIVE_BAND[0]
    set_scale("symlog", linthresh=lin, linscale=0.6)
    set_lim(lo * 1.3 - 1 if lo < 0 else -1, hi * 1.3)
    nice = NICE_TICKS if axis == "y" else (0, 10, 100, 1000, 10000)  # an x axis has less room for labels
    ticks = [t for t in nice if t <= hi * 1.3] + [-t for t in nice if t and -t >= lo * 1.3]
    target.set_major_locator(FixedLocator(sorted(ticks)))
    target.set_minor_locator(NullLocator())
    target.set_major_formatter(FuncFormatter(lambda v, _: f"{v:+.0f}%" if v else "0%"))
    return f"\n(log scale above {lin:g}%)"


def present_values(df: pd.DataFrame, col: str) -> list:
    return sorted_values(df[col]) if col in df else []


def series_cols(runs: RunSet, exclude: Sequence[str]) -> tuple[str | None, str | None]:
    """Which swept settings become colour and line style (epochs and replay first)."""
    rest = [c for c in runs.params if c not in exclude]
    pref = [c for c in rest if runs.axis("epochs") == c or runs.axis("replay") == c]
    ordered = pref + [c for c in rest if c not in pref]
    return (ordered[0] if ordered else None), (ordered[1] if len(ordered) > 1 else None)
