"""A user's own data, measured: the fit check agrees with what the job did, a metric that cannot
be measured is absent with its reason, the intervals are right, and a path override keeps the
job directory one level deep where chat, eval and the report find it."""

import json
import math
import os
import subprocess
import sys

import numpy as np
import pytest

from sft_sweep.config import register_configs, to_object
from sft_sweep.data import Conversation, Turn, get_template
from sft_sweep.data.fit import dataset_fit, fit_lines
from sft_sweep.dirnames import short_dirname
from sft_sweep.nn import GPT, GPTConfig
from sft_sweep.tokenizer import ByteTokenizer
from sft_sweep.train import freeform
from sft_sweep.data import prepare
from sft_sweep.train.evaluate import Evaluator
from sft_sweep.train.job import Job
from sft_sweep.jobfiles import read_jsonl
from tests.conftest import REPO, compose_cfg

register_configs()
SMOKE = ["experiment=smoke", "train.threads=1"]


def _alpaca_file(path, n=60):
    """Records whose answers and prompts vary in length: some fit a 64-token block whole, some are
    cut, some leave no answer token in the block."""
    rng = np.random.default_rng(0)
    words = "the a cat dog sat ran on mat red blue big small over under".split()
    recs = []
    for i in range(n):
        n_in = int(rng.choice([2, 4, 16], p=[0.5, 0.35, 0.15]))
        n_out = int(rng.choice([1, 3, 12], p=[0.5, 0.35, 0.15]))
        recs.append({"instruction": f"Task {i}: " + " ".join(rng.choice(words, n_in)), "input": "",
                     "output": " ".join(rng.choice(words, n_out)) + "."})
    path.write_text(json.dumps(recs))
    return path


@pytest.fixture(scope="module")
def cache_dir(tmp_path_factory):
    return str(tmp_path_factory.mktemp("cache"))


FILES = ["data=files", "data.datasets.main.format=alpaca", "model.block_size=64", "data.val_fraction=0.25",
         "eval.max_new_tokens=24", "eval.max_items=50"]


def test_fit_check_counts_equal_the_jobs_own_counts(tmp_path, cache_dir):
    data = _alpaca_file(tmp_path / "mine.json")
    extra = [*FILES, f"data.datasets.main.path={data}"]
    cfg = compose_cfg([*SMOKE, f"pretrain.cache_dir={cache_dir}", *extra])
    s = Job(cfg, tmp_path / "job", overrides=extra, base_dir=str(REPO)).run()
    assert s["status"] == "completed", s.get("error")
    fit = s["data_fit"]["datasets"]
    length = s["data"]["length.main"]
    assert fit["main"]["n"] == length["n_in"] == s["data"]["quality.main"]["n_kept"]
    assert fit["main"]["truncated"] == length["truncated"] > 0
    assert fit["main"]["no_trained_token"] == length["dropped_no_trained_tokens"] > 0
    held = fit["heldout"]
    assert held["no_trained_token"] == s["data"]["length.val"]["dropped_no_trained_tokens"]
    # follow rate is measured on exactly the held-out prompts whose reference fits
    fitting = held["n"] - held["answer_too_long"]
    assert 0 < fitting < held["n"]
    for side in ("base", "final"):
        assert s[side]["follow_rate_n"] == fitting
        assert s[side]["rouge_l_n"] == fitting
        assert 0.0 <= s[side]["rouge_l"] <= 1.0
    # the shares pass the threshold: a warning with the numbers and the settings to change
    warned = [w for w in s["warnings"] if "does not fit the model" in w and "'main'" in w]
    assert warned and f"{fit['main']['truncated']} of {fit['main']['n']}" in warned[0]
    assert "model.block_size" in warned[0] and "max_response_chars" in warned[0]
    # intervals and paired changes in the summary; references in the samples
    ff = s["free_form"]
    assert ff["decoding"] == {"repetition_penalty": 1.0, "no_repeat_ngram": 0}
    for metric in ("response_nats_per_byte", "rouge_l"):
        lo, hi = ff["paired"][metric]["ci95"]
        assert lo <= ff["paired"][metric]["mean"] <= hi
    assert ff["forgetting_pct"]["mean"] == pytest.approx(s["forgetting_pct"], rel=1e-6)
    samples = read_jsonl(tmp_path / "job" / "samples.jsonl")
    assert samples and all(isinstance(r["reference"], str) and r["reference"] for r in samples)


def test_inspect_prints_the_fit_check(tmp_path):
    from sft_sweep.inspect_data import counts_lines, inspect_config

    data = _alpaca_file(tmp_path / "mine.json")
    cfg = to_object(compose_cfg([*FILES, f"data.datasets.main.path={data}"]))
    found = inspect_config(cfg, str(REPO), n_examples=1)
    text = "\n".join(counts_lines(found.counts))
    d = found.counts["fit"]["datasets"]["main"]
    assert f"truncated {d['truncated']} ({d['truncated_share']:.0%})" in text
    assert "does not fit the model" in text


def _tiny_model():
    tok = ByteTokenizer()
    return GPT(GPTConfig(vocab_size=tok.vocab_size, block_size=64, n_layer=1, n_head=2, n_embd=16, n_mlp=32),
               seed=0)


def _evaluator(tmp_path, extra):
    data = _alpaca_file(tmp_path / "mine.json")
    cfg = to_object(compose_cfg([*FILES, f"data.datasets.main.path={data}", *extra]))
    prepared = prepare(cfg, str(REPO))
    e = cfg.eval
    return Evaluator(template=prepared.template, val_examples=prepared.val_examples,
                     heldout_tokens=prepared.heldout_tokens, eval_items=[], probe_items=[],
                     follow_prompts=prepared.follow_prompts, block_size=cfg.model.block_size,
                     max_items=e.max_items, max_new_tokens=e.max_new_tokens, raw_windows=4, batch_size=8)


def test_a_metric_that_cannot_be_measured_is_absent_with_its_reason(tmp_path):
    # two new tokens cannot hold any reference answer and its end marker
    ev = _evaluator(tmp_path, ["eval.max_new_tokens=2"])
    metrics, _ = ev.evaluate(_tiny_model())
    for name in ("follow_rate", "rouge_l"):
        assert name not in metrics
        assert "only 0 of" in ev.not_measured[name] and "eval.max_new_tokens=2" in ev.not_measured[name]
    assert "response_nats_per_byte" in metrics and "raw_loss" in metrics


def test_rouge_absent_without_its_package(tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "rouge_score", None)  # import fails as when not installed
    ev = _evaluator(tmp_path, [])
    metrics, _ = ev.evaluate(_tiny_model())
    assert "rouge_l" not in metrics and "follow_rate" in metrics
    assert ev.not_measured["rouge_l"] == freeform.ROUGE_MISSING


def test_intervals_on_a_known_case():
    iv = freeform.mean_interval([1.0, 2.0, 3.0, 4.0])
    sd = math.sqrt(((1.5 ** 2) * 2 + (0.5 ** 2) * 2) / 3)
    half = 1.959963984540054 * sd / 2.0
    assert iv["n"] == 4 and iv["mean"] == pytest.approx(2.5)
    assert iv["ci95"] == pytest.approx([2.5 - half, 2.5 + half])
    paired = freeform.paired_interval([1.0, 2.0, None, 3.0], [2.0, 4.0, 9.0, 6.0])
    assert paired["n"] == 3 and paired["mean"] == pytest.approx(2.0)
    assert paired["ci95"] == pytest.approx([2.0 - 1.959963984540054 / math.sqrt(3), 2.0 + 1.959963984540054 / math.sqrt(3)])
    assert freeform.excludes_zero(paired) is True
    assert freeform.excludes_zero(freeform.mean_interval([-1.0, 1.0])) is False
    assert "ci95" not in freeform.mean_interval([5.0]) and freeform.mean_interval([]) is None
    scaled = freeform.paired_interval([2.0, 2.0], [2.2, 2.4], scale=50.0)
    assert scaled["mean"] == pytest.approx(15.0)


def test_fit_of_one_conversation_token_by_token():
    tmpl = get_template("chatml")
    conv = Conversation([Turn("user", "hi"), Turn("assistant", "hello there")])
    from sft_sweep.data import render, render_prompt

    n_all, n_prompt = len(render(conv, tmpl)[0]), len(render_prompt(conv, tmpl))
    answer = len("hello there".encode()) + 1  # and the end marker
    # the reference fits exactly when the room after the prompt holds it
    assert dataset_fit([conv], tmpl, "assistant", n_prompt + answer, answer)["answer_too_long"] == 0
    assert dataset_fit([conv], tmpl, "assistant", n_prompt + answer - 1, answer)["answer_too_long"] == 1
    assert dataset_fit([conv], tmpl, "assistant", n_prompt + answer, answer - 1)["answer_too_long"] == 1
    # the block holds n_all - 1 positions; one fewer cuts it; a block ending at the prompt trains nothing
    assert dataset_fit([conv], tmpl, "assistant", n_all - 1, 64)["truncated"] == 0
    assert dataset_fit([conv], tmpl, "assistant", n_all - 2, 64)["truncated"] == 1
    d = dataset_fit([conv], tmpl, "assistant", n_prompt - 1, 64)
    assert d["no_trained_token"] == 1 and d["truncated"] == 0
    assert fit_lines(None) == []


def test_path_values_give_one_level_names():
    name = "data.datasets.main.path=../shared/data/alpaca_en_demo.json,optim.lr=0.001"
    short = short_dirname(name)
    assert "/" not in short and short.startswith("data.datasets.main.path=alpaca_en_demo.json~")
    assert short.endswith(",optim.lr=0.001")
    other = short_dirname("data.datasets.main.path=../other/alpaca_en_demo.json,optim.lr=0.001")
    assert other != short and "/" not in other
    assert short_dirname("optim.lr=0.001,mix.replay_ratio=0.5") == "optim.lr=0.001,mix.replay_ratio=0.5"


@pytest.mark.slow
def test_a_path_override_job_is_found_by_chat_eval_and_report(tmp_path, cache_dir):
    (tmp_path / "sub" / "dir").mkdir(parents=True)
    data = _alpaca_file(tmp_path / "sub" / "dir" / "mine.json")
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    args = [*SMOKE, f"pretrain.cache_dir={cache_dir}", *FILES, f"data.datasets.main.path={data}",
            "hydra.sweep.dir=sweep", "optim.lr=3e-3", "eval.n_samples=2"]
    r = subprocess.run([sys.executable, "-m", "sft_sweep.cli", "-m", *args], cwd=tmp_path, capture_output=True,
                       text=True, env=env, timeout=900)
    assert r.returncode == 0, r.stderr[-2000:]
    sweep = tmp_path / "sweep"
    jobs = [p for p in sweep.iterdir() if (p / "summary.json").exists()]
    assert len(jobs) == 1 and "mine.json~" in jobs[0].name
    chat = subprocess.run([sys.executable, "-m", "sft_sweep.chat", str(sweep), "lr=0.003", "--prompt", "hi",
                           "--json", "--max-new-tokens", "4"], cwd=tmp_path, capture_output=True, text=True,
                          env=env, timeout=300)
    assert chat.returncode == 0, chat.stderr
    assert json.loads(chat.stdout)["job"] == str(jobs[0])
    ev = subprocess.run([sys.executable, "-m", "sft_sweep.eval_cli", str(jobs[0])], cwd=tmp_path,
                        capture_output=True, text=True, env=env, timeout=300)
    assert ev.returncode == 0, ev.stderr
    from analysis.collect import collect_runs

    runs = collect_runs(str(sweep))
    assert len(runs.jobs) == 1
    assert (sweep / "report.md").exists()
