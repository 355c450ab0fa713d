"""An own-data sweep's report shows the free-form metrics: the follow rate with its n, ROUGE-L and
response nats/byte with the paired interval against the base, forgetting with its interval, and
the metrics the jobs could not measure as absent with their reason, never 0."""

from __future__ import annotations

from analysis.collect import collect_runs
from analysis.registry import compute_findings
from analysis.render import md_escape
from analysis.report import summary_table, write_report
from analysis_helpers import make_results_sweep

BASE = {"raw_loss": 1.70, "response_loss": 2.20, "follow_rate": 0.0, "follow_rate_n": 39,
        "rouge_l": 0.048, "rouge_l_n": 39, "response_nats_per_byte": 3.35, "response_nats_per_byte_n": 42}


def _own_data_sweep(tmp_path):
    jobs = [
        {"params": {"optim.lr": 1e-3},
         "final": {"raw_loss": 1.73, "follow_rate": 0.08, "follow_rate_n": 39, "rouge_l": 0.049,
                   "response_nats_per_byte": 2.447},
         "forgetting_ci": (1.21, 2.20),
         "paired": {"rouge_l": {"mean": 0.001, "ci95": [-0.007, 0.009], "n": 39, "excludes_zero": False},
                    "response_nats_per_byte": {"mean": -0.9, "ci95": [-1.423, -0.376], "n": 42,
                                               "excludes_zero": True}}},
        {"params": {"optim.lr": 3e-3},
         "final": {"raw_loss": 1.78, "follow_rate": 0.64, "follow_rate_n": 39, "rouge_l": 0.079,
                   "response_nats_per_byte": 3.517},
         "forgetting_ci": (4.09, 5.37),
         "paired": {"rouge_l": {"mean": 0.031, "ci95": [0.011, 0.050], "n": 39, "excludes_zero": True},
                    "response_nats_per_byte": {"mean": 0.17, "ci95": [-0.136, 0.476], "n": 42,
                                               "excludes_zero": False}}},
    ]
    return make_results_sweep(tmp_path / "own", jobs, base=BASE)


def test_the_table_shows_follow_n_rouge_nats_per_byte_and_their_paired_intervals(tmp_path):
    header, rows = summary_table(collect_runs(_own_data_sweep(tmp_path)))
    col = {h: i for i, h in enumerate(header)}
    assert header[0] == "learning rate"
    base, slow, fast = rows
    assert base[col["follow rate (of fitting prompts)"]] == "0% of 39"
    assert base[col["ROUGE-L (paired change vs base [95%])"]] == "0.048"
    assert base[col["response nats/byte (paired change vs base [95%])"]] == "3.350"
    assert slow[col["follow rate (of fitting prompts)"]] == "8% of 39"
    assert slow[col["ROUGE-L (paired change vs base [95%])"]] == "0.049 (+0.001 [-0.007, +0.009])"
    assert slow[col["response nats/byte (paired change vs base [95%])"]] == "2.447 (-0.900 [-1.423, -0.376])"
    assert fast[col["ROUGE-L (paired change vs base [95%])"]] == "0.079 (+0.031 [+0.011, +0.050])"
    assert fast[col["forgetting [95%]"]] == "+4.7% [+4.1, +5.4]"


def test_findings_judge_rouge_and_nats_per_byte_by_their_paired_intervals(tmp_path):
    found = {f.key: f for f in compute_findings(collect_runs(_own_data_sweep(tmp_path)))}
    rouge = found["sft_closer_to_references"]
    assert rouge.verdict == "supported"
    assert "+0.031 [+0.011, +0.050]" in rouge.evidence and "+0.001 [-0.007, +0.009]" in rouge.evidence
    assert "1 of 2 settings" in rouge.evidence
    nats = found["sft_lowers_response_nats_per_byte"]
    assert nats.verdict == "supported" and "-0.900 [-1.423, -0.376]" in nats.evidence
    follow = found["sft_teaches_following"]
    assert "39 held-out prompts whose reference fits" in follow.evidence


def _unmeasurable_sweep(tmp_path):
    """Jobs whose answers could not fit the generation room: follow rate and ROUGE-L absent."""
    why = ("follow_rate: only 3 of 49 held-out items have a reference answer that fits the generation room "
           "(prompt + eval.max_new_tokens=48 within model.block_size=128); see the data_fit check")
    base = {"raw_loss": 1.9, "response_loss": 2.15, "response_nats_per_byte": 2.1}
    jobs = [{"params": {"optim.lr": lr}, "final": {"raw_loss": 1.95, "response_nats_per_byte": 2.0},
             "not_measured": {"follow_rate": why, "rouge_l": why},
             "paired": {"response_nats_per_byte": {"mean": -0.1, "ci95": [-0.15, -0.05], "n": 49}}}
            for lr in (1e-3, 3e-3)]
    return make_results_sweep(tmp_path / "cut", jobs, base=base), why


def test_absent_metrics_say_why_and_are_never_zero(tmp_path):
    sweep, why = _unmeasurable_sweep(tmp_path)
    runs = collect_runs(sweep)
    header, rows = summary_table(runs)
    col = {h: i for i, h in enumerate(header)}
    for row in rows:
        assert row[col["follow rate (of fitting prompts)"]] == "not measured"
        assert row[col["ROUGE-L (paired change vs base [95%])"]] == "not measured"
        assert "0%" not in " ".join(row)
    assert rows[1][col["response nats/byte (paired change vs base [95%])"]] == "2.000 (-0.100 [-0.150, -0.050])"
    paths = write_report(sweep)
    md = paths.markdown.read_text()
    assert "Not measured (absent, not zero" in md
    assert "- " + md_escape(f"{why} (2 of 2 jobs)") in md
    assert "- " + md_escape(f"rouge_l: {why} (2 of 2 jobs)") in md
    found = {f.key: f for f in compute_findings(runs)}
    assert found["sft_closer_to_references"].verdict == "not measurable"
    assert "only 3 of 49" in found["sft_closer_to_references"].evidence
    assert found["sft_teaches_following"].verdict == "not measurable"
    assert "only 3 of 49" in found["sft_teaches_following"].evidence


def test_a_world_sweeps_table_is_unchanged(tmp_path):
    from analysis_helpers import make_sweep
    header, _ = summary_table(collect_runs(make_sweep(tmp_path / "w", lrs=(1e-4, 1e-3), epochs=(1,), seeds=(0,))))
    assert not any("ROUGE" in h or "nats/byte" in h for h in header)
    assert "follow rate" in header
