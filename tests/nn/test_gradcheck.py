"""Finite differences in float64 prove every backward pass, for every parameter tensor."""

import numpy as np
import pytest

from sft_sweep.nn import GPT

from nn_helpers import assert_same_across_threads, numeric_grad, tiny_config

TOL = 1e-6


def check_all(model, ids, targets, mask, segment_ids=None, max_entries=None):
    loss, grads = model.loss_and_grads(ids, targets, mask, segment_ids=segment_ids)
    # The finite differences use the forward-only path (token_nll), which also checks
    # that it agrees with the training forward.
    safe_targets = np.where(mask != 0, targets, 0)

    def fn():
        nll = model.token_nll(ids, safe_targets, segment_ids=segment_ids)
        return float((nll * mask).sum() / mask.sum())

    assert fn() == pytest.approx(loss, rel=1e-13)
    rng = np.random.default_rng(0)
    checked = []
    for name in model.params:
        idx, num = numeric_grad(model, fn, name, rng, max_entries)
        ana = grads[name].reshape(-1)[idx]
        denom = max(np.linalg.norm(num), np.linalg.norm(ana))
        assert denom > 0, f"{name}: zero gradient, the check would prove nothing"
        rel = np.linalg.norm(num - ana) / denom
        assert rel <= TOL, f"{name}: relative error {rel:.3e}"
        checked.append(name)
    assert checked == list(model.params)


def test_gradcheck_with_mask():
    model = GPT(tiny_config(), seed=0)
    rng = np.random.default_rng(1)
    ids = rng.integers(0, 11, (3, 8))
    targets = rng.integers(0, 11, (3, 8))
    mask = (rng.random((3, 8)) < 0.6).astype(float)
    mask[:, -1] = 1
    check_all(model, ids, targets, mask)


def test_gradcheck_with_segment_ids():
    model = GPT(tiny_config(), seed=2)
    rng = np.random.default_rng(3)
    ids = rng.integers(0, 11, (2, 8))
    targets = rng.integers(0, 11, (2, 8))
    mask = np.ones((2, 8))
    seg = np.array([[0, 0, 0, 1, 1, 2, 2, 2], [5, 5, 5, 5, 5, 7, 7, 9]])
    check_all(model, ids, targets, mask, segment_ids=seg)


def test_gradcheck_with_padding():
    """Right padding (pad id, mask 0, own segment) plus T < block_size (wpe rows unused)."""
    model = GPT(tiny_config(), seed=4)
    pad = 10
    ids = np.array([[1, 2, 3, 4, 5, 6], [7, 8, 9, pad, pad, pad], [3, 1, pad, pad, pad, pad]])
    targets = np.roll(ids, -1, axis=1)
    mask = (ids != pad).astype(float)
    mask[:, -1] = 0
    mask[0, -1] = 1
    targets[mask == 0] = -100          # ignored positions may hold any integer
    seg = (ids == pad).astype(int)
    check_all(model, ids, targets, mask, segment_ids=seg)
    _, grads = model.loss_and_grads(ids, targets, mask, segment_ids=seg)
    assert np.all(grads["wpe"][6:] == 0)


def test_gradcheck_deeper_wider_sampled():
    """A 3-layer model with more heads and weighted (non 0/1) mask, sampled entries."""
    cfg = tiny_config(n_layer=3, n_head=4, n_embd=16, n_mlp=24, vocab_size=13)
    model = GPT(cfg, seed=5)
    rng = np.random.default_rng(6)
    ids = rng.integers(0, 13, (2, 8))
    targets = rng.integers(0, 13, (2, 8))
    mask = rng.random((2, 8))
    check_all(model, ids, targets, mask, max_entries=12)


@pytest.mark.parametrize("threads", [2, 3])
def test_gradients_do_not_depend_on_threads(threads):
    rng = np.random.default_rng(7)
    ids = rng.integers(0, 11, (5, 8))
    targets = rng.integers(0, 11, (5, 8))
    mask = (rng.random((5, 8)) < 0.5).astype(float)
    mask[:, 0] = 1
    assert_same_across_threads(threads, ids, targets, mask)
