"""Findings of the loss_norm and multi_turn experiments, from job files with known answers,
judged by the one noise standard: item noise from the questions each job scored (or seeds)."""

from __future__ import annotations

from pathlib import Path

import pytest

from analysis.collect import collect_runs
from analysis.registry import compute_findings
from analysis.verdicts import INCONCLUSIVE, NOT_MEASURABLE, NOT_SUPPORTED, SUPPORTED
from tests.analysis.analysis_helpers import write_job, write_multirun_yaml

BASE = {"raw_loss": 0.23, "follow_rate": 0.0, "answer_acc": 0.05, "answer_acc_long_prompt": 0.0,
        "answer_acc_short_prompt": 0.1, "answer_acc_multi_turn": 0.0}
#: What a loss_norm job scores: 200 held-out questions, half of them with a long lead-in.
LOSS_NORM_WORLD = {"data.world.n_eval": 200, "data.world.long_prompt_fraction": 0.5, "data.world.n_eval_multi_turn": 0}
#: A multi_turn job: 100 usual questions and 150 second turns, all scored.
MULTI_TURN_WORLD = {"data.world.n_eval": 100, "data.world.n_eval_multi_turn": 150}


def _sweep(root: Path, key: str, values: dict, *, world: dict | None = None, seeds: int = 1) -> Path:
    """``values``: swept value -> final metrics (or a list of them, one per seed); ``world``:
    the world settings and the scored-question count jobs record (None: no count recorded)."""
    write_multirun_yaml(root, [f"{key}=" + ",".join(map(str, values))]
                        + ([f"train.seed={','.join(map(str, range(seeds)))}"] if seeds > 1 else []))
    for v, finals in values.items():
        for seed, final in enumerate(finals if isinstance(finals, list) else [finals]):
            ov = [f"{key}={v}"] + ([f"train.seed={seed}"] if seeds > 1 else [])
            summary = {"status": "completed", "config": {key: v, "optim.lr": 3e-4, "train.seed": seed, **(world or {})},
                       "overrides": ov, "base": BASE, "final": {**BASE, **final}, "forgetting_pct": 100.0}
            if world is not None:
                n = world["data.world.n_eval"] + world.get("data.world.n_eval_multi_turn", 0)
                summary["data"] = {"world": {"n_eval_items": n, "n_probe_items": 50}}
            write_job(root / ",".join(ov), overrides=ov, summary=summary)
    return root


def _finding(root: Path, key: str):
    return {f.key: f for f in compute_findings(collect_runs(root))}[key]


def _norms(tokens, sequence, length):
    return {n: {"answer_acc": (s + lg) / 2, "answer_acc_short_prompt": s, "answer_acc_long_prompt": lg}
            for n, (s, lg) in (("tokens", tokens), ("sequence", sequence), ("length", length))}


# (tokens, sequence, length) as (short, long) accuracy; 100 long and 100 short questions per job.
DILUTION_CASES = {
    # length widens the gap by 28 points, far beyond item noise (~19); tokens' gap is noise
    "dilution": (_norms((0.6, 0.58), (0.6, 0.55), (0.6, 0.3)), LOSS_NORM_WORLD, SUPPORTED),
    # 10 points wider: the old fixed 10-point margin called it dilution; item noise is ~19
    "10 points, within noise": (_norms((0.6, 0.55), (0.6, 0.55), (0.6, 0.45)), LOSS_NORM_WORLD, INCONCLUSIVE),
    # length narrows the gap by 30 points
    "the opposite": (_norms((0.7, 0.4), (0.7, 0.5), (0.7, 0.7)), LOSS_NORM_WORLD, NOT_SUPPORTED),
    # long prompts trail by 20 points under both normalisations, beyond noise
    "long prompts harder everywhere": (_norms((0.7, 0.5), (0.7, 0.5), (0.8, 0.2)), LOSS_NORM_WORLD, INCONCLUSIVE),
    # the jobs record no question count, one seed: no noise estimate, never a call
    "no item counts": (_norms((0.6, 0.58), (0.6, 0.55), (0.6, 0.3)), None, INCONCLUSIVE),
}


@pytest.mark.parametrize("values, world, verdict", DILUTION_CASES.values(), ids=DILUTION_CASES.keys())
def test_dilution_by_the_noise_standard(values, world, verdict, tmp_path):
    f = _finding(_sweep(tmp_path / "s", "train.loss_norm", values, world=world), "long_instructions_dilute")
    assert f.verdict == verdict, f.evidence
    if world is not None:
        assert "95% CI" in f.evidence and "n = 1 vs 1 job" in f.evidence
        assert "about 100 long and 100 short questions per job" in f.evidence
    else:
        assert "no noise estimate" in f.evidence


def test_dilution_evidence_keeps_the_accuracies(tmp_path):
    f = _finding(_sweep(tmp_path / "s", "train.loss_norm", _norms((0.6, 0.58), (0.6, 0.55), (0.6, 0.4)),
                        world=LOSS_NORM_WORLD), "long_instructions_dilute")
    assert "length: short prompts 60.0%, long 40.0% (gap +20.0 points" in f.evidence
    assert "tokens: short prompts 60.0%, long 58.0% (gap +2.0 points" in f.evidence


def test_no_dilution_measured_with_seeds_is_not_supported(tmp_path):
    """Three seeds per normalisation, gaps within a point of each other: the seed interval lies
    within the smallest effect, so the absence of dilution is measured."""
    def seeds(short, longs):
        return [{"answer_acc": 0.5, "answer_acc_short_prompt": short, "answer_acc_long_prompt": lg} for lg in longs]
    values = {"tokens": seeds(0.6, (0.550, 0.552, 0.548)), "length": seeds(0.6, (0.549, 0.551, 0.547))}
    f = _finding(_sweep(tmp_path / "s", "train.loss_norm", values, world=LOSS_NORM_WORLD, seeds=3),
                 "long_instructions_dilute")
    assert f.verdict == NOT_SUPPORTED, f.evidence
    assert "n = 3 vs 3 jobs; seed noise" in f.evidence


def test_without_the_split_metric_it_is_not_measurable(tmp_path):
    values = {n: {"answer_acc": 0.5} for n in ("tokens", "length")}
    root = tmp_path / "s"
    write_multirun_yaml(root, ["train.loss_norm=tokens,length"])
    for v, final in values.items():
        ov = [f"train.loss_norm={v}"]
        write_job(root / ov[0], overrides=ov,
                  summary={"status": "completed", "config": {"train.loss_norm": v}, "overrides": ov,
                           "base": {"raw_loss": 0.2}, "final": {"raw_loss": 0.3, **final}})
    f = _finding(root, "long_instructions_dilute")
    assert f.verdict == NOT_MEASURABLE and "no completed job reports" in f.evidence


def _masks(assistant, last):
    return {"assistant": {"answer_acc_multi_turn": assistant}, "last": {"answer_acc_multi_turn": last}}


# Second-turn accuracy per mask, base 0%, 150 second turns per job.
SECOND_TURN_CASES = {
    "answers": (_masks(0.8, 0.6), MULTI_TURN_WORLD, SUPPORTED),
    # a real gain of 5 points, but it answers one second turn in twenty
    "hardly answers": (_masks(0.05, 0.0), MULTI_TURN_WORLD, NOT_SUPPORTED),
    # 30% +- 7: under half beyond noise (the old margin called this inconclusive)
    "a third": (_masks(0.3, 0.2), MULTI_TURN_WORLD, NOT_SUPPORTED),
    # 48% on 150 items: its interval straddles one half
    "about half": (_masks(0.48, 0.2), MULTI_TURN_WORLD, INCONCLUSIVE),
    # no count of second turns, one seed: 80% is not judged (the old margin called it answering)
    "no item counts": (_masks(0.8, 0.6), None, INCONCLUSIVE),
}


@pytest.mark.parametrize("values, world, verdict", SECOND_TURN_CASES.values(), ids=SECOND_TURN_CASES.keys())
def test_second_turn_by_the_noise_standard(values, world, verdict, tmp_path):
    f = _finding(_sweep(tmp_path / "s", "template.mask", values, world=world), "answers_second_turn")
    assert f.verdict == verdict, f.evidence
    assert "best mask assistant" in f.evidence and "base model 0.0%" in f.evidence
    if world is not None:
        assert "at least 150 second-turn questions per job" in f.evidence and "95% CI" in f.evidence
    else:
        assert "no noise estimate" in f.evidence


def test_second_turns_not_scored_shrink_the_count(tmp_path):
    """eval.max_items cut 30 questions: at most 120 of the second turns were scored."""
    root = _sweep(tmp_path / "s", "template.mask", _masks(0.8, 0.6), world=MULTI_TURN_WORLD)
    for job in root.iterdir():
        if (job / "summary.json").exists():
            import json
            s = json.loads((job / "summary.json").read_text())
            s["data"]["world"]["n_eval_items"] = 220
            (job / "summary.json").write_text(json.dumps(s))
    assert "at least 120 second-turn questions" in _finding(root, "answers_second_turn").evidence


def test_second_turns_counted_by_the_job_are_the_count(tmp_path):
    """A job that recorded its second turns (summary.json's scored): that count, not the lower
    bound derived from the world settings, is the item noise's n; the verdict's rule is the same."""
    import json
    root = _sweep(tmp_path / "s", "template.mask", _masks(0.8, 0.6), world=MULTI_TURN_WORLD)
    for job in root.iterdir():
        if (job / "summary.json").exists():
            s = json.loads((job / "summary.json").read_text())
            s["scored"] = {"answer": 250, "multi_turn": {"correct": 0, "n": 140}}
            (job / "summary.json").write_text(json.dumps(s))
    f = _finding(root, "answers_second_turn")
    assert "item noise from 140 second-turn questions per job (as the jobs counted them)" in f.evidence
    assert f.verdict == SUPPORTED
