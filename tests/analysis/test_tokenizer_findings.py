"""A sweep over tokenizers meets per byte only: per-token losses leave its tables, and its findings
(better base at equal pre-training time by held-out bits per byte; better tuned model by follow
rate, ROUGE-L and response nats per byte) follow the noise standard, including claims the data
contradicts and comparisons within noise."""

from __future__ import annotations

import json
import math

from analysis.collect import collect_runs
from analysis.per_byte import per_byte_only, pretrain_steps, tokenizer_label
from analysis.registry import compute_findings
from analysis.report import summary_table
from analysis.findings.tokenizers import tokenizer_findings
from analysis_helpers import make_results_sweep

TOKS = {"bytes": ("bytes", 1024), "bpe 512": ("bpe", 512), "bpe 1024": ("bpe", 1024)}


def _sweep(tmp_path, base_nats, se, finals, name="tok"):
    jobs = []
    for tok, (n, v) in TOKS.items():
        nats = base_nats[tok]
        jobs.append({"params": {"tokenizer.name": n, "tokenizer.vocab_size": v},
                     "base": {"raw_loss": nats * (1 if n == "bytes" else 2.5), "raw_nats_per_byte": nats,
                              "raw_nats_per_byte_se": se, "response_loss": 3.0, "follow_rate": 0.0,
                              "follow_rate_n": 40, "rouge_l": 0.05, "response_nats_per_byte": 2.5},
                     "final": {"raw_loss": nats * 1.02 * (1 if n == "bytes" else 2.5), **finals[tok]}})
    d = make_results_sweep(tmp_path / name, jobs)
    for num, tok in enumerate(TOKS):
        p = d / str(num) / "summary.json"
        s = json.loads(p.read_text())
        s["config"].update({"pretrain.steps": 1500, "pretrain.step_cost.260": 1.0, "pretrain.step_cost.512": 1.0,
                            "pretrain.step_cost.1024": 1.04})
        s["timings"]["pretrain_s"] = 300.0 + num
        half = finals[tok].pop("rouge_half", 0.02)
        s["free_form"] = {"final": {"rouge_l": {"mean": s["final"]["rouge_l"],
                                                "ci95": [s["final"]["rouge_l"] - half, s["final"]["rouge_l"] + half]},
                                    "response_nats_per_byte": {"mean": s["final"]["response_nats_per_byte"],
                                                               "ci95": [s["final"]["response_nats_per_byte"] - 0.05,
                                                                        s["final"]["response_nats_per_byte"] + 0.05]}}}
        p.write_text(json.dumps(s))
    return d


FINALS = {"bytes": {"follow_rate": 0.30, "follow_rate_n": 40, "rouge_l": 0.08, "response_nats_per_byte": 2.0},
          "bpe 512": {"follow_rate": 0.80, "follow_rate_n": 40, "rouge_l": 0.16, "response_nats_per_byte": 1.6},
          "bpe 1024": {"follow_rate": 0.78, "follow_rate_n": 40, "rouge_l": 0.15, "response_nats_per_byte": 1.7}}


def test_labels_and_steps_from_the_flat_config():
    assert tokenizer_label({"tokenizer.name": "bytes", "tokenizer.vocab_size": 1024}) == "bytes"
    assert tokenizer_label({}) == "bytes"
    assert tokenizer_label({"tokenizer.name": "bpe", "tokenizer.vocab_size": 512}) == "bpe 512"
    cfg = {"tokenizer.name": "bpe", "tokenizer.vocab_size": 2048, "pretrain.steps": 1500,
           "pretrain.step_cost.260": 1.0, "pretrain.step_cost.2048": 1.19}
    assert pretrain_steps(cfg) == 1261
    assert pretrain_steps({"pretrain.steps": 1500}) == 1500


def test_per_token_losses_leave_a_sweep_over_tokenizers(tmp_path):
    runs = collect_runs(_sweep(tmp_path, {"bytes": 1.6, "bpe 512": 1.3, "bpe 1024": 1.25}, 0.02, json.loads(json.dumps(FINALS))))
    for c in ("final_raw_loss", "base_raw_loss", "final_response_loss", "base_response_loss"):
        assert c not in runs.jobs
    assert "base_raw_nats_per_byte" in runs.jobs and runs.jobs["forgetting_pct"].notna().all()
    assert not runs.curves[(runs.curves["kind"] == "eval")]["metric"].isin(["raw_loss", "response_loss"]).any()
    vocab = dict(zip(runs.jobs["tokenizer.name"] + " " + runs.jobs["job"], runs.jobs["tokenizer.vocab_size"]))
    assert vocab["bytes 0"] == 260 and vocab["bpe 1"] == 512 and vocab["bpe 2"] == 1024  # bytes never reads it
    header, rows = summary_table(runs)
    assert not any("raw-text loss" in h or h == "response loss" for h in header)
    again = per_byte_only(runs)  # idempotent
    assert list(again.jobs.columns) == list(runs.jobs.columns) and len(again.curves) == len(runs.curves)


def test_one_tokenizer_keeps_its_per_token_losses(tmp_path):
    d = make_results_sweep(tmp_path / "lr", [{"params": {"optim.lr": 1e-3}, "final": {"raw_loss": 1.3}},
                                            {"params": {"optim.lr": 3e-3}, "final": {"raw_loss": 1.4}}])
    assert "final_raw_loss" in collect_runs(d).jobs


def test_bpe_base_better_beyond_noise_and_tuned_findings(tmp_path):
    runs = collect_runs(_sweep(tmp_path, {"bytes": 1.6, "bpe 512": 1.3, "bpe 1024": 1.25}, 0.02, json.loads(json.dumps(FINALS))))
    found = {f.key: f for f in tokenizer_findings(runs)}
    base = found["tokenizer_better_base"]
    assert base.verdict == "supported"
    assert base.claim.startswith("At equal pre-training time, bpe 1024 gives a better base than bytes")
    assert f"bytes: {1.6 / math.log(2):.3f}" in base.evidence and "1442 steps" in base.evidence
    assert "1500 steps" in base.evidence and "pre-trained in 300 s here" in base.evidence
    assert base.numbers["diff_bits"] < 0
    d = base.decided_by  # the findings table shows what decided it
    assert d is not None and d.what.startswith("held-out bits per byte of the base, bpe 1024 minus bytes")
    assert d.value.endswith(" bits/byte") and d.low and d.high and d.noise == "held-out window noise"
    for key in ("tokenizer_better_tuned_follow_rate", "tokenizer_better_tuned_rouge_l"):
        assert found[key].decided_by is not None and "minus the runner-up" in found[key].decided_by.what
    assert "bpe 1024 minus the next best, bpe 512: -0.072 bits/byte" in base.evidence  # within noise
    assert base.evidence.endswith("within noise.")
    follow = found["tokenizer_better_tuned_follow_rate"]
    assert follow.claim.startswith("bpe 512 gives the better tuned model by follow rate")
    assert follow.verdict == "inconclusive" and "runner-up bpe 1024" in follow.evidence  # 80% vs 78% of 40
    assert "bpe 512 minus bytes: +50.0 points" in follow.evidence and follow.evidence.endswith("beyond noise.")
    rouge = found["tokenizer_better_tuned_rouge_l"]
    assert rouge.verdict == "inconclusive"  # 0.16 vs 0.15 with intervals of +-0.02
    nats = found["tokenizer_better_tuned_response_nats_per_byte"]
    assert nats.numbers["best"] == "bpe 512" and nats.verdict == "supported"  # 1.6 vs 1.7, +-0.05 each
    # registered: the report's findings include them
    assert "tokenizer_better_base" in {f.key for f in compute_findings(runs)}


def test_a_contradicted_and_a_noisy_base_claim(tmp_path):
    # bytes best: the claim that the best beats the runner-up holds beyond noise
    runs = collect_runs(_sweep(tmp_path, {"bytes": 1.2, "bpe 512": 1.5, "bpe 1024": 1.6}, 0.02,
                               json.loads(json.dumps(FINALS)), name="a"))
    base = {f.key: f for f in tokenizer_findings(runs)}["tokenizer_better_base"]
    assert base.claim.startswith("At equal pre-training time, bytes gives a better base than bpe 512")
    assert base.verdict == "supported"
    # within noise: a large standard error
    runs = collect_runs(_sweep(tmp_path, {"bytes": 1.6, "bpe 512": 1.58, "bpe 1024": 1.59}, 0.2,
                               json.loads(json.dumps(FINALS)), name="b"))
    assert {f.key: f for f in tokenizer_findings(runs)}["tokenizer_better_base"].verdict == "inconclusive"
    # no difference as large as the smallest effect: a tiny standard error, a tiny difference
    runs = collect_runs(_sweep(tmp_path, {"bytes": 1.600, "bpe 512": 1.601, "bpe 1024": 1.599}, 0.001,
                               json.loads(json.dumps(FINALS)), name="c"))
    assert {f.key: f for f in tokenizer_findings(runs)}["tokenizer_better_base"].verdict == "not supported"


def test_no_findings_when_more_than_the_tokenizer_varies(tmp_path):
    d = make_results_sweep(tmp_path / "lr", [{"params": {"optim.lr": 1e-3}, "final": {"raw_loss": 1.3}},
                                            {"params": {"optim.lr": 3e-3}, "final": {"raw_loss": 1.4}}])
    assert tokenizer_findings(collect_runs(d)) == []


def test_each_base_model_has_its_own_row(tmp_path):
    """A sweep over tokenizers tunes three bases: the summary table shows each base's held-out bits
    per byte on a row of its own, never their mean."""
    d = _sweep(tmp_path, {"bytes": 1.6, "bpe 512": 1.3, "bpe 1024": 1.25}, 0.02, json.loads(json.dumps(FINALS)))
    for num in range(3):
        p = d / str(num) / "summary.json"
        s = json.loads(p.read_text())
        s["base_model"] = {"key": f"base{num}", "built_here": True}
        p.write_text(json.dumps(s))
    header, rows = summary_table(collect_runs(d))
    bases = [r for r in rows if r[0].startswith("base model")]
    assert len(bases) == 3, rows
    col = header.index("held-out text nats/byte")
    by_base = {" ".join(b[:2]): b[col] for b in bases}
    assert by_base == {"base model: bpe 512": "1.300", "base model: bpe 1024": "1.250",
                       "base model: bytes 260": "1.600"}
