"""Findings on constructed sweeps where the right answer is known."""

from __future__ import annotations

import pytest

from analysis.findings import core as F
from analysis.collect import collect_runs
from analysis.registry import compute_findings
from analysis.verdicts import VERDICTS
from analysis_helpers import BASE_EVAL, make_results_sweep


def _raw(forgetting_pct: float) -> float:
    """Final raw loss that gives ``forgetting_pct`` against the base."""
    return BASE_EVAL["raw_loss"] * (1 + forgetting_pct / 100)


def _job(final=None, **params):
    return {"params": params, "final": final or {}}


def _seeded(job, seed):
    """One seed of ``job``: its numbers moved by a hair, so that the seeds give a noise estimate."""
    jitter = 0.002 * (seed - 1)
    final = {k: (min(1.0, max(0.0, v + jitter)) if k.endswith(("rate", "acc")) else v * (1 + jitter / 10))
             for k, v in job["final"].items()}
    return {**job, "params": {**job["params"], "train.seed": seed}, "final": final}


def _sweep(tmp_path, jobs, *, seeds=3, **kw):
    """The jobs, each run with ``seeds`` seeds (findings need a noise estimate to call an effect)."""
    if seeds > 1:
        jobs = [j if "train.seed" in j["params"] else _seeded(j, s) for j in jobs
                for s in (range(seeds) if "train.seed" not in j["params"] else [0])]
    return collect_runs(make_results_sweep(tmp_path / "s", jobs, **kw))


def _by_key(runs):
    return {f.key: f for f in compute_findings(runs)}


def test_forgetting_rises_with_lr_supported_with_seed_cis(tmp_path):
    jobs = []
    for lr, forget in ((1e-5, 3.0), (1e-4, 9.0), (1e-3, 18.0)):
        for seed, jitter in ((0, -0.3), (1, 0.0), (2, 0.3)):
            jobs.append(_job({"raw_loss": _raw(forget + jitter)}, **{"optim.lr": lr, "train.seed": seed}))
    f = F.forgetting_rises_with_lr(_sweep(tmp_path, jobs))
    assert f.verdict == F.SUPPORTED
    # numbers per lr, with CI and the seed count
    assert "lr 1e-5 +3.0 ± 0.7% (n=3)" in f.evidence
    assert "lr 1e-3 +18.0 ± 0.7% (n=3)" in f.evidence


def test_forgetting_falling_with_lr_is_not_supported(tmp_path):
    jobs = [_job({"raw_loss": _raw(fg)}, **{"optim.lr": lr})
            for lr, fg in ((1e-5, 15.0), (1e-4, 8.0), (1e-3, 2.0))]
    f = F.forgetting_rises_with_lr(_sweep(tmp_path, jobs))
    assert f.verdict == F.NOT_SUPPORTED
    assert "opposite" in f.evidence and "falls" in f.evidence


def test_forgetting_flat_within_noise_is_not_supported(tmp_path):
    # no change, and the seeds' interval rules out an effect of a point or more
    jobs = [_job({"raw_loss": _raw(5.0 + j)}, **{"optim.lr": lr, "train.seed": s})
            for lr in (1e-5, 1e-3) for s, j in ((0, -0.1), (1, 0.0), (2, 0.1))]
    f = F.forgetting_rises_with_lr(_sweep(tmp_path, jobs))
    assert f.verdict == F.NOT_SUPPORTED
    assert "no effect beyond noise" in f.evidence


def test_a_real_but_tiny_change_says_it_is_below_the_minimum_effect(tmp_path):
    # +0.4 points with seeds tight around it: the interval excludes 0, so "no change beyond
    # noise" would contradict its own numbers; the effect is under the 1-point minimum.
    jobs = [_job({"raw_loss": _raw(fg + j)}, **{"optim.lr": lr, "train.seed": s})
            for lr, fg in ((1e-5, 1.0), (1e-3, 1.4)) for s, j in ((0, -0.02), (1, 0.0), (2, 0.02))]
    f = F.forgetting_rises_with_lr(_sweep(tmp_path, jobs))
    assert f.verdict == F.NOT_SUPPORTED
    assert "smaller than the 1-point minimum effect" in f.evidence and "beyond noise" not in f.evidence


def test_forgetting_within_wide_noise_is_inconclusive(tmp_path):
    # no change, but the seeds scatter by two points: an effect of a point is not ruled out
    jobs = [_job({"raw_loss": _raw(5.0 + j)}, **{"optim.lr": lr, "train.seed": s})
            for lr in (1e-5, 1e-3) for s, j in ((0, -2.0), (1, 0.0), (2, 2.0))]
    f = F.forgetting_rises_with_lr(_sweep(tmp_path, jobs))
    assert f.verdict == F.INCONCLUSIVE and "within noise" in f.evidence


def test_small_difference_without_seeds_is_inconclusive(tmp_path):
    jobs = [_job({"raw_loss": _raw(fg)}, **{"optim.lr": lr}) for lr, fg in ((1e-5, 5.0), (1e-3, 6.5))]
    assert F.forgetting_rises_with_lr(_sweep(tmp_path, jobs, seeds=1)).verdict == F.INCONCLUSIVE


def test_trend_is_judged_within_other_settings(tmp_path):
    # rises with lr at 1 epoch, falls at 2 epochs: the direction depends on epochs
    jobs = [_job({"raw_loss": _raw(fg)}, **{"optim.lr": lr, "train.epochs": ep})
            for (lr, ep, fg) in ((1e-5, 1, 2.0), (1e-3, 1, 12.0), (1e-5, 2, 12.0), (1e-3, 2, 2.0))]
    f = F.forgetting_rises_with_lr(_sweep(tmp_path, jobs))
    assert f.verdict == F.INCONCLUSIVE and "depends on the other settings" in f.evidence
    assert "epochs 1:" in f.evidence and "epochs 2:" in f.evidence


def test_a_trend_that_holds_in_some_settings_and_is_within_noise_in_the_others_is_said_so(tmp_path):
    # Without replay forgetting climbs by hundreds of points over three seeds; with replay it
    # scatters within a point: the claim holds where it holds, said with the setting, not a bare
    # INCONCLUSIVE for the sweep.
    jobs = [_job({"raw_loss": _raw(fg + j)}, **{"optim.lr": lr, "mix.replay_ratio": rp, "train.seed": s})
            for (lr, rp, fg) in ((3e-5, 0.0, 50.0), (3e-4, 0.0, 220.0), (2e-3, 0.0, 790.0),
                                 (3e-5, 0.5, 3.0), (3e-4, 0.5, 1.0), (2e-3, 0.5, 4.0))
            for s, j in ((0, -2.0), (1, 0.0), (2, 2.0))]
    f = F.forgetting_rises_with_lr(_sweep(tmp_path, jobs))
    assert f.verdict == F.SUPPORTED
    assert f.evidence.startswith("holds only in 1 of 2 settings (replay 0%)")
    assert "not beyond noise" in f.evidence


def test_untestable_claims_are_listed_not_dropped(tmp_path):
    runs = _sweep(tmp_path, [_job({"raw_loss": _raw(4.0)}, **{"train.epochs": e}) for e in (1, 2)])
    got = _by_key(runs)
    for key in ("forgetting_vs_lr", "replay_cuts_forgetting", "sft_teaches_following",
                "sft_adds_no_knowledge", "best_lr_final_response_loss", "recommended_setting",
                "aggressive_settings", "forgetting_vs_epochs"):
        assert key in got
    assert got["forgetting_vs_lr"].verdict == F.INCONCLUSIVE
    assert "not tested" in got["forgetting_vs_lr"].evidence
    assert got["replay_cuts_forgetting"].verdict == F.INCONCLUSIVE


def test_replay_cuts_forgetting(tmp_path):
    jobs = [_job({"raw_loss": _raw(fg), "follow_rate": fr}, **{"mix.replay_ratio": r})
            for r, fg, fr in ((0.0, 15.2, 0.96), (0.05, 4.1, 0.94), (0.2, 2.0, 0.90))]
    f = F.replay_cuts_forgetting(_sweep(tmp_path, jobs))
    assert f.verdict == F.SUPPORTED
    assert "replay 0% +15.2 ± 0.1% (n=3) → replay 5% +4.1 ± 0.1% (n=3) → replay 20% +2.0 ± 0.1% (n=3)" in f.evidence
    assert "96% → 90%, a cost of 6 points" in f.evidence


def test_replay_that_does_not_help_is_not_supported(tmp_path):
    jobs = [_job({"raw_loss": _raw(fg)}, **{"mix.replay_ratio": r}) for r, fg in ((0.0, 5.0), (0.2, 12.0))]
    assert F.replay_cuts_forgetting(_sweep(tmp_path, jobs)).verdict == F.NOT_SUPPORTED


def test_following_base_vs_tuned(tmp_path):
    jobs = [_job({"follow_rate": fr}, **{"optim.lr": lr}) for lr, fr in ((1e-5, 0.94), (1e-4, 0.98))]
    f = F.sft_teaches_following(_sweep(tmp_path, jobs, base={**BASE_EVAL, "follow_rate": 0.0}))
    assert f.verdict == F.SUPPORTED
    assert "base model follows 0% of held-out prompts, the tuned models 94–98%" in f.evidence
    jobs = [_job({"follow_rate": 0.02}, **{"optim.lr": lr}) for lr in (1e-5, 1e-4)]
    f = F.sft_teaches_following(_sweep(tmp_path / "b", jobs, base={**BASE_EVAL, "follow_rate": 0.02}))
    assert f.verdict == F.NOT_SUPPORTED


def test_knowledge_probe(tmp_path):
    same = [_job({"knowledge_mc_acc": 0.40 + d, "answer_mc_acc": 0.5}, **{"optim.lr": lr})
            for lr, d in ((1e-5, 0.01), (1e-4, -0.01), (1e-3, 0.0))]
    f = F.sft_adds_no_knowledge(_sweep(tmp_path, same))
    assert f.verdict == F.SUPPORTED
    assert "base 40%, tuned 39–41%" in f.evidence and "35% → 50%" in f.evidence
    assert "lr 1e-5: +1.0 points (95% CI" in f.evidence and "lr 1e-4: -1.0 points (95% CI" in f.evidence
    more = [_job({"knowledge_mc_acc": 0.60 + d}, **{"optim.lr": lr})
            for lr, d in ((1e-5, 0.01), (1e-4, -0.01), (1e-3, 0.0))]
    f = F.sft_adds_no_knowledge(_sweep(tmp_path / "b", more))
    assert f.verdict == F.NOT_SUPPORTED and "improves at: lr 1e-5; lr 1e-4; lr 1e-3" in f.evidence
    # a collapse at a high lr is forgetting, not added knowledge
    lost = [_job({"knowledge_mc_acc": kn}, **{"optim.lr": lr}) for lr, kn in ((1e-5, 0.41), (1e-3, 0.05))]
    f = F.sft_adds_no_knowledge(_sweep(tmp_path / "c", lost))
    assert f.verdict == F.SUPPORTED and "the probe instead falls (knowledge is lost, i.e. forgotten) at: lr 1e-3 (-35.0 points)" in f.evidence
    # a 7-point gain in one job without seeds: could be noise of the probe
    noisy = [_job({"knowledge_mc_acc": kn}, **{"optim.lr": lr}) for lr, kn in ((1e-5, 0.40), (1e-3, 0.47))]
    assert F.sft_adds_no_knowledge(_sweep(tmp_path / "d", noisy, seeds=1)).verdict == F.INCONCLUSIVE


def test_best_lr_and_recommendation(tmp_path):
    rows = ((1e-5, 3.0, 2.0, 0.30), (1e-4, 1.2, 7.0, 0.90), (1e-3, 1.5, 16.0, 0.97))
    jobs = [_job({"response_loss": rl, "raw_loss": _raw(fg), "follow_rate": fr}, **{"optim.lr": lr})
            for lr, rl, fg, fr in rows]
    runs = _sweep(tmp_path, jobs)
    best = F.best_lr(runs)
    assert best.claim == "Learning rate 1e-4 gives the lowest held-out response loss"
    assert best.verdict == F.SUPPORTED and best.numbers["best"] == pytest.approx(1e-4)
    rec = F.recommended_setting(runs)
    assert rec.verdict == F.SUPPORTED and "criterion: the highest follow rate" in rec.evidence and (
        "): lr 1e-4: follow rate 90%, forgetting +7.0%" in rec.evidence)
    agg = F.aggressive_settings(runs)
    assert agg.verdict == F.SUPPORTED and "lr 1e-3: +16.0%" in agg.evidence


def test_nothing_aggressive_is_reported_as_not_supported(tmp_path):
    jobs = [_job({"raw_loss": _raw(fg)}, **{"optim.lr": lr}) for lr, fg in ((1e-5, 1.0), (1e-4, 3.0))]
    f = F.aggressive_settings(_sweep(tmp_path, jobs))
    assert f.verdict == F.NOT_SUPPORTED and "lr 1e-4 at +3.0%" in f.evidence


def test_failed_jobs_do_not_count(tmp_path):
    jobs = [_job({"raw_loss": _raw(fg)}, **{"optim.lr": lr}) for lr, fg in ((1e-5, 2.0), (1e-4, 8.0))]
    jobs.append({"params": {"optim.lr": 1e-3}, "final": {"raw_loss": _raw(0.0)}, "status": "failed"})
    f = F.forgetting_rises_with_lr(_sweep(tmp_path, jobs))
    assert f.verdict == F.SUPPORTED and "1e-3" not in f.evidence


def test_template_effect(tmp_path):
    jobs = [_job({"follow_rate": fr}, **{"template.name": t, "train.seed": s})
            for t, base_fr in (("chatml", 0.95), ("alpaca", 0.70)) for s, fr in ((0, base_fr), (1, base_fr + 0.01))]
    f = {x.key: x for x in compute_findings(_sweep(tmp_path, jobs))}["template_effect"]
    assert f.verdict == F.SUPPORTED and "chatml" in f.evidence and "alpaca" in f.evidence


def test_demo_sweep_findings(demo_runs):
    got = _by_key(demo_runs)
    assert got["forgetting_vs_lr"].verdict == F.SUPPORTED
    assert got["sft_teaches_following"].verdict == F.SUPPORTED
    # two seeds per setting leave each setting's interval wider than the 5-point gain: not ruled out
    assert got["sft_adds_no_knowledge"].verdict == F.INCONCLUSIVE
    assert all(f.verdict in VERDICTS for f in got.values())


def test_epochs_never_compared_within_a_setting_is_inconclusive_with_a_reason(tmp_path):
    """Two commands in one sweep directory: one ran 1 epoch at lr 1e-4, the other 2 epochs at
    lr 1e-3, so no two jobs differ in epochs alone."""
    jobs = [_job({"raw_loss": _raw(3.0)}, **{"optim.lr": 1e-4, "train.epochs": 1}),
            _job({"raw_loss": _raw(2.0)}, **{"optim.lr": 3e-4, "train.epochs": 1}),
            _job({"raw_loss": _raw(9.0)}, **{"optim.lr": 1e-3, "train.epochs": 2})]
    f = _by_key(_sweep(tmp_path, jobs))["forgetting_vs_epochs"]
    assert f.verdict == F.INCONCLUSIVE
    assert ": ." not in f.evidence and not f.evidence.rstrip().endswith(":")
    assert "epochs 1" in f.evidence and "epochs 2" in f.evidence
    # what else differs, each value with its own number
    assert "epochs 1: lr 1e-4 +3.0% / lr 3e-4 +2.0%; epochs 2: lr 1e-3 +9.0%" in f.evidence
