"""Findings of the epochs, data_size and multi_turn experiments from job files with known
answers, and the intervals they rest on."""

from __future__ import annotations

import itertools
from pathlib import Path

import pytest

from analysis.collect import collect_runs
from analysis.registry import compute_findings
from analysis.verdicts import INCONCLUSIVE, NOT_SUPPORTED, SUPPORTED
from analysis.noise import Share, difference
from tests.analysis.analysis_helpers import write_job, write_multirun_yaml


def test_wilson_interval_matches_published_values():
    # Newcombe (1998), table I: 81/263 -> 0.2553-0.3662; 0/10 -> 0-0.2775
    assert Share(81, 263).interval == pytest.approx((0.2553, 0.3662), abs=1e-4)
    assert Share(0, 10).interval == pytest.approx((0.0, 0.2775), abs=1e-4)


def test_newcombe_difference_matches_published_values():
    # Newcombe (1998), table II, method 10: 56/70 - 48/80 -> 0.0524 to 0.3339
    d, lo, hi = difference(Share(56, 70), Share(48, 80))
    assert d == pytest.approx(0.2)
    assert (lo, hi) == pytest.approx((0.0524, 0.3339), abs=1e-4)


def _sweep(root: Path, axes: dict[str, list], final_of, world: dict | None = None, scored_of=None) -> Path:
    """One job per setting; ``scored_of(setting)``: its summary.json ``scored`` (None: a job from
    before it)."""
    write_multirun_yaml(root, [f"{k}=" + ",".join(map(str, v)) for k, v in axes.items()])
    for values in itertools.product(*axes.values()):
        setting = dict(zip(axes, values))
        ov = [f"{k}={v}" for k, v in setting.items()]
        final = final_of(setting)
        write_job(root / ",".join(ov), overrides=ov,
                  summary={"status": "completed", "config": {**setting, "optim.lr": 3e-4, "eval.max_items": 250},
                           "overrides": ov, "base": {"answer_acc": 0.0, "answer_acc_multi_turn": 0.02},
                           "final": final, "forgetting_pct": 0.0,
                           "data": {"world": {"n_eval_items": 100, **(world or {})}},
                           **({"scored": scored_of(setting)} if scored_of else {})})
    return root


def _findings(root: Path) -> dict:
    return {f.key: f for f in compute_findings(collect_runs(root))}


def _memo(train: float, held: float, n: int = 50) -> dict:
    return {"memorised_exact_train": train, "memorised_exact_heldout": held, "memorised_n_train": n,
            "memorised_n_heldout": n, "memorised_loss_gap": train - held, "answer_acc": held}


def test_memorisation_onset_is_the_first_epoch_from_which_the_gap_stays_significant(tmp_path):
    rates = {1: (0.5, 0.5), 2: (0.6, 0.5), 3: (0.9, 0.5), 5: (0.96, 0.5), 8: (1.0, 0.4)}
    f = _findings(_sweep(tmp_path, {"train.epochs": list(rates)}, lambda s: _memo(*rates[s["train.epochs"]])))
    m = f["memorisation_over_epochs"]
    assert m.verdict == SUPPORTED
    assert m.numbers["onset_epoch"] == {"all jobs": 3}
    assert "45/50" in m.evidence


def test_no_memorisation_when_train_and_held_out_agree(tmp_path):
    f = _findings(_sweep(tmp_path, {"train.epochs": [1, 3, 8]}, lambda s: _memo(0.8, 0.8, n=400)))
    assert f["memorisation_over_epochs"].verdict == NOT_SUPPORTED
    f = _findings(_sweep(tmp_path / "small", {"train.epochs": [1, 3, 8]}, lambda s: _memo(0.6, 0.5, n=20)))
    assert f["memorisation_over_epochs"].verdict == INCONCLUSIVE


def _size_final(acc: dict):
    return lambda s: {"answer_acc": acc[(s["data.world.train_subset"], s["data.world.low_quality_fraction"])],
                      "follow_rate": 1.0}


def test_data_size_findings(tmp_path):
    acc = {(25, 0): 0.30, (75, 0): 0.86, (150, 0): 0.88, (450, 0): 0.90,
           (25, 0.3): 0.10, (75, 0.3): 0.50, (150, 0.3): 0.60, (450, 0.3): 0.70}
    axes = {"data.world.train_subset": [25, 75, 150, 450], "data.world.low_quality_fraction": [0, 0.3]}
    f = _findings(_sweep(tmp_path, axes, _size_final(acc)))
    assert f["answers_vs_data_size"].verdict == SUPPORTED
    enough = f["few_examples_suffice"]
    # clean: 90% of 90% is 81%; 75 conversations (86/100, interval 78-91) reach it only at the point
    assert enough.numbers["low_quality_fraction 0"] == {"smallest_at_point": 75, "smallest_surely": None}
    assert enough.numbers["low_quality_fraction 0.3"]["smallest_at_point"] == 450
    assert enough.verdict == INCONCLUSIVE
    clean = f["clean_beats_noisy"]
    # 25 clean vs 75 noisy: -20 points (clean behind); 150 vs 450: +18 points (clean ahead)
    assert clean.verdict == INCONCLUSIVE
    assert clean.numbers == {"pairs": 2, "clean_ahead": 1, "noisy_ahead": 1}


def test_second_turns_are_judged_once_by_the_noise_standard(tmp_path):
    """final_answer_acc_multi_turn has one finding (answers_second_turn, the noise standard's
    rule); the lesson findings no longer judge it a second way."""
    acc = {(0.0, "assistant"): 0.10, (0.0, "last"): 0.10, (0.25, "assistant"): 0.60, (0.25, "last"): 0.62}
    axes = {"data.world.multi_turn_fraction": [0.0, 0.25], "template.mask": ["assistant", "last"]}

    def final(s):
        return {"answer_acc": 0.8, "answer_acc_multi_turn": acc[(s["data.world.multi_turn_fraction"],
                                                                 s["template.mask"])]}

    f = _findings(_sweep(tmp_path, axes, final, world={"n_multi_turn_eval": 150}))
    assert "second_turn_by_training" not in f
    assert [k for k in f if "second_turn" in k] == ["answers_second_turn"]


def test_obeying_system_prompts_needs_the_whole_interval_over_80_percent(tmp_path):
    rates = {0: 0.30, 0.4: 0.95}
    f = _findings(_sweep(tmp_path, {"data.world.system_fraction": [0, 0.4]},
                         lambda s: {"answer_acc": 0.8, "system_format_acc": rates[s["data.world.system_fraction"]]},
                         world={"n_system_format_eval": 120}))
    assert f["obeys_system_prompts"].verdict == SUPPORTED  # 114/120: 89-98%
    assert "114/120" in f["obeys_system_prompts"].evidence and "36/120" in f["obeys_system_prompts"].evidence
    assert "trained with system prompts minus without: +65 points" in f["obeys_system_prompts"].evidence
    rates[0.4] = 0.82  # 98/120: 74-88%, straddles 80%
    f = _findings(_sweep(tmp_path / "b", {"data.world.system_fraction": [0, 0.4]},
                         lambda s: {"answer_acc": 0.8, "system_format_acc": rates[s["data.world.system_fraction"]]},
                         world={"n_system_format_eval": 120}))
    assert f["obeys_system_prompts"].verdict == INCONCLUSIVE


def _format_counts(obeyed: dict[str, int], n: int = 40) -> dict:
    """summary.json's ``scored`` of a job that asked ``n`` held-out questions under each format
    prompt, ``obeyed[style]`` of them answered in the asked format."""
    return {"answer": 100, "system_format": {st: {"obeyed": k, "n": n} for st, k in obeyed.items()}}


def test_obeying_system_prompts_is_judged_per_format_as_the_jobs_counted_it(tmp_path):
    # 110/120 pooled (SUPPORTED on the pooled share alone), but capital letters only 30/40
    obeyed = {0: {"word": 10, "caps": 0, "full": 40}, 0.4: {"word": 40, "caps": 30, "full": 40}}
    f = _findings(_sweep(tmp_path, {"data.world.system_fraction": [0, 0.4]},
                         lambda s: {"answer_acc": 0.8,
                                    "system_format_acc": sum(obeyed[s["data.world.system_fraction"]].values()) / 120},
                         world={"n_system_format_eval": 120},
                         scored_of=lambda s: _format_counts(obeyed[s["data.world.system_fraction"]])))
    ev = f["obeys_system_prompts"]
    assert "word 100% (40/40" in ev.evidence and "caps 75% (30/40" in ev.evidence and "caps 0% (0/40" in ev.evidence
    assert ev.verdict == INCONCLUSIVE  # caps 75%: interval 60-86%
    obeyed[0.4]["caps"] = 25           # 105/120 pooled, caps 25/40 (interval 47-77%): under 80%
    f = _findings(_sweep(tmp_path / "b", {"data.world.system_fraction": [0, 0.4]},
                         lambda s: {"answer_acc": 0.8,
                                    "system_format_acc": sum(obeyed[s["data.world.system_fraction"]].values()) / 120},
                         world={"n_system_format_eval": 120},
                         scored_of=lambda s: _format_counts(obeyed[s["data.world.system_fraction"]])))
    assert f["obeys_system_prompts"].verdict == NOT_SUPPORTED


def test_per_format_shares_of_a_job_from_before_scored_are_not_measurable(tmp_path):
    """A job that did not record its per-format counts: the pooled share is judged on the world's
    count as before, the formats are said to be not measurable, and no file is read again (the
    saved answers would show caps 0/40)."""
    f = _findings(_sweep(tmp_path, {"data.world.system_fraction": [0.4]},
                         lambda s: {"answer_acc": 0.8, "system_format_acc": 80 / 120},
                         world={"n_system_format_eval": 120}))
    ev = f["obeys_system_prompts"].evidence
    assert "80/120" in ev and "caps" not in ev
    assert "per format: not measurable, a job did not record its per-format counts" in ev


def test_lesson_findings_read_no_job_file(tmp_path, monkeypatch):
    """Findings are pure functions of the collected tables: once collected, the job files may go."""
    import shutil

    from analysis.collect import collect_runs
    from analysis.findings.lessons import lesson_findings
    obeyed = {"word": 40, "caps": 30, "full": 40}
    root = _sweep(tmp_path / "s", {"data.world.system_fraction": [0, 0.4]},
                  lambda s: {"answer_acc": 0.8, "system_format_acc": 110 / 120},
                  world={"n_system_format_eval": 120}, scored_of=lambda s: _format_counts(obeyed))
    runs = collect_runs(root)
    before = [(f.key, f.verdict, f.evidence) for f in lesson_findings(runs)]
    shutil.rmtree(root)
    assert [(f.key, f.verdict, f.evidence) for f in lesson_findings(runs)] == before
    assert "caps 75% (30/40" in before[0][2]
