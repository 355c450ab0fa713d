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

from collections.abc import Callable
from pathlib import Path

from analysis.collect import RunSet
from analysis.plots.base_vs_tuned import base_vs_tuned_caption, plot_base_vs_tuned
from analysis.plots.categories import plot_categories
from analysis.plots.common import make_palette
from analysis.plots.forgetting import plot_forgetting, plot_forgetting_curves
from analysis.plots.lr import plot_lr_comparison
from analysis.plots.mixing import plot_mixing
from analysis.plots.seeds import plot_seeds
from analysis.plots.tradeoff import plot_tradeoff, tradeoff_caption
from analysis.style import AGGRESSIVE_BAND

__all__ = [
    "PLOTS", "plot_all", "plot_lr_comparison", "plot_forgetting", "plot_forgetting_curves",
    "plot_mixing", "plot_tradeoff", "plot_categories", "plot_seeds", "plot_base_vs_tuned",
    "make_palette",
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
    ("mixing", plot_mixing,
     "Replaying pre-training text: forgetting and follow rate against the replay ratio."),
    ("tradeoff", plot_tradeoff, tradeoff_caption),
    ("categories", plot_categories,
     "Text-valued settings (template, data format, model) compared side by side."),
    ("seeds", plot_seeds,
     "Seed-to-seed spread per setting with 95% confidence intervals."),
    ("base_vs_tuned", plot_base_vs_tuned, base_vs_tuned_caption),
]


def plot_all(runs: RunSet, out_dir: str | Path, *, on_error: Callable[[str, Exception], None] | None = None,
             left_out: list[str] | None = None) -> dict[str, Path]:
    """Every figure the sweep supports, as ``{name: path}``. A figure that fails is passed to
    ``on_error`` (or re-raised without one) and the others are still drawn; the names of the
    figures with nothing to draw in this sweep are appended to ``left_out``."""
    palette = make_palette(runs)
    written: dict[str, Path] = {}
    for name, fn, _caption in PLOTS:
        try:
            path = fn(runs, out_dir, palette)
        except Exception as exc:  # noqa: BLE001
            if on_error is None:
                raise
            on_error(name, exc)
            continue
        if path is not None:
            written[name] = path
        elif left_out is not None:
            left_out.append(name)
    return written
