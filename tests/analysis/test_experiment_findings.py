"""Findings of the loss_norm and multi_turn experiments, from job files with known answers."""

from __future__ import annotations

from pathlib import Path

from analysis.collect import collect_runs
from analysis.registry import compute_findings
from analysis.verdicts import INCONCLUSIVE, NOT_MEASURABLE, NOT_SUPPORTED, SUPPORTED
from tests.analysis.analysis_helpers import write_job, write_multirun_yaml

BASE = {"raw_loss": 0.23, "follow_rate": 0.0, "answer_acc": 0.05, "answer_acc_long_prompt": 0.0,
        "answer_acc_short_prompt": 0.1, "answer_acc_multi_turn": 0.0}


def _sweep(root: Path, key: str, values: dict, extra_param=None) -> Path:
    """``values``: swept value -> final metrics."""
    write_multirun_yaml(root, [f"{key}=" + ",".join(map(str, values))] + ([extra_param] if extra_param else []))
    for v, final in values.items():
        ov = [f"{key}={v}"]
        write_job(root / ov[0], overrides=ov,
                  summary={"status": "completed", "config": {key: v, "optim.lr": 3e-4}, "overrides": ov,
                           "base": BASE, "final": {**BASE, **final}, "forgetting_pct": 100.0})
    return root


def _finding(root: Path, key: str):
    return {f.key: f for f in compute_findings(collect_runs(root))}[key]


def _norms(tokens, sequence, length):
    return {n: {"answer_acc": (s + lg) / 2, "answer_acc_short_prompt": s, "answer_acc_long_prompt": lg}
            for n, (s, lg) in (("tokens", tokens), ("sequence", sequence), ("length", length))}


def test_dilution_supported(tmp_path):
    f = _finding(_sweep(tmp_path / "s", "train.loss_norm", _norms((0.6, 0.58), (0.6, 0.55), (0.6, 0.4))),
                 "long_instructions_dilute")
    assert f.verdict == SUPPORTED
    assert "length: short prompts 60.0%, long 40.0% (gap +20.0 points" in f.evidence
    assert "tokens: short prompts 60.0%, long 58.0% (gap +2.0 points" in f.evidence


def test_no_dilution_not_supported(tmp_path):
    f = _finding(_sweep(tmp_path / "s", "train.loss_norm", _norms((0.6, 0.55), (0.6, 0.57), (0.6, 0.52))),
                 "long_instructions_dilute")
    assert f.verdict == NOT_SUPPORTED and "+3.0 points" in f.evidence


def test_long_prompts_harder_everywhere_is_inconclusive(tmp_path):
    f = _finding(_sweep(tmp_path / "s", "train.loss_norm", _norms((0.7, 0.5), (0.7, 0.5), (0.7, 0.3))),
                 "long_instructions_dilute")
    assert f.verdict == INCONCLUSIVE


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


def test_second_turn(tmp_path):
    ok = {"assistant": {"answer_acc_multi_turn": 0.8}, "last": {"answer_acc_multi_turn": 0.6}}
    f = _finding(_sweep(tmp_path / "a", "template.mask", ok), "answers_second_turn")
    assert f.verdict == SUPPORTED
    assert "best mask assistant 80.0%" in f.evidence
    assert "base model 0.0%" in f.evidence
    low = {"assistant": {"answer_acc_multi_turn": 0.05}, "last": {"answer_acc_multi_turn": 0.0}}
    assert _finding(_sweep(tmp_path / "b", "template.mask", low), "answers_second_turn").verdict == NOT_SUPPORTED
    mid = {"assistant": {"answer_acc_multi_turn": 0.3}, "last": {"answer_acc_multi_turn": 0.2}}
    assert _finding(_sweep(tmp_path / "c", "template.mask", mid), "answers_second_turn").verdict == INCONCLUSIVE
