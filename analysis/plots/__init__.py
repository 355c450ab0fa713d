"""Figures of a sweep, as PNG files.

Every function takes a ``RunSet`` and an output directory and returns the path of the PNG it
wrote, or ``None`` when the sweep lacks what the figure needs (the learning-rate comparison of
a sweep that did not vary the learning rate, ...). Only completed jobs are drawn.

Conventions in all figures: the title says what the figure answers and the subtitle how to
read it, axes carry units, the learning rate is on a log axis, legends sit outside the data,
and a value keeps its colour in every figure (``Palette``). With several seeds a curve is the
seed mean with the seeds' range as a band, a final value the seed mean with its 95% confidence
interval as error bar, and ``n`` (completed seeds) is shown.

Matplotlib is used through ``Figure`` objects only (no pyplot), so importing this module
never changes the caller's backend and works headless.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from pathlib import Path

from analysis.collect import RunSet
from analysis.front import front_applies
from analysis.groups import group_columns, split_runs
from analysis.plots.base_vs_tuned import base_vs_tuned_caption, plot_base_vs_tuned
from analysis.plots.categories import plot_categories
from analysis.plots.common import make_palette
from analysis.plots.forgetting import plot_forgetting, plot_forgetting_curves
from analysis.plots.front import front_caption, plot_front
from analysis.plots.lr import plot_lr_comparison
from analysis.plots.mixing import mixing_caption, plot_mixing
from analysis.plots.seeds import plot_seeds
from analysis.plots.tradeoff import plot_tradeoff, tradeoff_caption
from analysis.style import AGGRESSIVE_BAND

__all__ = [
    "PLOTS", "plot_all", "plot_lr_comparison", "plot_forgetting", "plot_forgetting_curves",
    "plot_mixing", "plot_tradeoff", "plot_categories", "plot_seeds", "plot_base_vs_tuned",
    "make_palette", "figure_caption", "left_out_sentence", "plot_front",
]


#: (name, function, caption) in report order; a caption that depends on the sweep is a function of it.
PLOTS: list[tuple[str, Callable[..., Path | None], str | Callable[[RunSet], str]]] = [
    ("lr_comparison", plot_lr_comparison,
     "Training loss (top) and held-out response loss (bottom) against optimizer step, one line "
     "per learning rate; columns split the other swept settings."),
    ("forgetting_vs_lr", plot_forgetting,
     "Forgetting (raw-text loss change against the base model) at the end of training, against "
     f"the learning rate. The darker band marks {AGGRESSIVE_BAND[0]:g}-{AGGRESSIVE_BAND[1]:g}%, the "
     "threshold where fine-tuning turns too aggressive; everything above it (lighter shading) is."),
    ("forgetting_vs_step", plot_forgetting_curves,
     "How forgetting builds up during training (eval rows, relative to step 0)."),
    ("mixing", plot_mixing, mixing_caption),
    ("tradeoff", plot_tradeoff, tradeoff_caption),
    ("front", plot_front, front_caption),
    ("categories", plot_categories,
     "Text-valued settings (template, data format, model) compared side by side."),
    ("seeds", plot_seeds,
     "Seed-to-seed spread per setting with 95% confidence intervals."),
    ("base_vs_tuned", plot_base_vs_tuned, base_vs_tuned_caption),
]


#: Why each figure may have nothing to draw: what it needs that the sweep lacks.
NEEDS = {
    "lr_comparison": "two or more learning rates with loss curves",
    "forgetting_vs_lr": "two or more learning rates with a forgetting value",
    "forgetting_vs_step": "raw-text loss at two or more evaluation steps",
    "mixing": "two or more replay ratios",
    "tradeoff": "forgetting and a follow rate or answer accuracy on two or more jobs",
    "front": "forgetting and a learning metric on two or more jobs or blends",
    "categories": "a swept text-valued setting (template, data format, model)",
    "seeds": "two or more seeds of a setting",
    "base_vs_tuned": "a rate measured on both the base model and a tuned job",
}
#: Figures drawn only for some sweeps: where ``applies`` is false, the figure is not listed as left out.
ONLY_FOR = {"front": front_applies}
#: Between a figure's name and its group's label in the keys ``plot_all`` returns.
GROUP_SEP = " · "


def _slug(label: str) -> str:
    return re.sub(r"[^A-Za-z0-9.]+", "-", label).strip("-") or "group"


def _groups(runs: RunSet) -> list[tuple[str | None, RunSet]]:
    """The job groups figures are drawn for: one per group of sweeps that do not share data,
    model or template (their numbers are never drawn in one panel), else the whole RunSet."""
    cols = group_columns(runs)
    return [(label, sub) for label, sub in split_runs(runs, cols)] if cols else [(None, runs)]


def plot_all(runs: RunSet, out_dir: str | Path, *, on_error: Callable[[str, Exception], None] | None = None,
             left_out: list[str] | None = None) -> dict[str, Path]:
    """Every figure the sweep supports, as ``{name: path}``. A figure that fails is passed to
    ``on_error`` (or re-raised without one) and the others are still drawn; figures with nothing
    to draw are appended to ``left_out`` as ``"name (needs ...)"``.

    Sweeps of different groups (``analysis.groups``) get each figure once per group, in a folder
    of its own, keyed ``name · group label``; colours stay the same across the groups."""
    palette = make_palette(runs)
    written: dict[str, Path] = {}
    for label, sub in _groups(runs):
        folder = Path(out_dir) if label is None else Path(out_dir) / _slug(label)
        for name, fn, _caption in PLOTS:
            key = name if label is None else f"{name}{GROUP_SEP}{label}"
            try:
                path = fn(sub, folder, palette)
            except Exception as exc:  # noqa: BLE001
                if on_error is None:
                    raise
                on_error(key, exc)
                continue
            if path is not None:
                written[key] = path
            elif left_out is not None and ONLY_FOR.get(name, lambda _runs: True)(sub):
                left_out.append(f"{key} (needs {NEEDS[name]})")
    return written


def figure_caption(key: str, runs: RunSet) -> str:
    """The caption of a figure ``plot_all`` returned, computed on the jobs it drew."""
    name, _, label = key.partition(GROUP_SEP)
    sub = next((s for lab, s in _groups(runs) if lab == label), runs) if label else runs
    caption = next((cap for n, _fn, cap in PLOTS if n == name), name)
    text = caption(sub) if callable(caption) else caption
    return f"{label}: {text}" if label else text


def left_out_sentence(left_out: list[str]) -> str:
    """One line naming the figures left out and what each needs."""
    return "Left out, as these jobs have nothing for them to draw: " + "; ".join(left_out) + "."
