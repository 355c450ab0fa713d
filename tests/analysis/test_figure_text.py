"""What a reader sees in the figures: value labels inside the axes and apart, every trade-off
point named, the forgetting band and the region above it shaded and labelled for what they
mean, the knowledge bars counted in probe questions.

The figures are measured on the laid-out ``Figure`` (matplotlib's own text extents), the same
layout the PNG is written from."""

from __future__ import annotations

import pytest
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.colors import to_rgb
from matplotlib.text import Annotation, Text

from analysis.collect import collect_runs
from analysis.plots import base_vs_tuned, common, forgetting, tradeoff
from analysis.style import AGGRESSIVE_BAND
from analysis_helpers import BASE_EVAL, make_results_sweep

# The quickstart's shape: three learning rates x two epochs, forgetting from +7% to +674%.
QUICKSTART_LIKE = [
    ((3e-5, 1), 6.8, 0.00, 0.00), ((3e-5, 2), 17.8, 0.29, 0.03),
    ((3e-4, 1), 105.5, 0.94, 0.13), ((3e-4, 2), 132.8, 0.98, 0.23),
    ((3e-3, 1), 569.9, 0.91, 0.02), ((3e-3, 2), 673.9, 0.97, 0.03),
]


def _jobs(rows):
    return [{"params": {"optim.lr": lr, "train.epochs": ep},
             "final": {"raw_loss": BASE_EVAL["raw_loss"] * (1 + forget / 100), "follow_rate": follow,
                       "answer_acc": answer, "knowledge_mc_acc": 0.4}}
            for (lr, ep), forget, follow, answer in rows]


@pytest.fixture
def figures(monkeypatch):
    """The Figure objects the plot functions save, by figure name."""
    caught = {}

    def keep(fig, out_dir, name):
        caught[name] = fig
        return common.save_png(fig, out_dir, name)

    for module in (forgetting, tradeoff, base_vs_tuned):
        monkeypatch.setattr(module, "save_png", keep)
    return caught


@pytest.fixture(scope="module")
def quickstart_like(tmp_path_factory):
    return collect_runs(make_results_sweep(tmp_path_factory.mktemp("qs") / "sweep", _jobs(QUICKSTART_LIKE)))


def _laid_out(fig):
    canvas = FigureCanvasAgg(fig)
    canvas.draw()
    return canvas.get_renderer()


def _box(text, renderer):
    if isinstance(text, Annotation):
        text.update_positions(renderer)
    return Text.get_window_extent(text, renderer)


def _value_labels(ax):
    return [t for t in ax.texts if isinstance(t, Annotation) and t.get_text()]


def _assert_inside_and_apart(ax, labels, renderer):
    frame = ax.get_window_extent(renderer)
    boxes = [_box(t, renderer) for t in labels]
    for t, b in zip(labels, boxes):
        assert frame.x0 - 0.5 <= b.x0 and b.x1 <= frame.x1 + 0.5, f"{t.get_text()!r} crosses a side of the axes"
        assert frame.y0 - 0.5 <= b.y0 and b.y1 <= frame.y1 + 0.5, f"{t.get_text()!r} crosses the top or bottom"
    for i in range(len(boxes)):
        for j in range(i + 1, len(boxes)):
            assert not boxes[i].overlaps(boxes[j]), \
                f"{labels[i].get_text()!r} covers {labels[j].get_text()!r}"


def test_forgetting_value_labels_stay_inside_the_axes(quickstart_like, figures, tmp_path):
    assert forgetting.plot_forgetting(quickstart_like, tmp_path) is not None
    fig = figures["forgetting_vs_lr"]
    ax = fig.axes[0]
    labels = _value_labels(ax)
    assert sorted(t.get_text() for t in labels) == sorted(f"{f:+.1f}%" for _, f, _, _ in QUICKSTART_LIKE)
    _assert_inside_and_apart(ax, labels, _laid_out(fig))


def _points(ax):
    """(x, y) of every job drawn as a scatter point (the Pareto rings are hollow and skipped)."""
    out = []
    for coll in ax.collections:
        if len(coll.get_facecolors()) and coll.get_facecolors()[0][3] > 0:
            out += [tuple(map(float, xy)) for xy in coll.get_offsets()]
    return out


def test_every_tradeoff_point_is_named(quickstart_like, figures, tmp_path):
    assert tradeoff.plot_tradeoff(quickstart_like, tmp_path) is not None
    fig = figures["tradeoff"]
    renderer = _laid_out(fig)
    panels = [ax for ax in fig.axes if ax.get_title()]
    assert len(panels) == 2
    for ax in panels:
        labels = _value_labels(ax)
        named = {tuple(map(float, t.xy)) for t in labels}
        points = _points(ax)
        assert len(points) == len(QUICKSTART_LIKE)
        assert set(points) <= named, f"unnamed points in {ax.get_title()!r}"
        assert {t.get_text() for t in labels} >= {f"lr {lr}\nepochs {ep}" for lr in ("3e-5", "3e-4", "3e-3")
                                                  for ep in (1, 2)}
        _assert_inside_and_apart(ax, labels, renderer)


def test_points_on_top_of_each_other_are_each_named(figures, tmp_path):
    rows = [((1e-4, 1), 5.0, 0.5, 0.1), ((1e-4, 2), 5.0, 0.5, 0.1), ((1e-3, 1), 40.0, 0.9, 0.2)]
    runs = collect_runs(make_results_sweep(tmp_path / "sweep", _jobs(rows)))
    tradeoff.plot_tradeoff(runs, tmp_path / "out")
    ax = next(ax for ax in figures["tradeoff"].axes if ax.get_title().startswith("follow"))
    at_shared_point = [t.get_text() for t in _value_labels(ax) if tuple(t.xy) == (pytest.approx(5.0), 50.0)]
    assert sorted(at_shared_point) == ["lr 1e-4\nepochs 1", "lr 1e-4\nepochs 2"]
    _assert_inside_and_apart(ax, _value_labels(ax), _laid_out(figures["tradeoff"]))


def _shaded_at(ax, x, y, renderer) -> bool:
    """Whether a band-coloured patch covers the data point (x, y)."""
    where = ax.transData.transform((x, y))
    for patch in ax.patches + [a for a in ax.get_children() if a.get_gid() == "above-band"]:
        rgb = patch.get_facecolor()[:3]
        if tuple(round(c, 3) for c in rgb) == tuple(round(c, 3) for c in to_rgb(common.BAND_COLOR)) \
                and patch.contains_point(where):
            return True
    return False


def test_band_and_everything_above_it_read_as_too_aggressive(quickstart_like, figures, tmp_path):
    forgetting.plot_forgetting(quickstart_like, tmp_path)
    fig = figures["forgetting_vs_lr"]
    renderer = _laid_out(fig)
    ax = fig.axes[0]
    lo, hi = AGGRESSIVE_BAND
    x = 3e-4
    assert _shaded_at(ax, x, (lo + hi) / 2, renderer)
    assert _shaded_at(ax, x, 130.0, renderer), "forgetting above the band is left unshaded"
    assert not _shaded_at(ax, x, lo / 2, renderer)
    legend = [t.get_text() for t in fig.legends[0].get_texts()]
    band = [t for t in legend if f"{lo:g}–{hi:g}%" in t]
    above = [t for t in legend if f"above {hi:g}%" in t]
    assert band and "threshold" in band[0]
    assert above and "too aggressive" in above[0]


def test_knowledge_bars_are_counted_in_probe_questions(quickstart_like, figures, tmp_path):
    base_vs_tuned.plot_base_vs_tuned(quickstart_like, tmp_path)
    ax = figures["base_vs_tuned"].axes[0]
    ticks = {t.get_text().split("\n(")[0]: t.get_text() for t in ax.get_xticklabels()}
    knowledge = [text for name, text in ticks.items() if name.startswith("knowledge")]
    others = [text for name, text in ticks.items() if not name.startswith("knowledge")]
    assert knowledge and all("probe questions" in t for t in knowledge)
    assert others and all("held-out prompts" in t for t in others)
    fig = figures["base_vs_tuned"]
    ylabel = ax.get_ylabel() or fig._supylabel.get_text()  # stacked panels share one label
    assert ylabel != "% of held-out prompts"
    assert "probe questions" in ylabel


def test_missing_job_note_does_not_hide_a_curve(tmp_path, monkeypatch):
    """The note naming a facet's missing learning rates sits in a corner a curve can run through:
    the curve is drawn over it."""
    from analysis.plots import lr as lr_module

    caught = {}
    monkeypatch.setattr(lr_module, "save_png", lambda fig, out_dir, name: caught.setdefault(name, fig))
    rows = [((1e-4, 1), 2.0, 0.5, 0.1), ((1e-3, 1), 9.0, 0.8, 0.2), ((1e-3, 2), 12.0, 0.9, 0.2)]
    lr_module.plot_lr_comparison(collect_runs(make_results_sweep(tmp_path / "sweep", _jobs(rows))), tmp_path)
    notes = [(ax, t) for ax in caught["lr_comparison"].axes for t in ax.texts
             if t.get_text().startswith("no completed job")]
    assert notes
    for ax, note in notes:
        assert all(line.get_zorder() > note.get_zorder() for line in ax.lines)


def test_close_points_keep_their_labels_off_each_other_and_the_rate_axis_readable(figures, tmp_path):
    """Four jobs within 15 points of forgetting, answer accuracy 0% for all (a smoke sweep)."""
    rows = [((3e-4, 1), 5.2, 0.0, 0.0), ((1e-3, 2), 3.9, 0.0, 0.0), ((3e-3, 1), 12.4, 0.0, 0.0),
            ((1e-2, 2), 18.0, 0.33, 0.0)]
    tradeoff.plot_tradeoff(collect_runs(make_results_sweep(tmp_path / "sweep", _jobs(rows))), tmp_path / "out")
    fig = figures["tradeoff"]
    renderer = _laid_out(fig)
    for ax in (ax for ax in fig.axes if ax.get_title()):
        labels = _value_labels(ax)
        _assert_inside_and_apart(ax, labels, renderer)
        for x, y in ax.transData.transform(_points(ax)):
            for t in labels:
                b = _box(t, renderer)
                assert not (b.x0 < x < b.x1 and b.y0 < y < b.y1), f"{t.get_text()!r} covers a point"
        ticks = [t.get_text() for t in ax.get_yticklabels() if t.get_text()]
        assert len(ticks) == len(set(ticks)) >= 3, ticks  # distinct percent ticks, not "0%, 0%, 0%"


# The quickstart's own grid: three learning rates x replay {0, 0.5}; without replay forgetting
# climbs to several hundred percent, with replay it stays within a few tens.
QUICKSTART_REPLAY = [
    ((3e-5, 0.0), 57.0, 0.30, 0.05), ((3e-4, 0.0), 227.0, 0.98, 0.40), ((2e-3, 0.0), 794.0, 0.97, 0.10),
    ((3e-5, 0.5), 4.0, 0.20, 0.02), ((3e-4, 0.5), 21.0, 0.84, 0.35), ((2e-3, 0.5), 62.0, 0.93, 0.30),
]


def _replay_jobs(rows, **final):
    return [{"params": {"optim.lr": lr, "mix.replay_ratio": rp},
             "final": {"raw_loss": BASE_EVAL["raw_loss"] * (1 + forget / 100), "follow_rate": follow,
                       "answer_acc": answer, "knowledge_mc_acc": 0.4, **final}}
            for (lr, rp), forget, follow, answer in rows]


def _marker_boxes(ax, renderer):
    """Display boxes of every marker drawn by a scatter (filled points and hollow rings alike),
    from the marker's own size (points squared)."""
    from matplotlib.transforms import Bbox

    px_per_pt = ax.figure.dpi / 72.0
    boxes = []
    for coll in ax.collections:
        sizes = coll.get_sizes()
        offsets = coll.get_offsets()
        if not len(sizes) or not len(offsets):
            continue
        for i, (x, y) in enumerate(ax.transData.transform(offsets)):
            r = (sizes[i % len(sizes)] ** 0.5) * px_per_pt / 2
            boxes.append(Bbox.from_extents(x - r, y - r, x + r, y + r))
    return boxes


TRADEOFF_CASES = {
    "quickstart lr x replay": QUICKSTART_REPLAY,
    # the quickstart as measured (the answer panel's "lr 3e-4 replay 50%" sat on the front's line)
    "quickstart measured": [((3e-5, 0.0), 56.6, 0.00, 0.23), ((3e-4, 0.0), 227.3, 0.98, 0.56),
                            ((2e-3, 0.0), 794.3, 0.97, 0.26), ((3e-5, 0.5), 3.2, 0.18, 0.58),
                            ((3e-4, 0.5), -0.4, 1.00, 0.89), ((2e-3, 0.5), 4.8, 1.00, 0.93)],
    "points close together": [((3e-4, 0.0), 5.2, 0.10, 0.0), ((1e-3, 0.0), 3.9, 0.12, 0.0),
                              ((3e-3, 0.0), 12.4, 0.15, 0.0), ((3e-4, 0.5), 4.1, 0.11, 0.0)],
}


@pytest.mark.parametrize("rows", TRADEOFF_CASES.values(), ids=TRADEOFF_CASES.keys())
def test_tradeoff_labels_cover_no_marker(rows, figures, tmp_path):
    """No label lies under or over a marker, its own or another job's, nor under a Pareto ring."""
    tradeoff.plot_tradeoff(collect_runs(make_results_sweep(tmp_path / "sweep", _replay_jobs(rows))),
                           tmp_path / "out")
    fig = figures["tradeoff"]
    renderer = _laid_out(fig)
    for ax in (ax for ax in fig.axes if ax.get_title()):
        labels = _value_labels(ax)
        assert labels
        _assert_inside_and_apart(ax, labels, renderer)
        marks = _marker_boxes(ax, renderer)
        front = next(line for line in ax.lines if line.get_linestyle() == "--")
        steps = _step_points(ax, front)
        for t in labels:
            b = _box(t, renderer)
            for m in marks:
                assert not b.overlaps(m), f"{t.get_text()!r} overlaps a marker in {ax.get_title()!r}"
            assert not any(b.x0 < x < b.x1 and b.y0 < y < b.y1 for x, y in steps), \
                f"the Pareto front's line runs through {t.get_text()!r} in {ax.get_title()!r}"


def _step_points(ax, line, every_px=1.0):
    """Display points along a steps-post line, every pixel."""
    import numpy as np

    xy = ax.transData.transform(np.column_stack([line.get_xdata(), line.get_ydata()]))
    corners = [xy[0]]
    for (x0, y0), (x1, y1) in zip(xy[:-1], xy[1:]):
        corners += [(x1, y0), (x1, y1)]
    out = []
    for (x0, y0), (x1, y1) in zip(corners[:-1], corners[1:]):
        n = max(1, int(max(abs(x1 - x0), abs(y1 - y0)) / every_px))
        out += [(x0 + (x1 - x0) * i / n, y0 + (y1 - y0) * i / n) for i in range(n + 1)]
    return out


def _bar_texts(ax):
    """Every text inside the axes: bar value labels and any note."""
    return [t for t in ax.texts if t.get_text()]


BASE_VS_TUNED_CASES = {
    "quickstart lr x replay": (QUICKSTART_REPLAY, {"knowledge_acc": 0.1}),
    "five learning rates near 100%": ([((lr, 0.0), 30.0, 1.0, 0.99) for lr in (1e-5, 3e-5, 1e-4, 3e-4, 1e-3)],
                                      {"knowledge_acc": 1.0, "answer_mc_acc": 1.0, "knowledge_mc_acc": 1.0}),
    "every rate near 100%": ([((3e-4, 0.0), 30.0, 1.0, 1.0), ((3e-4, 0.5), 5.0, 0.99, 0.98)],
                             {"knowledge_acc": 0.99}),
}


@pytest.mark.parametrize("rows, final", BASE_VS_TUNED_CASES.values(), ids=BASE_VS_TUNED_CASES.keys())
def test_base_vs_tuned_texts_inside_and_apart(rows, final, figures, tmp_path):
    """Bar value labels and the knowledge-probe note cover neither each other nor leave the axes."""
    runs = collect_runs(make_results_sweep(tmp_path / "sweep", _replay_jobs(rows, **final)))
    base_vs_tuned.plot_base_vs_tuned(runs, tmp_path / "out")
    fig = figures["base_vs_tuned"]
    renderer = _laid_out(fig)
    for ax in (ax for ax in fig.axes if ax.patches):
        _assert_inside_and_apart(ax, _bar_texts(ax), renderer)


def test_base_vs_tuned_bars_never_average_over_replay(figures, tmp_path):
    """lr x replay: each tuned bar is one job (a panel per replay ratio), so its height is that
    job's rate, not the mean of replay 0 and 0.5."""
    runs = collect_runs(make_results_sweep(tmp_path / "sweep", _replay_jobs(QUICKSTART_REPLAY)))
    base_vs_tuned.plot_base_vs_tuned(runs, tmp_path / "out")
    fig = figures["base_vs_tuned"]
    panels = [ax for ax in fig.axes if ax.patches]
    assert sorted(ax.get_title() for ax in panels) == ["replay 0%", "replay 50%"]
    heights = sorted(round(p.get_height(), 6) for ax in panels for p in ax.patches
                     if p.get_facecolor()[:3] != to_rgb(common.BASE_COLOR) and p.get_height() > 0)
    done = runs.done_jobs()
    expected = sorted(round(100 * float(v), 6) for m in base_vs_tuned.bar_metrics(done) for v in done[f"final_{m}"] if v > 0)
    assert heights == expected
    for ax in panels:  # one job per bar: no whisker
        assert not any(line.get_label().startswith("_nolegend_") and len(line.get_xdata()) == 2
                       and line.get_xdata()[0] == line.get_xdata()[1] for line in ax.lines)
    header = " ".join(t.get_text() for t in fig.texts)
    assert "each bar one job" in header and "whiskers" not in header


def test_sweeps_of_two_datasets_are_drawn_apart(figures, tmp_path):
    """A world sweep and an Alpaca sweep in one report: every figure is drawn once per dataset,
    and a panel holds only the jobs of its dataset (never the mean of both)."""
    from analysis import plots

    def sweep(name, forgetting, follow):
        return make_results_sweep(tmp_path / name, [
            {"params": {"data.name": name, "optim.lr": lr},
             "final": {"raw_loss": BASE_EVAL["raw_loss"] * (1 + fg / 100), "follow_rate": fr}}
            for lr, fg, fr in zip((3e-4, 2e-3), forgetting, follow)])

    runs = collect_runs([sweep("world", (5.0, 60.0), (0.5, 0.9)), sweep("alpaca", (3.0, 8.0), (0.1, 0.2))])
    left_out: list[str] = []
    written = plots.plot_all(runs, tmp_path / "out", left_out=left_out)
    for name in ("tradeoff", "forgetting_vs_lr", "base_vs_tuned"):
        assert {k for k in written if k.startswith(name)} == {f"{name} · data alpaca", f"{name} · data world"}
    assert len({p for p in written.values()}) == len(written), "two groups wrote the same file"
    assert all(k.startswith(("categories", "seeds", "mixing")) and "(needs " in k for k in left_out)
    # each group's trade-off panel holds its own two jobs
    fig = figures["tradeoff"]  # the last drawn: the second group
    ax = next(ax for ax in fig.axes if ax.get_title())
    assert len(_points(ax)) == 2
    assert plots.figure_caption("tradeoff · data world", runs).startswith("data world: ")


OWN_DATA_LIKE = {"raw_loss": BASE_EVAL["raw_loss"], "response_loss": 3.0, "follow_rate": 0.0}
CAPTION_CASES = {
    # own data: a follow rate, no answer key, no knowledge probe
    "own data": (OWN_DATA_LIKE, {"follow_rate": 0.3}, {"base_vs_tuned": ("knowledge", "answer", "facts"),
                                                      "mixing": ("answer",), "tradeoff": ("answer",)}),
    # no follow rate measured (no reference fits the context), answers still scored
    "answers only": ({"raw_loss": BASE_EVAL["raw_loss"], "answer_acc": 0.0}, {"answer_acc": 0.4},
                     {"base_vs_tuned": ("knowledge", "follow", "facts"), "mixing": ("follow",),
                      "tradeoff": ("follow",)}),
}


@pytest.mark.parametrize("base, final, forbidden", CAPTION_CASES.values(), ids=CAPTION_CASES.keys())
def test_captions_and_titles_name_only_what_is_drawn(base, final, forbidden, figures, tmp_path, monkeypatch):
    from analysis import plots
    from analysis.plots import mixing

    monkeypatch.setattr(mixing, "save_png", lambda fig, out_dir, name: figures.setdefault(name, fig) and None)
    jobs = [{"params": {"optim.lr": lr, "mix.replay_ratio": rp},
             "final": {"raw_loss": BASE_EVAL["raw_loss"] * (1 + fg / 100), **final}}
            for lr, rp, fg in ((3e-4, 0.0, 20.0), (3e-4, 0.5, 4.0), (1e-3, 0.0, 40.0), (1e-3, 0.5, 9.0))]
    runs = collect_runs(make_results_sweep(tmp_path / "s", jobs, base=base))
    plots.plot_all(runs, tmp_path / "out")
    for name, words in forbidden.items():
        caption = plots.figure_caption(name, runs).lower()
        title = " ".join(t.get_text() for t in figures[name].texts).lower()
        for word in words:
            assert word not in caption, f"{name} caption names {word!r}: {caption}"
            assert word not in title, f"{name} title names {word!r}: {title}"


INTERVAL_CASES = {
    "one job per template": ([("chatml", 0), ("alpaca", 0)], False),
    "two seeds per template": ([("chatml", 0), ("chatml", 1), ("alpaca", 0), ("alpaca", 1)], True),
}


@pytest.mark.parametrize("jobs, has_interval", INTERVAL_CASES.values(), ids=INTERVAL_CASES.keys())
def test_no_interval_is_drawn_or_claimed_from_one_job(jobs, has_interval, tmp_path, monkeypatch):
    from analysis.plots import categories

    caught = {}
    monkeypatch.setattr(categories, "save_png", lambda fig, out_dir, name: caught.setdefault(name, fig))
    rows = [{"params": {"template.name": t, "train.seed": s},
             "final": {"raw_loss": BASE_EVAL["raw_loss"] * (1.1 + 0.01 * s), "follow_rate": 0.5 + 0.1 * s}}
            for t, s in jobs]
    categories.plot_categories(collect_runs(make_results_sweep(tmp_path / "s", rows)), tmp_path / "out")
    fig = caught["categories"]
    subtitle = fig.texts[1].get_text()
    whiskers = [c for ax in fig.axes for c in ax.collections if type(c).__name__ == "LineCollection"]
    assert ("CI" in subtitle or "min–max" in subtitle) == has_interval, subtitle
    assert bool(whiskers) == has_interval


@pytest.mark.parametrize("rows", [QUICKSTART_REPLAY, QUICKSTART_REPLAY[:3]], ids=["two panels", "one panel"])
def test_base_vs_tuned_tick_labels_apart(rows, figures, tmp_path):
    """Five rates per panel, their two-line tick labels never run into each other."""
    final = {"knowledge_acc": 0.1, "answer_mc_acc": 0.6}
    base_vs_tuned.plot_base_vs_tuned(collect_runs(make_results_sweep(tmp_path / "s", _replay_jobs(rows, **final))),
                                     tmp_path / "out")
    fig = figures["base_vs_tuned"]
    renderer = _laid_out(fig)
    for ax in (ax for ax in fig.axes if ax.patches):
        ticks = [t for t in ax.get_xticklabels() if t.get_text()]
        assert len(ticks) == 5
        boxes = [t.get_window_extent(renderer) for t in ticks]
        for i in range(len(boxes) - 1):
            assert not boxes[i].overlaps(boxes[i + 1]), f"{ticks[i].get_text()!r} runs into {ticks[i + 1].get_text()!r}"
    ylabels = [t for t in [ax.yaxis.label for ax in fig.axes] + [fig._supylabel] if t is not None and t.get_text()]
    assert ylabels
    boxes = [t.get_window_extent(renderer) for t in ylabels]
    for i in range(len(boxes)):
        for j in range(i + 1, len(boxes)):
            assert not boxes[i].overlaps(boxes[j]), "the panels' y labels run into each other"


FORGETTING_CASES = {
    # the own-data sweep as measured: +2.4% -> +4.4% without replay, +0.4% -> +0.8% with 30%
    "own data measured": [((1e-3, 0.0), 2.4, 0.0, 0.0), ((3e-3, 0.0), 4.4, 0.03, 0.0),
                          ((1e-3, 0.3), 0.4, 0.0, 0.0), ((3e-3, 0.3), 0.8, 0.08, 0.0)],
    "quickstart lr x replay": QUICKSTART_REPLAY,
}


@pytest.mark.parametrize("rows", FORGETTING_CASES.values(), ids=FORGETTING_CASES.keys())
def test_forgetting_labels_cover_no_marker_or_line(rows, figures, tmp_path):
    import numpy as np

    forgetting.plot_forgetting(collect_runs(make_results_sweep(tmp_path / "s", _replay_jobs(rows))), tmp_path / "out")
    fig = figures["forgetting_vs_lr"]
    renderer = _laid_out(fig)
    ax = fig.axes[0]
    labels = _value_labels(ax)
    assert len(labels) == len(rows)
    _assert_inside_and_apart(ax, labels, renderer)
    px = fig.dpi / 72.0
    for line in ax.lines:
        if line.get_transform() != ax.transData:  # the zero line and the band's edge span the axes
            continue
        xy = ax.transData.transform(np.column_stack([np.asarray(line.get_xdata(), dtype=float),
                                                     np.asarray(line.get_ydata(), dtype=float)]))
        if len(xy) < 2 or line.get_linestyle() in ("None", ""):
            continue
        r = line.get_markersize() * px / 2
        dense = [p0 + (p1 - p0) * t for p0, p1 in zip(xy[:-1], xy[1:]) for t in np.linspace(0, 1, 200)]
        for t in labels:
            b = _box(t, renderer)
            for x, y in xy:
                assert not (b.x0 < x + r and x - r < b.x1 and b.y0 < y + r and y - r < b.y1), \
                    f"{t.get_text()!r} covers a marker"
            assert not any(b.x0 < x < b.x1 and b.y0 < y < b.y1 for x, y in dense), f"a line runs through {t.get_text()!r}"
