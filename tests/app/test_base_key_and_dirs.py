"""The base cache is keyed on what pre-training reads; sweep directory names fit the file system;
the base-knowledge metric reaches the job files."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import numpy as np
import pytest
from hydra import compose, initialize_config_dir

from sft_sweep.config import register_configs, to_object
from sft_sweep.data import FactCompletion
from sft_sweep.dirnames import MAX_NAME_BYTES, short_dirname
from sft_sweep.data.prepare import pretrain_source
from sft_sweep.train.evaluate import Evaluator
from sft_sweep.train.pretrain import base_key
from tests.conftest import CONF_DIR, REPO

register_configs()


def _cfg(overrides=(), hydra=False):
    with initialize_config_dir(config_dir=str(CONF_DIR), version_base=None):
        return compose("config", overrides=list(overrides), return_hydra_config=hydra)


def _key(overrides):
    cfg = to_object(_cfg(overrides))
    return base_key(cfg, pretrain_source(cfg, str(REPO)))


SFT_ONLY = ["data.world.n_train=300", "data.world.n_val=20", "data.world.system_fraction=0.3",
            "data.world.multi_turn_fraction=0.1", "data.world.probe_phrasings=1",
            "data.world.n_distractors=5", "data.world.task_weights.context=0.3",
            "data.world.n_heldout_docs=30", "optim.lr=1e-2", "mix.replay_ratio=0.5", "train.epochs=3",
            "template=alpaca", "train.seed=5", "eval.max_items=10"]


def test_cache_key_ignores_sft_only_settings():
    base = _key([])
    for o in SFT_ONLY:
        assert _key([o]) == base, o


@pytest.mark.parametrize("o", ["data.world.n_countries=30", "data.world.seed=1",
                               "data.world.qa_sets_per_country=1", "data.world.one_word_answers=true",
                               "pretrain.steps=10", "pretrain.lr=1e-3", "model.n_layer=2"])
def test_cache_key_follows_pretraining_settings(o):
    assert _key([o]) != _key([])


def test_short_dirname():
    assert short_dirname("optim.lr=0.001") == "optim.lr=0.001"
    long = ",".join(f"data.world.setting_{i}=value_{i}" for i in range(20))
    short = short_dirname(long)
    assert len(short.encode()) <= MAX_NAME_BYTES and short == short_dirname(long)
    assert short.split("~")[0] == long[: len(short.split("~")[0])] and short.split("~")[0].endswith(tuple("0123456789"))
    assert short_dirname(long + "x") != short
    multibyte = "é" * 300
    assert len(short_dirname(multibyte).encode()) <= MAX_NAME_BYTES


LONG = ["data.world.n_train=300", "data.world.n_val=20", "data.world.n_eval=20",
        "data.world.system_fraction=0.3", "data.world.multi_turn_fraction=0.1",
        "data.world.probe_phrasings=1", "data.world.n_distractors=5",
        "data.world.task_weights.context=0.3", "data.world.holdout_fraction=0.2",
        "data.world.n_heldout_docs=20", "data.world.n_context_names=100"]


def test_sweep_subdir_is_shortened():
    cfg = _cfg(["experiment=smoke", *LONG], hydra=True)
    full = cfg.hydra.job.override_dirname
    assert len(full.encode()) > 255
    subdir = cfg.hydra.sweep.subdir
    assert len(subdir.encode()) <= MAX_NAME_BYTES and subdir == short_dirname(full)


@pytest.mark.slow  # a multirun in a subprocess (~5 s)
def test_long_sweep_directory_name_runs(tmp_path):
    """A sweep whose override set names a directory over 255 bytes completes, with the full
    overrides kept in .hydra/, and its files carry the base-knowledge metric."""
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    # the joblib launcher: job directories are named in its worker processes
    cmd = [sys.executable, "-m", "sft_sweep.cli", "-m", "experiment=smoke", "train.threads=1",
           "hydra/launcher=local_parallel", "hydra.launcher.n_jobs=1",
           "pretrain.steps=5", "train.max_steps=2", "train.eval_interval=2", "~hydra.callbacks.report",
           f"pretrain.cache_dir={tmp_path / 'cache'}", f"hydra.sweep.dir={tmp_path / 'sweep'}",
           "optim.lr=1e-3", *LONG]
    r = subprocess.run(cmd, cwd=REPO, env=env, capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, r.stderr[-2000:]
    jobs = [p for p in (tmp_path / "sweep").iterdir() if p.is_dir()]
    assert len(jobs) == 1 and len(jobs[0].name.encode()) <= MAX_NAME_BYTES
    s = json.loads((jobs[0] / "summary.json").read_text())
    assert s["status"] == "completed", s.get("error")
    kept = (jobs[0] / ".hydra" / "overrides.yaml").read_text()
    assert all(o in kept for o in LONG)
    for part in ("base", "final"):
        assert 0.0 <= s[part]["base_knowledge_sft"] <= 1.0 and 0.0 <= s[part]["base_knowledge_probe"] <= 1.0
    assert s["data"]["mix"]["per_epoch"][0]["epoch"] == 0


class _Template:
    stop_ids = (1,)
    new_turn_markers = ()


def test_base_knowledge_counts_by_group(monkeypatch):
    facts = [FactCompletion("The capital of Aaaa is", "Bbbbb", "sft", "capital", "Aaaa"),
             FactCompletion("The capital of Cccc is", "Ddddd", "sft", "capital", "Cccc"),
             FactCompletion("People in Eeee speak", "Fffish", "probe", "language", "Eeee")]
    ev = Evaluator(template=_Template(), val_examples=[], heldout_tokens=np.zeros(0, dtype=np.int32),
                   eval_items=[], probe_items=[], follow_prompts=[], block_size=64, max_items=10,
                   max_new_tokens=8, raw_windows=1, batch_size=4, fact_completions=facts)
    # right, right-but-longer-word, right
    monkeypatch.setattr(ev, "complete", lambda model, prompts, n: [" Bbbbb.", " Dddddx", " Fffish, and"])
    assert ev.base_knowledge(None) == {"base_knowledge_sft": 0.5, "base_knowledge_probe": 1.0}
    assert Evaluator.completes(" Bbbbb", "Bbbbb") and not Evaluator.completes(" Bbb", "Bbbbb")


@pytest.mark.parametrize("style, text, ok", [
    ("word", "Vaizem", True), ("word", "Vaizem.", True), ("word", "The capital is Vaizem.", False),
    ("caps", "THE CAPITAL OF X IS Y.", True), ("caps", "The capital", False), ("caps", "12", False),
    ("full", "The capital of X is Y.", True), ("full", "Vaizem", False), ("word", "  ", False)])
def test_obeys_format(style, text, ok):
    from sft_sweep.train.evaluate import obeys_format

    assert obeys_format(style, text) is ok


def test_a_list_of_paths_is_named_by_all_its_file_names():
    name = short_dirname("data.pretrain_text=[/d/c4_demo.jsonl,/other/wiki_demo.txt],optim.lr=1e-3")
    assert name.startswith("data.pretrain_text=c4_demo.jsonl+wiki_demo.txt~") and name.endswith(",optim.lr=1e-3")
    assert "/" not in name and "]" not in name
    # the digest covers the whole value: the same names in other folders stay apart
    assert short_dirname("data.pretrain_text=[/e/c4_demo.jsonl,/other/wiki_demo.txt]") != name.split(",")[0]
