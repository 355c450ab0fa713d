"""The learning-forgetting front: the collector's method columns and blends table, the front
figure, and the findings on fine-tuning methods and mitigations, on synthetic job files."""

from __future__ import annotations

import pytest

from analysis.collect import collect_runs
from analysis_helpers import make_sweep
from front_helpers import job, make_front_sweep, peft_block, weight_change

FULL_RANKS = [20, 30, 25, 40, 22, 18, 35, 28]
LORA_RANKS = [3, 4, 4, 4, 2, 3, 4, 4]


def _peft_sweep(root):
    """full and LoRA r=4, two learning rates each; the full job at 3e-4 has two blends."""
    return make_front_sweep(root, [
        job({"peft.method": "full", "optim.lr": 3e-4}, 0.60, 50.0, peft=peft_block("full"),
            change=weight_change(FULL_RANKS), blends=[(0.4, 0.50, 10.0), (0.6, 0.55, 20.0)]),
        job({"peft.method": "full", "optim.lr": 1e-4}, 0.45, 20.0, peft=peft_block("full"),
            change=weight_change(FULL_RANKS)),
        job({"peft.method": "lora", "optim.lr": 3e-3}, 0.40, 5.0, peft=peft_block("lora", 4),
            change=weight_change(LORA_RANKS)),
        job({"peft.method": "lora", "optim.lr": 1e-3}, 0.30, 2.0, peft=peft_block("lora", 4),
            change=weight_change(LORA_RANKS)),
    ])


@pytest.fixture(scope="module")
def peft_runs(tmp_path_factory):
    return collect_runs(_peft_sweep(tmp_path_factory.mktemp("front") / "peft"))


# ---- collection -----------------------------------------------------------------------


def test_method_columns_are_read_from_the_summary(peft_runs):
    jobs = peft_runs.jobs.set_index("job")
    assert jobs.loc["0", "peft_method"] == "full" and jobs.loc["2", "peft_method"] == "lora"
    assert jobs.loc["0", "trainable_params"] == 100_000 and jobs.loc["2", "trainable_params"] == 4000
    assert jobs.loc["2", "trainable_share"] == pytest.approx(0.04)
    assert jobs.loc["0", "weight_change_median_rank"] == 26.5
    assert jobs.loc["2", "weight_change_median_rank"] == 4.0
    assert jobs.loc["2", "lora_rank"] == 4 and jobs.loc["2", "lora_targets"] == "attn.qkv,attn.proj,mlp.fc,mlp.proj"
    ranks = peft_runs.weight_ranks
    assert len(ranks) == 4 * 8 and set(ranks.columns) == {"job", "matrix", "effective_rank", "max_rank"}


def test_blends_are_a_table_of_their_own_never_jobs(peft_runs):
    assert len(peft_runs.jobs) == 4  # the two blends did not become jobs
    b = peft_runs.blends
    assert b["job"].tolist() == ["0", "0"] and b["t"].tolist() == [0.4, 0.6]
    assert b["optim.lr"].tolist() == [3e-4, 3e-4] and b["peft.method"].tolist() == ["full", "full"]
    assert b["final_answer_acc"].tolist() == [0.50, 0.55]
    assert b["forgetting_pct"].tolist() == pytest.approx([10.0, 20.0])
    assert b["items_answer"].tolist() == [200, 200]  # scored on the job's held-out items
    assert b["se_forgetting_pct"].tolist() == pytest.approx([0.5, 0.5])


def test_a_blend_without_forgetting_gets_it_from_its_raw_loss(tmp_path):
    import json
    root = _peft_sweep(tmp_path / "s")
    path = root / "0" / "summary.json"
    summary = json.loads(path.read_text())
    for b in summary["blends"]:
        del b["forgetting_pct"]
        del b["free_form"]
    path.write_text(json.dumps(summary))
    b = collect_runs(root).blends
    assert b["forgetting_pct"].tolist() == pytest.approx([10.0, 20.0])
    assert "se_forgetting_pct" not in b


def test_a_plain_sweep_gets_no_new_columns_and_empty_tables(tmp_path):
    runs = collect_runs(make_sweep(tmp_path / "plain", lrs=(1e-4, 1e-3), epochs=(1,), seeds=(0,)))
    assert not any(c.startswith(("peft_", "lora_", "freeze_", "weight_change_", "trainable_"))
                   for c in runs.jobs.columns)
    assert runs.blends.empty and runs.weight_ranks.empty
    assert {"job", "t"} <= set(runs.blends.columns)


def test_export_writes_the_blends(peft_runs, tmp_path):
    written = {p.name for p in peft_runs.export(tmp_path)}
    assert "blends.csv" in written
