"""A sweep over the peft settings reads in the report from their descriptions alone."""

from __future__ import annotations

from analysis.collect import collect_runs
from analysis.roles import key_of
from analysis.style import col_name, fmt_param, fmt_value, role_of
from analysis_helpers import make_results_sweep


def test_a_peft_sweep_is_labelled_by_the_schema(tmp_path):
    final = {"follow_rate": 0.9, "answer_acc": 0.8, "raw_loss": 0.3}
    jobs = [{"params": {"peft.method": m, "peft.rank": r}, "final": final}
            for m, r in (("full", 8), ("lora", 4), ("lora", 16))]
    runs = collect_runs(make_results_sweep(tmp_path / "sweep", jobs))
    assert runs.axis("method") == key_of("method") == "peft.method"
    assert runs.axis("rank") == "peft.rank" and runs.axis("lr") is None
    assert col_name("peft.method") == "fine-tuning method" and role_of("peft.rank") == "rank"
    assert fmt_param("peft.rank", 16) == "rank 16" and fmt_param("peft.method", "lora") == "method lora"
    assert fmt_value("peft.targets", ["attn.qkv", "mlp.fc"]) == "[attn.qkv, mlp.fc]"
    assert col_name("train.neftune_alpha") == "NEFTune alpha" and col_name("eval.blend") == "blend weights"


def test_a_column_no_schema_describes_is_recognised_by_its_name():
    assert role_of("trainer.learning_rate") == "lr" and col_name("trainer.learning_rate") == "learning rate"
    assert fmt_value("trainer.learning_rate", 0.0003) == "3e-4"
    assert role_of("mixing.ratio") == "replay" and role_of("something.else") is None
