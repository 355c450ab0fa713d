"""sft-sweep-chat and sft-sweep-eval decode as the job's evaluation did (its recorded repetition
controls) unless told otherwise, so a researcher sees the answers the metrics judged."""

import json

import pytest
import yaml

from sft_sweep import chat
from sft_sweep.config import register_configs
from sft_sweep.decoding import recorded_decoding
from sft_sweep.eval_cli import decoding_overrides, main as eval_main
from sft_sweep.jobmodels import resolve
from sft_sweep.nn import GPT, GPTConfig, save_checkpoint
from sft_sweep.tokenizer import ByteTokenizer
from sft_sweep.train.job import Job
from tests.conftest import REPO, compose_cfg

register_configs()
SMOKE = ["experiment=smoke", "train.threads=1"]
TOK = ByteTokenizer()


def _job_dir(tmp_path, summary, config=None):
    job = tmp_path / "job"
    (job / ".hydra").mkdir(parents=True)
    model = GPT(GPTConfig(n_layer=1, n_head=2, n_embd=16, n_mlp=32, block_size=64, vocab_size=TOK.vocab_size), seed=0)
    save_checkpoint(job / "model.npz", model)
    (job / "summary.json").write_text(json.dumps({"status": "completed", **summary}))
    (job / ".hydra" / "config.yaml").write_text(yaml.safe_dump(config or {"template": {"name": "chatml"}}))
    return job


def test_the_recorded_decoding_comes_from_the_summary_then_the_config(tmp_path):
    job = _job_dir(tmp_path, {"free_form": {"decoding": {"repetition_penalty": 1.3, "no_repeat_ngram": 6}}},
                   {"eval": {"repetition_penalty": 1.0, "no_repeat_ngram": 0}})
    values, source = recorded_decoding(job, resolve(str(job)).config)
    assert values == {"repetition_penalty": 1.3, "no_repeat_ngram": 6} and "summary.json" in source
    (job / "summary.json").write_text(json.dumps({"status": "completed"}))
    values, source = recorded_decoding(job, {"eval": {"no_repeat_ngram": 4}})
    assert values == {"repetition_penalty": 1.0, "no_repeat_ngram": 4} and "config" in source
    assert recorded_decoding(None, {})[0] == {"repetition_penalty": 1.0, "no_repeat_ngram": 0}


def test_chat_generates_with_the_jobs_decoding_unless_told_otherwise(tmp_path, monkeypatch, capsys):
    job = _job_dir(tmp_path, {"free_form": {"decoding": {"repetition_penalty": 1.3, "no_repeat_ngram": 6}}})
    seen = []
    real = chat.generate

    def spy(*a, **kw):
        seen.append((kw["repetition_penalty"], kw["no_repeat_ngram"]))
        return real(*a, **kw)

    monkeypatch.setattr(chat, "generate", spy)
    chat.main([str(job), "--only", "tuned", "--prompt", "hello", "--max-new-tokens", "8", "--json"])
    out = json.loads(capsys.readouterr().out)
    assert seen == [(1.3, 6)]
    assert out["sampling"]["repetition_penalty"] == 1.3 and out["sampling"]["no_repeat_ngram"] == 6
    seen.clear()
    chat.main([str(job), "--only", "tuned", "--prompt", "hello", "--max-new-tokens", "8", "--no-repeat-ngram", "0"])
    assert seen == [(1.3, 0)]
    assert "decoding: repetition_penalty=1.3 (from the command line" in capsys.readouterr().err


def test_a_bad_decoding_flag_is_one_line(tmp_path, capsys):
    job = _job_dir(tmp_path, {})
    with pytest.raises(SystemExit) as e:
        chat.main([str(job), "--prompt", "x", "--repetition-penalty", "0"])
    err = capsys.readouterr().err
    assert e.value.code == 2 and "--repetition-penalty: must be a positive number" in err and "Traceback" not in err


def test_eval_pins_the_recorded_decoding_and_lets_flags_and_overrides_win(tmp_path):
    job = _job_dir(tmp_path, {"free_form": {"decoding": {"repetition_penalty": 1.3, "no_repeat_ngram": 6}}})
    found = resolve(str(job))
    pins, source = decoding_overrides(found, [])
    assert pins == ["eval.repetition_penalty=1.3", "eval.no_repeat_ngram=6"] and "summary.json" in source
    args = type("A", (), {"repetition_penalty": None, "no_repeat_ngram": 0})()
    assert decoding_overrides(found, [], args)[0] == ["eval.repetition_penalty=1.3", "eval.no_repeat_ngram=0"]
    pins, source = decoding_overrides(found, ["eval.no_repeat_ngram=12"])
    assert pins == ["eval.repetition_penalty=1.3"] and source == "the overrides given"


def test_eval_of_a_job_evaluated_with_controls_reproduces_its_metrics(tmp_path):
    """The job ran with eval.no_repeat_ngram=3; evaluated again without saying so, the same answers."""
    overrides = [*SMOKE, f"pretrain.cache_dir={tmp_path / 'cache'}", "eval.no_repeat_ngram=3"]
    job = Job(compose_cfg(overrides), tmp_path / "job", overrides=overrides, base_dir=str(REPO))
    summary = job.run()
    assert summary["status"] == "completed", summary.get("error")
    assert summary["free_form"]["decoding"]["no_repeat_ngram"] == 3
    # what a job's .hydra records: the overrides without the decoding, so only the summary knows it
    (job.dir / ".hydra").mkdir()
    kept = [o for o in overrides if not o.startswith("eval.")]
    (job.dir / ".hydra" / "overrides.yaml").write_text("\n".join(f"- {o}" for o in kept) + "\n")
    out = tmp_path / "again.json"
    eval_main([str(job.dir), "--out", str(out)])
    result = json.loads(out.read_text())
    assert result["decoding"] == {"repetition_penalty": 1.0, "no_repeat_ngram": 3}
    assert result["metrics"] == pytest.approx(summary["final"])
    eval_main([str(job.dir), "--no-repeat-ngram", "0", "--out", str(out)])
    assert json.loads(out.read_text())["decoding"]["no_repeat_ngram"] == 0
