"""Every figure is written as a non-empty PNG when the sweep has its axis, and skipped otherwise."""

from __future__ import annotations

import pytest

from analysis import plots
from analysis_helpers import make_sweep

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def _is_png(path) -> bool:
    data = path.read_bytes()
    return data.startswith(PNG_MAGIC) and len(data) > 5000


@pytest.fixture(scope="module")
def demo_plots(demo_report):
    """The figures the report of the demo sweep drew (drawn once per session)."""
    return demo_report.plots


@pytest.fixture(scope="module")
def rich_plots(rich_runs, tmp_path_factory):
    """The figures only a sweep with a replay axis and a text-valued axis has."""
    out = tmp_path_factory.mktemp("plots_rich")
    written = {}
    for name, fn in (("mixing", plots.plot_mixing), ("categories", plots.plot_categories),
                     ("seeds", plots.plot_seeds)):
        path = fn(rich_runs, out)
        if path is not None:
            written[name] = path
    return written


def test_every_plot_function_writes_a_png(demo_plots, rich_plots):
    written = set(demo_plots) | set(rich_plots)
    # the learning-forgetting front needs a sweep of methods or blends: drawn in test_front.py
    assert written == {name for name, _fn, _cap in plots.PLOTS} - {"front"}
    for path in list(demo_plots.values()) + list(rich_plots.values()):
        assert _is_png(path), path


def test_demo_sweep_figures(demo_plots):
    # lr x epochs x seeds: no replay axis, no text-valued axis
    assert set(demo_plots) == {"lr_comparison", "forgetting_vs_lr", "forgetting_vs_step", "tradeoff",
                               "seeds", "base_vs_tuned"}


def test_rich_sweep_figures(rich_plots):
    assert set(rich_plots) == {"mixing", "categories"}  # one seed: no seed figure


@pytest.mark.parametrize("fn", [plots.plot_lr_comparison, plots.plot_forgetting, plots.plot_mixing,
                                plots.plot_categories, plots.plot_seeds])
def test_missing_axis_gives_none(fn, tmp_path):
    from analysis.collect import collect_runs

    d = make_sweep(tmp_path / "one_lr", lrs=(1e-4,), epochs=(1, 2), seeds=(0,))
    assert fn(collect_runs(d), tmp_path / "out") is None


def test_single_job_sweep_does_not_crash(tmp_path):
    from analysis.collect import collect_runs

    d = make_sweep(tmp_path / "single", lrs=(1e-4,), epochs=(1,), seeds=(0,))
    written = plots.plot_all(collect_runs(d), tmp_path / "out")
    assert set(written) <= {"forgetting_vs_step", "base_vs_tuned"}
    for p in written.values():
        assert _is_png(p)


def test_palette_is_consistent_across_figures(demo_runs):
    pal = plots.make_palette(demo_runs)
    again = plots.make_palette(demo_runs)
    for lr in (1e-5, 1e-4, 1e-3):
        assert pal.color("optim.lr", lr) == again.color("optim.lr", lr)
    assert len({pal.color("optim.lr", v) for v in (1e-5, 1e-4, 1e-3)}) == 3


def test_plots_do_not_touch_pyplot_state(demo_plots):
    import sys

    if "matplotlib.pyplot" in sys.modules:  # another test may have imported it; then no figures left open
        import matplotlib.pyplot as plt

        assert plt.get_fignums() == []


def test_constant_values_do_not_give_negative_error_bars(tmp_path):
    """mean([0.1, 0.1, 0.1]) > 0.1 in floating point: whiskers must still be drawable."""
    from analysis.collect import collect_runs
    from analysis_helpers import BASE_EVAL, make_results_sweep

    base = {**BASE_EVAL, "follow_rate": 0.1, "knowledge_mc_acc": 0.1}
    jobs = [{"params": {"optim.lr": lr}, "final": {"follow_rate": 0.1}} for lr in (1e-5, 1e-4, 1e-3)]
    runs = collect_runs(make_results_sweep(tmp_path / "s", jobs, base=base))
    assert _is_png(plots.plot_base_vs_tuned(runs, tmp_path / "out"))


def test_forgetting_axis_switches_to_symlog_for_huge_values():
    from matplotlib.figure import Figure

    ax = Figure().subplots()
    assert plots.common.forgetting_axis(ax, [2.0, 9.0]) == "" and ax.get_yscale() == "linear"
    lo, hi = ax.get_ylim()
    assert lo <= 0 and hi >= 15  # zero and the 10-15% band always in view
    ax = Figure().subplots()
    assert "log scale" in plots.common.forgetting_axis(ax, [9.5, 790.0], "x") and ax.get_xscale() == "symlog"


def test_search_like_sweep_is_not_split_into_one_panel_per_job(tmp_path):
    """An Optuna-style sweep: every job its own lr and warmup; figures still draw, unfaceted."""
    from analysis.collect import collect_runs
    from analysis_helpers import make_results_sweep

    jobs = [{"params": {"optim.lr": 10 ** (-5 + i / 5), "optim.warmup_steps": 3 * i},
             "final": {"raw_loss": 1.21 * (1 + i / 100), "follow_rate": i / 20}} for i in range(16)]
    runs = collect_runs(make_results_sweep(tmp_path / "s", jobs))
    assert plots.common.facet_columns(runs.done_jobs(), ["optim.warmup_steps"]) == []
    for fn in (plots.plot_lr_comparison, plots.plot_forgetting, plots.plot_forgetting_curves):
        assert _is_png(fn(runs, tmp_path / "out"))


def _labelled_axes(offsets):
    from analysis.plots.common import panel_grid

    fig, axes = panel_grid(1, 1)
    ax = axes[0, 0]
    ax.set_xlim(0, 10)
    ax.set_ylim(0, 10)
    labels = [ax.annotate(f"label {i}", (x, y), xytext=(4, 0), textcoords="offset points")
              for i, (x, y) in enumerate(offsets)]
    return fig, ax, labels


def test_label_fitting_lays_out_again_only_while_labels_move(monkeypatch):
    from matplotlib.figure import Figure

    from analysis.plots.common import fit_labels

    draws = []
    real = Figure.draw_without_rendering
    monkeypatch.setattr(Figure, "draw_without_rendering", lambda self: (draws.append(1), real(self)))
    fig, ax, labels = _labelled_axes([(1, 1), (1, 8), (5, 5)])      # apart: nothing to move
    fit_labels(fig, ax, labels)
    assert len(draws) == 1
    draws.clear()
    fig, ax, labels = _labelled_axes([(2, 5), (2, 5.05)])            # on top of each other
    fit_labels(fig, ax, labels)
    assert len(draws) >= 2
    a, b = (t.get_window_extent() for t in labels)
    assert not a.overlaps(b)
