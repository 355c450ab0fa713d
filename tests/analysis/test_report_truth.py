"""The report says only what it measured: one noise standard, NOT MEASURABLE apart from NOT
SUPPORTED, wording by sign, stated criteria, readable labels, warnings once. Each case is a small
synthetic sweep with a known answer."""

from __future__ import annotations

import pytest

from analysis.collect import collect_runs
from analysis.registry import compute_findings
from analysis.report import write_report
from analysis.style import setting_label
from analysis.verdicts import INCONCLUSIVE, NOT_MEASURABLE, NOT_SUPPORTED, SUPPORTED
from analysis_helpers import BASE_EVAL, make_results_sweep

RAW = BASE_EVAL["raw_loss"]


def _job(lr, replay=0.0, forgetting=0.0, **final):
    return {"params": {"optim.lr": lr, "mix.replay_ratio": replay},
            "final": {"raw_loss": RAW * (1 + forgetting / 100), **final}}


def _findings(tmp_path, jobs, **kw):
    return {f.key: f for f in compute_findings(collect_runs(make_results_sweep(tmp_path / "s", jobs, **kw)))}


# One seed: forgetting +3.1% without replay, -0.9% with it (the own-data sweep's numbers), and a
# learning-rate trend of +3.1% -> +8.0%. Neither has a noise estimate (no seeds; a loss has no item
# counts), so both get the same verdict.
ONE_SEED = [_job(1e-4, 0.0, 3.1), _job(1e-4, 0.5, -0.9), _job(1e-3, 0.0, 8.0), _job(1e-3, 0.5, 1.0)]
# Every follow rate 0 (no answer fits the context), base too.
ALL_ZERO = [_job(lr, rp, 5.0 * i, follow_rate=0.0) for i, (lr, rp) in
            enumerate([(1e-4, 0.0), (1e-4, 0.5), (1e-3, 0.0), (1e-3, 0.5)])]
# Replay raises the follow rate from 65% to 73%: a gain.
REPLAY_GAIN = [_job(1e-4, 0.0, 10.0, follow_rate=0.65), _job(1e-4, 0.5, 2.0, follow_rate=0.73)]
# The probe falls by 20 points at every setting (knowledge lost), 200 items per job.
PROBE_LOST = [_job(lr, 0.0, 5.0, knowledge_mc_acc=BASE_EVAL["knowledge_mc_acc"] - 0.20) for lr in (1e-4, 1e-3)]


@pytest.mark.parametrize("jobs, kw, key, verdict, must, must_not", [
    (ONE_SEED, {}, "replay_cuts_forgetting", INCONCLUSIVE, "no noise estimate", ""),
    (ONE_SEED, {}, "forgetting_vs_lr", INCONCLUSIVE, "no noise estimate", ""),
    (ALL_ZERO, {"base": {**BASE_EVAL, "follow_rate": 0.0}, "items": 20}, "sft_teaches_following",
     NOT_MEASURABLE, "bound", ""),
    (ALL_ZERO, {"base": {**BASE_EVAL, "follow_rate": 0.0}}, "replay_cuts_forgetting", None,
     "not measurable", "Cost"),
    (REPLAY_GAIN, {}, "replay_cuts_forgetting", None, "a gain of 8 points", "Cost"),
    (PROBE_LOST, {"items": 200}, "sft_adds_no_knowledge", SUPPORTED, "no setting gains knowledge; the probe instead falls", ""),
    (REPLAY_GAIN, {"base": {**BASE_EVAL, "follow_rate": 0.0}}, "recommended_setting", None, "criterion", ""),
])
def test_finding_truth(tmp_path, jobs, kw, key, verdict, must, must_not):
    f = _findings(tmp_path, jobs, **kw)[key]
    if verdict is not None:
        assert f.verdict == verdict, f.as_text()
    assert must in f.evidence, f.as_text()
    assert not must_not or must_not not in f.evidence, f.as_text()


def test_story_does_not_call_a_bound_a_small_learning_rate(tmp_path):
    """Follow rate 0 everywhere (the smoke sweep): "too small to learn the format" is not measurable."""
    from analysis.findings.story import smallest_lr_does_not_learn

    jobs = [_job(lr, 0.0, 1.0, follow_rate=0.0, base_knowledge_sft=0.0) for lr in (3e-4, 3e-3)]
    runs = collect_runs(make_results_sweep(tmp_path / "s", jobs, base={**BASE_EVAL, "follow_rate": 0.0}))
    assert smallest_lr_does_not_learn(runs).verdict == NOT_MEASURABLE


def test_seeds_decide_before_items(tmp_path):
    jobs = [{**_job(lr, 0.0, 0.0, follow_rate=rate), "params": {"optim.lr": lr, "train.seed": s}}
            for lr, rates in ((1e-4, (0.50, 0.52, 0.48)), (1e-3, (0.90, 0.91, 0.89))) for s, rate in enumerate(rates)]
    f = _findings(tmp_path, jobs, base={**BASE_EVAL, "follow_rate": 0.0}, items=50)["sft_teaches_following"]
    assert f.verdict == SUPPORTED and "seed noise" in f.evidence


def test_no_verdict_of_supported_without_a_noise_estimate(tmp_path):
    """A follow-rate gain on one job with no recorded item count is not called real."""
    jobs = [_job(1e-4, 0.0, 0.0, follow_rate=0.9)]
    f = _findings(tmp_path, jobs, base={**BASE_EVAL, "follow_rate": 0.0})["sft_teaches_following"]
    assert f.verdict == INCONCLUSIVE and "no noise estimate" in f.evidence
    f = _findings(tmp_path / "b", jobs, base={**BASE_EVAL, "follow_rate": 0.0}, items=100)["sft_teaches_following"]
    assert f.verdict == SUPPORTED and "item noise" in f.evidence


@pytest.mark.parametrize("col, value, label", [
    ("data.name", "alpaca", "data alpaca"),
    ("data.source", "c4.jsonl", "data source c4.jsonl"),
    ("optim.lr", 3e-4, "lr 3e-4"),
])
def test_labels_never_show_a_bare_generic_key(col, value, label):
    assert setting_label({col: value}, [col]) == label


def test_two_datasets_are_labelled_by_their_data(tmp_path, no_figures):
    a = make_results_sweep(tmp_path / "world", [{"params": {"data.name": "world", "optim.lr": 3e-4}, "final": {}}])
    b = make_results_sweep(tmp_path / "alpaca", [{"params": {"data.name": "alpaca", "optim.lr": 3e-4}, "final": {}}])
    md = write_report([a, b], tmp_path / "out").markdown.read_text()
    assert "name world" not in md and "name alpaca" not in md


def test_a_warning_repeated_by_jobs_is_listed_once_with_count_and_jobs(tmp_path, no_figures):
    w = "skipped 3 records of data.jsonl: no response"
    jobs = [{**_job(lr), "warnings": [w]} for lr in (1e-5, 1e-4, 1e-3)]
    md = write_report(make_results_sweep(tmp_path / "s", jobs), tmp_path / "out").markdown.read_text()
    assert md.count(w) == 1 and "3 jobs (0, 1, 2)" in md


def test_two_datasets_are_never_pooled(tmp_path, no_figures):
    """World and Alpaca sweeps at the same learning rates: each finding is computed per dataset,
    and the report says how it grouped the jobs."""
    def sweep(name, data, forgetting):
        return make_results_sweep(tmp_path / name, [
            {"params": {"data.name": data, "optim.lr": lr}, "final": {"raw_loss": RAW * (1 + fg / 100)}}
            for lr, fg in zip((3e-4, 2e-3), forgetting)])
    a, b = sweep("world", "world", (5.0, 60.0)), sweep("alpaca", "alpaca", (3.0, 8.0))
    paths = write_report([a, b], tmp_path / "out")
    claims = [f.claim for f in paths.findings]
    assert "data alpaca: Forgetting rises with the learning rate" in claims
    assert "data world: Forgetting rises with the learning rate" in claims
    assert "Forgetting rises with the learning rate" not in claims
    md = paths.markdown.read_text()
    assert "findings are computed within each group of jobs that share them (data alpaca; data world)" in md


def test_a_figure_with_nothing_to_draw_is_left_out_with_a_line(tmp_path):
    """Own data: no follow rate or probe for base and tuned, so no base-vs-tuned figure; the
    report says so instead of dropping it silently."""
    jobs = [{"params": {"optim.lr": lr}, "final": {"raw_loss": RAW * 1.05, "response_loss": 2.0}}
            for lr in (1e-4, 1e-3)]
    base = {"raw_loss": RAW, "response_loss": 3.0}
    paths = write_report(make_results_sweep(tmp_path / "s", jobs, base=base), tmp_path / "out")
    assert "base_vs_tuned" not in paths.plots
    md = paths.markdown.read_text()
    assert "Left out, as these jobs have nothing for them to draw" in md
    assert "base\\_vs\\_tuned (needs a rate measured on both the base model and a tuned job)" in md


@pytest.mark.parametrize("values", [[0.0, 0.0, 0.0], [50.0, 50.0], [99.9, 100.0]])
def test_a_flat_percent_axis_never_repeats_a_tick_label(values):
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    from analysis.plots.common import y_percent

    fig = Figure()
    FigureCanvasAgg(fig)
    ax = fig.add_subplot()
    ax.plot(range(len(values)), values)
    y_percent(ax)
    fig.canvas.draw()
    lo, hi = ax.get_ylim()
    labels = [t.get_text() for t in ax.get_yticklabels() if lo <= t.get_position()[1] <= hi]
    assert labels and len(labels) == len(set(labels)), labels


def _with_ci(jobs, half):
    """The jobs, each with its own 95% interval of forgetting of +-half points."""
    out = []
    for j in jobs:
        fg = 100 * (j["final"]["raw_loss"] - RAW) / RAW
        out.append({**j, "forgetting_ci": (fg - half, fg + half)})
    return out


# The quickstart's single-seed forgetting: +844% without replay, +7.4% with it, each job with the
# interval it records over its held-out text windows.
QUICKSTART_FORGETTING = [_job(3e-5, 0.0, 58.5), _job(3e-5, 0.5, 3.6), _job(3e-4, 0.0, 214.4),
                         _job(3e-4, 0.5, 0.1), _job(2e-3, 0.0, 844.3), _job(2e-3, 0.5, 7.4)]


@pytest.mark.parametrize("half, key, verdict", [
    (20.0, "replay_cuts_forgetting", SUPPORTED),       # intervals far narrower than the effects
    (20.0, "forgetting_vs_lr", SUPPORTED),             # without replay only: 3.6 -> 0.1 -> 7.4 is within noise
    (2000.0, "forgetting_vs_lr", INCONCLUSIVE),        # intervals wider than every effect
    (2000.0, "replay_cuts_forgetting", INCONCLUSIVE),  # intervals wider than every effect
])
def test_single_seed_forgetting_is_judged_on_the_jobs_own_intervals(tmp_path, half, key, verdict):
    f = _findings(tmp_path, _with_ci(QUICKSTART_FORGETTING, half))[key]
    assert f.verdict == verdict, f.as_text()
    assert "item noise" in f.evidence, f.as_text()
    if key == "forgetting_vs_lr" and verdict == SUPPORTED:  # said where it holds, not for the sweep
        assert f.evidence.startswith("holds only in 1 of 2 settings (replay 0%)"), f.as_text()


def test_a_story_claim_whose_metrics_no_job_reports_is_not_measurable(tmp_path):
    """Own data has no base-knowledge completion and no answer key: those claims cannot be measured."""
    from analysis.findings.story import base_knows_but_does_not_answer, best_setting_answers_and_keeps

    base = {k: v for k, v in BASE_EVAL.items() if not k.startswith(("base_knowledge", "answer", "knowledge"))}
    jobs = [_job(lr, 0.0, 1.0) for lr in (3e-4, 3e-3)]
    for j in jobs:
        j["base"] = base
    runs = collect_runs(make_results_sweep(tmp_path / "s", jobs, base=base))
    assert base_knows_but_does_not_answer(runs).verdict == NOT_MEASURABLE
    assert best_setting_answers_and_keeps(runs).verdict == NOT_MEASURABLE


def test_the_tradeoff_caption_names_only_the_panels_it_draws(tmp_path):
    """On own data there is no answer accuracy: the figure has one panel and its caption says so."""
    from analysis.plots.tradeoff import tradeoff_caption

    base = {k: v for k, v in BASE_EVAL.items() if not k.startswith(("answer", "knowledge"))}
    jobs = [{**_job(lr, rp, fg, follow_rate=fr), "base": base}
            for lr, rp, fg, fr in ((3e-4, 0.0, 5.0, 0.4), (3e-4, 0.5, 1.0, 0.5), (1e-3, 0.0, 9.0, 0.6))]
    own = collect_runs(make_results_sweep(tmp_path / "own", jobs, base=base))
    assert "answer accuracy" not in tradeoff_caption(own) and "follow rate" in tradeoff_caption(own)
    world = collect_runs(make_results_sweep(tmp_path / "world", [_job(lr, 0.0, fg, follow_rate=0.5, answer_acc=0.4)
                                                                 for lr, fg in ((3e-4, 2.0), (1e-3, 6.0))]))
    assert "follow rate and answer accuracy" in tradeoff_caption(world)


def test_own_data_follow_rate_is_judged_on_the_prompts_that_fit(tmp_path):
    """Own data records follow_rate_n (held-out prompts whose reference fits): the follow-rate
    gain gets item noise from it instead of "no item counts recorded"."""
    jobs = [_job(1e-3, 0.0, 38.0, follow_rate=0.44, follow_rate_n=39),
            _job(3e-3, 0.0, 71.0, follow_rate=0.64, follow_rate_n=39)]
    base = {**BASE_EVAL, "follow_rate": 0.0, "follow_rate_n": 39}
    f = _findings(tmp_path, jobs, base=base)["sft_teaches_following"]
    assert f.verdict == SUPPORTED and "item noise" in f.evidence, f.as_text()


def test_the_training_data_section_shows_the_fit_check_the_jobs_recorded(tmp_path):
    fit = {"block_size": 128, "max_new_tokens": 48, "warn_share": 0.2,
           "datasets": {"main": {"n": 936, "truncated": 694, "no_trained_token": 185, "answer_too_long": 884,
                                 "truncated_share": 694 / 936, "no_trained_token_share": 185 / 936,
                                 "answer_too_long_share": 884 / 936}}}
    jobs = [{**_job(lr, 0.0, 3.0), "data_fit": fit} for lr in (3e-4, 1e-3)]
    paths = write_report(make_results_sweep(tmp_path / "s", jobs), tmp_path / "out")
    text = paths.markdown.read_text()
    assert "Fit check of the data against the model (every completed job" in text
    assert "answer too long for the generation room 884 (94%)" in text
