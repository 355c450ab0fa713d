"""Shared helpers of the nn tests (a unique module name: tests/ has no packages)."""

import numpy as np

from sft_sweep.nn import GPTConfig


def tiny_config(**kw) -> GPTConfig:
    """A float64 model small enough to finite-difference every parameter."""
    base = dict(n_layer=2, n_head=2, n_embd=8, n_mlp=16, block_size=8, vocab_size=11,
                dtype="float64", init_std=0.4)
    base.update(kw)
    return GPTConfig(**base)


def small_config(**kw) -> GPTConfig:
    base = dict(n_layer=2, n_head=4, n_embd=32, n_mlp=64, block_size=32, vocab_size=260)
    base.update(kw)
    return GPTConfig(**base)


def random_batch(rng, B, T, V, p_mask=0.7):
    ids = rng.integers(0, V, (B, T))
    targets = rng.integers(0, V, (B, T))
    mask = (rng.random((B, T)) < p_mask).astype(np.float64)
    mask[:, 0] = 1.0
    return ids, targets, mask


FD_STEP = 1e-5  # central-difference step for the float64 gradient checks


def numeric_grad(model, fn, name, rng=None, max_entries=None):
    """Central differences of ``fn()`` w.r.t. parameter ``name`` (all entries, or a random
    ``max_entries`` of them); returns (flat indices, numeric gradient)."""
    flat = model.params[name].reshape(-1)
    idx = np.arange(flat.size)
    if max_entries is not None and flat.size > max_entries:
        idx = rng.choice(flat.size, max_entries, replace=False)
    num = np.empty(idx.size)
    for j, i in enumerate(idx):
        old = flat[i]
        flat[i] = old + FD_STEP
        lp = fn()
        flat[i] = old - FD_STEP
        lm = fn()
        flat[i] = old
        num[j] = (lp - lm) / (2 * FD_STEP)
    return idx, num


def assert_same_across_threads(threads: int, ids, targets, mask, **batch) -> None:
    """Loss and gradients of a model computing on ``threads`` workers equal the one-thread model's."""
    import pytest

    from sft_sweep.nn import GPT

    a = GPT(tiny_config(), seed=0, threads=1)
    b = GPT(tiny_config(), seed=0, threads=threads)
    la, ga = a.loss_and_grads(ids, targets, mask, **batch)
    lb, gb = b.loss_and_grads(ids, targets, mask, **batch)
    assert la == pytest.approx(lb, rel=1e-12)
    for name in ga:
        np.testing.assert_allclose(ga[name], gb[name], rtol=1e-10, atol=1e-13, err_msg=name)
    b.close()
