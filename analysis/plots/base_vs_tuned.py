"""The base model against the tuned models, metric by metric."""

from __future__ import annotations

from pathlib import Path

from matplotlib.patches import Patch

from analysis.collect import RunSet
from analysis.plots.common import (
    BASE_COLOR, add_header, add_legend, make_palette, panel_grid, present_values, range_err,
    save_png, status_note, y_percent,
)
from analysis.style import Palette, col_name, fmt_param


BAR_NAMES = {"follow_rate": "follow rate", "answer_acc": "answer\naccuracy",
             "answer_mc_acc": "answer\nmultiple-choice", "knowledge_acc": "knowledge probe\naccuracy",
             "knowledge_mc_acc": "knowledge probe\nmultiple-choice"}


def _denominator(metric: str) -> str:
    """What a rate counts: the knowledge metrics ask probe questions (facts only pre-training
    saw), the others held-out prompts of the SFT data's kind."""
    return "probe questions" if metric.startswith("knowledge") else "held-out prompts"


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
    gvals = present_values(done, group) if group else [None]
    nbars = 1 + len(gvals)
    width = 0.84 / nbars
    fig, axes = panel_grid(1, 1, w=max(6.5, 2.1 * len(metrics) + 1.5), h=4.0)
    ax = axes[0, 0]
    for mi, m in enumerate(metrics):
        x0 = mi - 0.42
        base = 100 * done[f"base_{m}"].dropna()
        bars = ax.bar(x0 + width * 0.5, base.mean(), width=width * 0.92, color=BASE_COLOR,
                      yerr=range_err(base) if len(base) > 1 else None, capsize=3)
        ax.bar_label(bars, fmt="%.0f%%", fontsize=7, padding=2)
        for gi, g in enumerate(gvals):
            part = done if group is None else done[done[group] == g]
            vals = 100 * part[f"final_{m}"].dropna()
            if vals.empty:
                continue
            x = x0 + width * (gi + 1.5)
            bars = ax.bar(x, vals.mean(), width=width * 0.92,
                          color=palette.color(group, g) if group else "#1f4e79",
                          yerr=range_err(vals) if len(vals) > 1 else None, capsize=3)
            ax.bar_label(bars, fmt="%.0f%%", fontsize=7, padding=2)
    ax.set_xticks(range(len(metrics)))
    ax.set_xticklabels([f"{BAR_NAMES[m]}\n(% of {_denominator(m)})" for m in metrics], fontsize=8)
    ax.set_ylabel("% of items: held-out prompts or probe questions")
    ax.set_ylim(0, 105)
    y_percent(ax)
    ax.grid(alpha=0.3, axis="y")
    if "knowledge_mc_acc" in metrics or "knowledge_acc" in metrics:
        first_k = min(metrics.index(m) for m in metrics if m.startswith("knowledge"))
        ax.axvline(first_k - 0.5, color="#444444", lw=0.8, ls=":")
        ax.text(first_k - 0.45, 101, "knowledge probe: facts the SFT data never asks about",
                fontsize=8, color="#444444", va="bottom")
    handles = [Patch(facecolor=BASE_COLOR)] + [Patch(facecolor=palette.color(group, g) if group else "#1f4e79")
                                               for g in gvals]
    labels = ["base model"] + [f"tuned, {fmt_param(group, g)}" if group else "tuned" for g in gvals]
    add_legend(fig, handles, labels)
    pooled = [col_name(c) for c in runs.swept if c != group]
    over = f"mean over {' and '.join(pooled)}" if pooled else "mean over completed jobs"
    add_header(fig, "What SFT changes: answering in format vs knowing facts",
               f"bars = {over}, whiskers = min–max (none for one job); {status_note(runs)}")
    return save_png(fig, out_dir, "base_vs_tuned")
