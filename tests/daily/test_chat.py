"""sft-sweep-chat: finding a job's models (also in a copied sweep), the conversation, the CLI."""

import json
import shutil

import numpy as np
import pytest
import yaml

from sft_sweep.chat import ChatSession, Sampling, cut_at_new_turn, main, side_by_side
from sft_sweep.data import render
from sft_sweep.data.conversation import Conversation, Turn
from sft_sweep.data.templates import get_template, render_prompt
from sft_sweep.jobmodels import ModelNotFound, resolve
from sft_sweep.nn import GPT, GPTConfig, save_checkpoint
from sft_sweep.tokenizer import ByteTokenizer

TOK = ByteTokenizer()


def tiny(seed):
    return GPT(GPTConfig(n_layer=1, n_head=2, n_embd=16, n_mlp=32, block_size=64, vocab_size=TOK.vocab_size),
               seed=seed)


@pytest.fixture
def sweep(tmp_path):
    """runs/sweeps/s/<job>/ with model.npz, summary.json, .hydra/, and runs/cache/base-KEY/model.npz."""
    root = tmp_path / "proj"
    job = root / "runs" / "sweeps" / "s" / "optim.lr=0.003,train.epochs=2"
    (job / ".hydra").mkdir(parents=True)
    base_dir = root / "runs" / "cache" / "base-abc123"
    base_dir.mkdir(parents=True)
    save_checkpoint(base_dir / "model.npz", tiny(1))
    save_checkpoint(job / "model.npz", tiny(2))
    (job / "summary.json").write_text(json.dumps({"status": "completed", "base_model": {"key": "abc123"}}))
    (job / ".hydra" / "config.yaml").write_text(yaml.safe_dump(
        {"template": {"name": "alpaca"}, "pretrain": {"cache_dir": "runs/cache"}}))
    (job / ".hydra" / "hydra.yaml").write_text(yaml.safe_dump({"hydra": {"runtime": {"cwd": str(root)}}}))
    other = root / "runs" / "sweeps" / "s" / "optim.lr=0.0003,train.epochs=2"
    shutil.copytree(job, other)
    return root


def test_job_is_found_by_dir_by_name_parts_and_by_file(sweep):
    sdir = sweep / "runs" / "sweeps" / "s"
    a = resolve(str(sdir / "optim.lr=0.003,train.epochs=2"))
    b = resolve(str(sdir), "lr=0.003")
    assert a.job_dir == b.job_dir and a.tuned.name == "model.npz"
    assert a.base == sweep / "runs" / "cache" / "base-abc123" / "model.npz"
    assert a.template == "alpaca"
    assert resolve(str(a.tuned)).job_dir == a.job_dir
    with pytest.raises(ModelNotFound, match="matches several jobs"):
        resolve(str(sdir), "epochs=2")
    with pytest.raises(ModelNotFound, match="matches no job"):
        resolve(str(sdir), "lr=1")


def test_copied_sweep_finds_its_base_near_it(sweep, tmp_path, monkeypatch):
    copy = tmp_path / "elsewhere" / "proj"
    shutil.copytree(sweep, copy)
    shutil.rmtree(sweep)  # the recorded launch directory is gone, as on another machine
    monkeypatch.chdir(tmp_path)
    found = resolve(str(copy / "runs" / "sweeps" / "s"), "lr=0.003")
    assert found.base == copy / "runs" / "cache" / "base-abc123" / "model.npz"
    shutil.rmtree(copy / "runs" / "cache")
    found = resolve(str(copy / "runs" / "sweeps" / "s"), "lr=0.003")
    assert found.base is None and "base-abc123 not found" in found.notes[0]


def test_history_and_system_prompt_reach_the_model():
    tmpl = get_template("chatml")
    session = ChatSession({"m": tiny(3)}, tmpl, system="Be brief.", sampling=Sampling(max_new_tokens=4))
    session.ask("Hi")
    ids = session._prompt_ids("m", "Again", 128)
    hist = session.histories["m"]
    expected = render_prompt(Conversation([Turn("system", "Be brief."), *hist, Turn("user", "Again")]), tmpl)
    assert ids == expected
    assert TOK.decode(ids).count("Hi") == 1 and "Be brief." in TOK.decode(ids)


def test_oldest_exchanges_are_dropped_when_the_context_is_full():
    session = ChatSession({"m": tiny(3)}, get_template("plain"), sampling=Sampling(max_new_tokens=4))
    session.histories["m"] = [Turn("user", "x" * 30), Turn("assistant", "y" * 30)]
    ids = session._prompt_ids("m", "short", 64)
    assert "x" not in TOK.decode(ids) and "short" in TOK.decode(ids)


def test_reply_stops_at_the_end_of_the_assistant_turn():
    tmpl = get_template("chatml")
    reply = TOK.encode("Paris") + [TOK.im_end_id] + TOK.encode("junk")
    assert cut_at_new_turn(reply, tmpl) == TOK.encode("Paris")
    alp = get_template("alpaca")
    assert TOK.decode(cut_at_new_turn(TOK.encode("Rome### Instruction: more"), alp)) == "Rome"


def test_sampling_is_reproducible_with_a_seed_and_greedy_is_deterministic():
    tmpl = get_template("chatml")
    runs = [ChatSession({"m": tiny(4)}, tmpl, sampling=Sampling(temperature=1.0, top_k=20, top_p=0.9, seed=7,
                                                               max_new_tokens=12)).ask("hello")
            for _ in range(2)]
    assert runs[0] == runs[1]
    g = [ChatSession({"m": tiny(4)}, tmpl, sampling=Sampling(max_new_tokens=12)).ask("hello") for _ in range(2)]
    assert g[0] == g[1]


def test_side_by_side_puts_models_in_columns():
    out = side_by_side({"base": "a " * 40, "tuned": "b"}, 80).splitlines()
    assert out[0].startswith("base:") and "| tuned:" in out[0]
    assert all(len(line) <= 80 for line in out)


def test_one_shot_json_names_both_models(sweep, capsys):
    job = sweep / "runs" / "sweeps" / "s" / "optim.lr=0.003,train.epochs=2"
    main([str(job), "--prompt", "What is the capital of Varnia?", "--prompt", "Why?", "--json",
          "--max-new-tokens", "5"])
    out = json.loads(capsys.readouterr().out)
    assert out["template"] == "alpaca" and set(out["models"]) == {"base", "tuned"}
    assert [t["prompt"] for t in out["turns"]] == ["What is the capital of Varnia?", "Why?"]
    assert all(isinstance(t["base"], str) and isinstance(t["tuned"], str) for t in out["turns"])


@pytest.mark.parametrize("make", ["missing", "text", "npz"])
def test_wrong_path_or_non_checkpoint_is_one_line(tmp_path, capsys, make):
    path = tmp_path / "thing.npz"
    if make == "text":
        path.write_text("hello")
    elif make == "npz":
        np.savez(path, a=np.zeros(3))
    with pytest.raises(SystemExit) as e:
        main([str(path), "--prompt", "hi"])
    assert e.value.code == 2
    err = capsys.readouterr().err
    assert err.startswith("sft-sweep-chat: ") and err.count("\n") == 1 and str(path) in err
