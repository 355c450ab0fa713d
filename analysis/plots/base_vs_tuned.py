"""The base model against the tuned models, metric by metric."""

from __future__ import annotations

from pathlib import Path

from matplotlib.patches import Patch

from analysis.collect import RunSet
from analysis.plots.common import (
    BASE_COLOR, add_header, add_legend, facet_title, make_palette, panel_grid, present_values,
    range_err, save_png, split_facets, status_note, y_percent,
)
from analysis.style import Palette, col_name, fmt_param


BAR_NAMES = {"follow_rate": "follow rate", "answer_acc": "answer\naccuracy",
             "answer_mc_acc": "answer\nmultiple-choice", "knowledge_acc": "knowledge probe\naccuracy",
             "knowledge_mc_acc": "knowledge probe\nmultiple-choice"}
METRICS = tuple(BAR_NAMES)
#: Panels side by side at most; a sweep with more combinations of the other settings (a search)
#: gets one panel whose bars say what they average over.
MAX_PANELS = 4
#: Room above 100% for a bar's value label.
Y_TOP = 114


def _denominator(metric: str) -> str:
    """What a rate counts: the knowledge metrics ask probe questions (facts only pre-training
    saw), the others held-out prompts of the SFT data's kind."""
    return "probe questions" if metric.startswith("knowledge") else "held-out prompts"


def bar_metrics(done) -> list[str]:
    """The rates both the base model and some tuned job report."""
    return [m for m in METRICS
            if f"final_{m}" in done and done[f"final_{m}"].notna().any()
            and f"base_{m}" in done and done[f"base_{m}"].notna().any()]


def base_vs_tuned_caption(runs: RunSet) -> str:
    """The caption names the rates the figure has (own data has no answer key and no probe)."""
    metrics = bar_metrics(runs.done_jobs())
    fmt = [m for m in metrics if not m.startswith("knowledge")]
    probe = [m for m in metrics if m.startswith("knowledge")]
    parts = []
    if fmt:
        names = [BAR_NAMES[m].replace("\n", " ") for m in fmt]
        names = names[0] if len(names) == 1 else ", ".join(names[:-1]) + " and " + names[-1]
        parts.append(f"what SFT teaches ({names})")
    if probe:
        parts.append("the knowledge probe, which shows whether it added facts")
    return "Base model against tuned models: " + ("; ".join(parts) or "the rates both report") + "."


def plot_base_vs_tuned(runs: RunSet, out_dir: str | Path, palette: Palette | None = None) -> Path | None:
    """Base model vs tuned models on each evaluation rate: what SFT changes (following the
    format, answering) and what it does not (the knowledge probe). One panel per combination
    of the swept settings other than the bar colour (replay ratio, epochs, ...), so no bar
    averages over a swept setting unless the panels would be too many, and then it says so."""
    done = runs.done_jobs()
    metrics = bar_metrics(done)
    if not metrics or done.empty:
        return None
    palette = palette or make_palette(runs)
    group = runs.axis("lr") or (runs.params[0] if runs.params else None)
    gvals = present_values(done, group) if group else [None]
    others = [c for c in runs.params if c != group]
    facets = split_facets(done, others)
    pooled = others if len(facets) > MAX_PANELS else []
    if pooled:
        facets = [({}, done)]
    nbars = 1 + len(gvals)
    width = 0.84 / nbars
    # Beyond four bars a metric's value labels are wider than their bars: turned upright they fit.
    rotation = 90 if nbars > 4 else 0
    # One panel per row: side by side, five metrics' tick labels would run into each other.
    fig, axes = panel_grid(len(facets), 1, w=max(6.5, 2.1 * len(metrics) + 1.5), h=4.0 if len(facets) == 1 else 3.4)
    one_job_bars = True
    for ax, (key, part_f) in zip(axes.flat, facets):
        for mi, m in enumerate(metrics):
            x0 = mi - 0.42
            base = 100 * part_f[f"base_{m}"].dropna()
            if not base.empty:
                # One base model per sweep: its value, a range only when the jobs' bases differ.
                spread = len(base) > 1 and base.max() > base.min()
                bars = ax.bar(x0 + width * 0.5, base.mean(), width=width * 0.92, color=BASE_COLOR,
                              yerr=range_err(base) if spread else None, capsize=3)
                ax.bar_label(bars, fmt="%.0f%%", fontsize=7, padding=2, rotation=rotation)
            for gi, g in enumerate(gvals):
                part = part_f if group is None else part_f[part_f[group] == g]
                vals = 100 * part[f"final_{m}"].dropna()
                if vals.empty:
                    continue
                one_job_bars &= len(vals) == 1
                x = x0 + width * (gi + 1.5)
                bars = ax.bar(x, vals.mean(), width=width * 0.92,
                              color=palette.color(group, g) if group else "#1f4e79",
                              yerr=range_err(vals) if len(vals) > 1 else None, capsize=3)
                ax.bar_label(bars, fmt="%.0f%%", fontsize=7, padding=2, rotation=rotation)
        ax.set_xticks(range(len(metrics)))
        ax.set_xticklabels([f"{BAR_NAMES[m]}\n(% of {_denominator(m)})" for m in metrics], fontsize=8)
        ylabel = ("% of items: held-out prompts or probe questions"
                  if any(m.startswith("knowledge") for m in metrics) else "% of held-out prompts")
        if len(facets) == 1:
            ax.set_ylabel(ylabel)
        ax.set_ylim(0, Y_TOP)
        y_percent(ax)
        ax.set_yticks(range(0, 101, 20))
        ax.grid(alpha=0.3, axis="y")
        if key:
            ax.set_title(facet_title(key), fontsize=10)
        probe = [i for i, m in enumerate(metrics) if m.startswith("knowledge")]
        if probe and probe[0] > 0:
            ax.axvline(probe[0] - 0.5, color="#444444", lw=0.8, ls=":")
    if len(facets) > 1:  # one label for the stacked panels: one per panel runs past its panel's height
        fig.supylabel(ylabel, fontsize=10)
    handles = [Patch(facecolor=BASE_COLOR)] + [Patch(facecolor=palette.color(group, g) if group else "#1f4e79")
                                               for g in gvals]
    labels = ["base model"] + [f"tuned, {fmt_param(group, g)}" if group else "tuned" for g in gvals]
    add_legend(fig, handles, labels)
    if pooled:
        what = f"bars = mean over {' and '.join(col_name(c) for c in pooled)} (too many combinations for a panel each)"
    elif one_job_bars:
        what = "each bar one job" + (f"; panels: {', '.join(col_name(c) for c in others)}" if others else "")
    else:
        what = "bars = mean over seeds" + (f"; panels: {', '.join(col_name(c) for c in others)}" if others else "")
    whiskers = "" if one_job_bars else ", whiskers = min–max (none for one job)"
    probe_note = ("\nright of the dotted line: the knowledge probe, facts the SFT data never asks about"
                  if any(m.startswith("knowledge") for m in metrics) else "")
    has_probe = any(m.startswith("knowledge") for m in metrics)
    add_header(fig, "What SFT changes: answering in format vs knowing facts" if has_probe
               else "What SFT changes: the base model against the tuned models",
               f"{what}{whiskers}; {status_note(runs)}{probe_note}")
    return save_png(fig, out_dir, "base_vs_tuned")
