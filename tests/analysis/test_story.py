"""The quickstart's story findings, computed from job files, against their targets."""

from __future__ import annotations

from pathlib import Path

import pytest

from analysis.collect import collect_runs
from analysis.registry import compute_findings
from analysis.verdicts import INCONCLUSIVE, NOT_SUPPORTED, SUPPORTED
from analysis.findings.story import story_findings
from tests.analysis.analysis_helpers import write_job, write_multirun_yaml

BASE = {"raw_loss": 0.23, "follow_rate": 0.0, "answer_acc": 0.06, "knowledge_acc": 0.0,
        "base_knowledge_sft": 0.98, "base_knowledge_probe": 0.95}
# (lr, replay) -> final metrics, forgetting %
GOOD = {(3e-5, 0.0): ({"follow_rate": 0.1, "answer_acc": 0.05, "knowledge_acc": 0.0}, 3.0),
        (3e-5, 0.5): ({"follow_rate": 0.05, "answer_acc": 0.04, "knowledge_acc": 0.0}, 1.0),
        (3e-4, 0.0): ({"follow_rate": 1.0, "answer_acc": 0.5, "knowledge_acc": 0.25}, 120.0),
        (3e-4, 0.5): ({"follow_rate": 1.0, "answer_acc": 0.83, "knowledge_acc": 0.95}, -2.0),
        (2e-3, 0.0): ({"follow_rate": 1.0, "answer_acc": 0.2, "knowledge_acc": 0.0}, 600.0),
        (2e-3, 0.5): ({"follow_rate": 1.0, "answer_acc": 0.7, "knowledge_acc": 0.9}, 1.0)}


def _sweep(root: Path, table, seeds=(0,), base_knowledge_kept=0.97, items=None) -> Path:
    """``items``: the held-out questions and probe questions every job records (None: no count)."""
    write_multirun_yaml(root, ["optim.lr=3e-5,3e-4,2e-3", "mix.replay_ratio=0,0.5"]
                        + (["data.world.seed=" + ",".join(map(str, seeds))] if len(seeds) > 1 else []))
    for (lr, rp), (final, forget) in table.items():
        for s in seeds:
            ov = [f"optim.lr={lr}", f"mix.replay_ratio={rp}"] + ([f"data.world.seed={s}"] if len(seeds) > 1 else [])
            fin = {**BASE, **final, "base_knowledge_sft": base_knowledge_kept if rp else 0.3,
                   "base_knowledge_probe": base_knowledge_kept if rp else 0.2,
                   "raw_loss": BASE["raw_loss"] * (1 + forget / 100)}
            cfg = {"optim.lr": lr, "mix.replay_ratio": rp, "data.world.seed": s, "train.epochs": 4}
            summary = {"status": "completed", "config": cfg, "overrides": ov, "base": BASE,
                       "final": fin, "forgetting_pct": forget + 0.1 * s}
            if items is not None:
                summary["data"] = {"world": {"n_eval_items": items[0], "n_probe_items": items[1]}}
            write_job(root / ",".join(ov), overrides=ov, summary=summary)
    return root


def _by_key(findings):
    return {f.key: f for f in findings}


def test_story_supported(tmp_path):
    f = _by_key(story_findings(collect_runs(_sweep(tmp_path / "s", GOOD))))
    assert [f[k].verdict for k in ("base_knows_not_answers", "best_answers_and_keeps",
                                   "no_replay_forgets", "smallest_lr_no_format")] == [SUPPORTED] * 4
    best = f["best_answers_and_keeps"].evidence
    assert best.startswith("best (criterion: the highest answer + probe accuracy") and "): lr 3e-4, replay 50%:" in best and "answer acc. 83.0% (fixed target >= 75%, met on the value; no noise estimate)" in best
    assert "forgetting -2.0% (fixed target <= +5%, met on the value" in best
    assert "70 points lower" in f["no_replay_forgets"].evidence


def test_story_reports_missed_targets(tmp_path):
    bad = dict(GOOD)
    bad[(3e-4, 0.5)] = ({"follow_rate": 1.0, "answer_acc": 0.6, "knowledge_acc": 0.95}, -2.0)
    bad[(2e-3, 0.5)] = ({"follow_rate": 1.0, "answer_acc": 0.5, "knowledge_acc": 0.9}, 1.0)
    bad[(3e-5, 0.0)] = ({"follow_rate": 0.6, "answer_acc": 0.05, "knowledge_acc": 0.0}, 3.0)
    f = _by_key(story_findings(collect_runs(_sweep(tmp_path / "s", bad, base_knowledge_kept=0.8))))
    best = f["best_answers_and_keeps"]
    assert best.verdict == NOT_SUPPORTED and "answer acc. 60.0% (fixed target >= 75%, missed on the value" in best.evidence
    assert "a drop <= 5 points, missed on the value" in best.evidence
    assert f["smallest_lr_no_format"].verdict == NOT_SUPPORTED


def test_story_with_seeds_uses_means_and_cis(tmp_path):
    f = _by_key(story_findings(collect_runs(_sweep(tmp_path / "s", GOOD, seeds=(0, 1, 2)))))
    best = f["best_answers_and_keeps"]
    assert best.numbers["n_seeds"] == 3 and "over 3 seeds" in best.evidence and "±" in best.evidence
    assert "target >= 70%" in best.evidence  # the 3-seed targets


def test_story_absent_without_the_metric(tmp_path):
    root = tmp_path / "s"
    write_multirun_yaml(root, ["optim.lr=1e-4,1e-3"])
    for lr in (1e-4, 1e-3):
        ov = [f"optim.lr={lr}"]
        write_job(root / ov[0], overrides=ov, summary={
            "status": "completed", "config": {"optim.lr": lr}, "overrides": ov,
            "base": {"raw_loss": 1.0, "follow_rate": 0.0}, "final": {"raw_loss": 1.1, "follow_rate": 0.9},
            "forgetting_pct": 10.0})
    runs = collect_runs(root)
    assert story_findings(runs) == []
    assert compute_findings(runs)  # the other findings still come


def test_replay_contrast_when_only_replay_and_seeds_are_swept(tmp_path):
    """The seeds experiment: one learning rate, replay {0, 0.5}, 3 seeds."""
    root = tmp_path / "s"
    table = {k: v for k, v in GOOD.items() if k[0] == 3e-4}
    _sweep(root, table, seeds=(0, 1, 2))
    write_multirun_yaml(root, ["mix.replay_ratio=0,0.5", "data.world.seed=0,1,2"])
    f = _by_key(story_findings(collect_runs(root)))
    assert f["no_replay_forgets"].verdict == SUPPORTED, f["no_replay_forgets"].evidence
    assert "70 points lower" in f["no_replay_forgets"].evidence
    assert f["best_answers_and_keeps"].verdict == SUPPORTED


def _with(table, setting, **final):
    out = dict(table)
    metrics, forget = out[setting]
    out[setting] = ({**metrics, **final}, forget)
    return out


# (table, items per job, finding, verdict): the targets judged by the noise standard.
NOISE_CASES = {
    # 18% of 100 follows: under the 20% target on the value, but its interval (12-27%) crosses it
    "smallest lr within noise": (_with(GOOD, (3e-5, 0.0), follow_rate=0.18), (100, 40),
                                 "smallest_lr_no_format", INCONCLUSIVE),
    "smallest lr met beyond noise": (GOOD, (100, 40), "smallest_lr_no_format", SUPPORTED),
    # 25% of 100: over 20% on the value, but not beyond noise
    "smallest lr over the target within noise": (_with(GOOD, (3e-5, 0.0), follow_rate=0.25), (100, 40),
                                                 "smallest_lr_no_format", INCONCLUSIVE),
    "smallest lr missed beyond noise": (_with(GOOD, (3e-5, 0.0), follow_rate=0.6), (100, 40),
                                        "smallest_lr_no_format", NOT_SUPPORTED),
    # probe 82% on 40 probe questions against the 80% target: within noise
    "best probe within noise": (_with(GOOD, (3e-4, 0.5), knowledge_acc=0.82), (100, 40),
                                "best_answers_and_keeps", INCONCLUSIVE),
}


@pytest.mark.parametrize("table, items, key, verdict", NOISE_CASES.values(), ids=NOISE_CASES.keys())
def test_story_targets_are_judged_by_the_noise_standard(table, items, key, verdict, tmp_path):
    f = _by_key(story_findings(collect_runs(_sweep(tmp_path / "s", table, items=items))))[key]
    assert f.verdict == verdict, f.evidence
    assert "95% CI" in f.evidence
    if verdict == INCONCLUSIVE:
        assert "within noise" in f.evidence
