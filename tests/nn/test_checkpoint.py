"""Checkpoints: exact round trip, atomic write, no pickle, refusal of another config."""

import json
import os

import numpy as np
import pytest

from nn_helpers import random_batch, small_config
from sft_sweep.errors import CheckpointError
from sft_sweep.nn import GPT, AdamW, load_checkpoint, read_checkpoint_config, save_checkpoint


def trained(seed=0):
    model = GPT(small_config(), seed=seed)
    opt = AdamW(model.params, weight_decay=0.1)
    rng = np.random.default_rng(0)
    for _ in range(2):
        ids, targets, mask = random_batch(rng, 2, 8, 260)
        _, g = model.loss_and_grads(ids, targets, mask)
        opt.step(g, 1e-3)
    return model, opt


def test_roundtrip_resumes_identically(tmp_path):
    model, opt = trained()
    rng = np.random.default_rng(42)
    rng.random(3)
    path = tmp_path / "ck.npz"
    save_checkpoint(path, model, opt, step=7, rng_state=rng.bit_generator.state,
                    extra={"epoch": 1, "note": "x"})
    assert [p.name for p in tmp_path.iterdir()] == ["ck.npz"]       # no temp file left

    model2 = GPT(small_config(), seed=99)
    opt2 = AdamW(model2.params, weight_decay=0.1)
    info = load_checkpoint(path, model2, opt2)
    assert info["step"] == 7 and info["extra"] == {"epoch": 1, "note": "x"}
    assert np.array_equal(model2.flat_params, model.flat_params)
    assert opt2.t == opt.t and np.array_equal(opt2.m, opt.m) and np.array_equal(opt2.v, opt.v)
    rng2 = np.random.default_rng()
    rng2.bit_generator.state = info["rng_state"]
    assert rng2.random() == rng.random()
    # continuing from the checkpoint equals continuing the original
    g = {n: np.ones_like(p) for n, p in model.params.items()}
    opt.step(g, 1e-3)
    opt2.step(g, 1e-3)
    assert np.array_equal(model.flat_params, model2.flat_params)
    assert read_checkpoint_config(path) == model.config


def test_npz_loads_without_pickle(tmp_path):
    model, _ = trained()
    path = tmp_path / "ck.npz"
    save_checkpoint(path, model)
    with np.load(path, allow_pickle=False) as z:
        meta = json.loads(str(z["meta"]))
        assert meta["config"]["n_embd"] == 32
        assert not any(z[k].dtype == object for k in z.files)


def test_other_config_is_refused_naming_the_difference(tmp_path):
    model, _ = trained()
    path = tmp_path / "ck.npz"
    save_checkpoint(path, model)
    other = GPT(small_config(n_layer=3), seed=0)
    before = other.flat_params.copy()
    with pytest.raises(CheckpointError, match="n_layer: checkpoint 2 vs model 3"):
        load_checkpoint(path, other)
    assert np.array_equal(other.flat_params, before)
    with pytest.raises(CheckpointError, match="dtype"):
        load_checkpoint(path, GPT(small_config(dtype="float64")))


def test_missing_optimizer_state_and_corrupt_files(tmp_path):
    model, opt = trained()
    path = tmp_path / "ck.npz"
    save_checkpoint(path, model)
    with pytest.raises(CheckpointError, match="optimizer"):
        load_checkpoint(path, model, opt)
    with pytest.raises(CheckpointError, match="does not exist"):
        load_checkpoint(tmp_path / "nope.npz", model)
    bad = tmp_path / "bad.npz"
    bad.write_bytes(b"not a zip file at all")
    with pytest.raises(CheckpointError, match="corrupt"):
        load_checkpoint(bad, model)
    truncated = tmp_path / "trunc.npz"
    truncated.write_bytes(path.read_bytes()[:200])
    with pytest.raises(CheckpointError):
        load_checkpoint(truncated, model)
    plain = tmp_path / "plain.npz"
    np.savez(plain, a=np.zeros(3))
    with pytest.raises(CheckpointError, match="metadata"):
        load_checkpoint(plain, model)


def test_failed_write_keeps_the_old_checkpoint(tmp_path):
    model, _ = trained()
    path = tmp_path / "ck.npz"
    save_checkpoint(path, model, step=1)
    with pytest.raises(CheckpointError):
        save_checkpoint(path, model, step=2, extra={"bad": object()})
    assert load_checkpoint(path, model)["step"] == 1
    assert sorted(os.listdir(tmp_path)) == ["ck.npz"]
