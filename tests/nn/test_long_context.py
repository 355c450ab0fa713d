"""Exact gradients whatever the context length: a batch's gradient is the token-weighted sum of
its sequences' gradients, also when a step's buffers pass the workspace's size limit."""

import numpy as np
import pytest

from sft_sweep.nn import GPT, GPTConfig
from sft_sweep.nn import layers as L

from nn_helpers import numeric_grad, random_batch, tiny_config


def assert_batch_is_weighted_sum(model, ids, targets, mask, rtol):
    loss, grads = model.loss_and_grads(ids, targets, mask)
    total = mask.sum()
    expect_loss = 0.0
    expect = {name: np.zeros(g.shape) for name, g in grads.items()}
    for b in range(ids.shape[0]):
        lb, gb = model.loss_and_grads(ids[b:b + 1], targets[b:b + 1], mask[b:b + 1])
        w = mask[b].sum() / total
        expect_loss += w * lb
        for name, g in gb.items():
            expect[name] += w * g.astype(np.float64)
    assert np.isfinite(loss)
    assert loss == pytest.approx(expect_loss, rel=rtol)
    for name, g in grads.items():
        assert np.all(np.isfinite(g)), f"{name}: non-finite gradient"
        err = np.linalg.norm(g - expect[name]) / max(np.linalg.norm(expect[name]), 1e-30)
        assert err <= rtol, f"{name}: batch gradient is {err:.3e} off the sum of its sequences'"


@pytest.fixture
def small_workspace(monkeypatch):
    """Workspaces limited to 64 KiB: a float64 step of two 64-token sequences needs more."""
    monkeypatch.setattr(L.Workspace.__init__, "__defaults__", (64 << 10,))


@pytest.mark.parametrize("threads", [1, 2])
def test_gradient_exact_past_the_workspace_limit(small_workspace, threads):
    model = GPT(tiny_config(block_size=64), seed=0, threads=threads, shard_processes=False)
    rng = np.random.default_rng(0)
    ids, targets, mask = random_batch(rng, 4, 64, 11)
    assert_batch_is_weighted_sum(model, ids, targets, mask, rtol=1e-10)


def test_finite_differences_past_the_workspace_limit(small_workspace):
    model = GPT(tiny_config(block_size=64), seed=0)
    rng = np.random.default_rng(1)
    ids, targets, mask = random_batch(rng, 2, 64, 11)
    loss, grads = model.loss_and_grads(ids, targets, mask)

    def fn():
        nll = model.token_nll(ids, targets)
        return float((nll * mask).sum() / mask.sum())

    assert fn() == pytest.approx(loss, rel=1e-12)
    for name in ("wte", "h.0.attn.qkv.w", "h.1.mlp.fc.w", "lnf.w"):
        idx, num = numeric_grad(model, fn, name, rng, max_entries=6)
        ana = grads[name].reshape(-1)[idx]
        rel = np.linalg.norm(num - ana) / max(np.linalg.norm(num), np.linalg.norm(ana))
        assert rel <= 1e-6, f"{name}: relative error {rel:.3e}"


def test_workspace_is_released_between_calls(small_workspace):
    ws = L.Workspace(np.float64)
    a = ws.get("a", (8192,))                        # the limit, 64 KiB
    b = ws.get("b", (16,))                          # past it within a call: both kept
    assert ws.get("a", (8192,)) is a and ws.get("b", (16,)) is b
    ws.release_if_over_limit()                      # between calls: the last call used both
    assert ws.get("a", (8192,)) is a and ws.get("b", (16,)) is b
    ws.release_if_over_limit()
    c = ws.get("c", (16,))                          # a call that uses c alone
    ws.release_if_over_limit()                      # drops what it did not use
    assert ws.nbytes == c.nbytes and ws.get("c", (16,)) is c and ws.get("a", (8192,)) is not a


# Today's shapes just past the lengths where 1 GiB of workspace used to run out (float32).
LONG_CONTEXTS = [
    ("tiny", dict(n_layer=2, n_head=2, n_embd=64, n_mlp=256), 7200),
    ("mini", dict(n_layer=4, n_head=4, n_embd=128, n_mlp=512), 3600),
    ("small", dict(n_layer=6, n_head=6, n_embd=192, n_mlp=768), 2600),
]


@pytest.mark.slow
@pytest.mark.parametrize("size,shape,T", LONG_CONTEXTS, ids=[c[0] for c in LONG_CONTEXTS])
def test_gradient_exact_at_long_context(size, shape, T):
    model = GPT(GPTConfig(block_size=T, vocab_size=260, **shape), seed=0)
    rng = np.random.default_rng(2)
    ids, targets, mask = random_batch(rng, 2, T, 260)
    assert_batch_is_weighted_sum(model, ids, targets, mask, rtol=2e-3)


@pytest.mark.slow
@pytest.mark.parametrize("size,shape,T", LONG_CONTEXTS, ids=[c[0] for c in LONG_CONTEXTS])
def test_finite_differences_at_long_context(size, shape, T):
    """In float64 at each size's long context, the gradient's derivative along random directions
    of all parameters at once equals central differences of the loss (two forwards each)."""
    model = GPT(GPTConfig(block_size=T, vocab_size=260, dtype="float64", **shape), seed=0)
    rng = np.random.default_rng(3)
    ids, targets, mask = random_batch(rng, 2, T, 260)
    loss, grads = model.loss_and_grads(ids, targets, mask)
    flat_grad = np.concatenate([grads[name].reshape(-1) for name in model.params])
    flat = np.concatenate([model.params[name].reshape(-1) for name in model.params])

    def loss_at(theta):
        off = 0
        for name, p in model.params.items():
            p[...] = theta[off:off + p.size].reshape(p.shape)
            off += p.size
        nll = model.token_nll(ids, targets)
        return float((nll * mask).sum() / mask.sum())

    assert loss_at(flat) == pytest.approx(loss, rel=1e-12)
    eps = 1e-5
    for _ in range(2):
        v = rng.standard_normal(flat.size)
        v /= np.linalg.norm(v)
        numeric = (loss_at(flat + eps * v) - loss_at(flat - eps * v)) / (2 * eps)
        analytic = float(flat_grad @ v)
        assert numeric == pytest.approx(analytic, rel=1e-5, abs=1e-9), (numeric, analytic)
    loss_at(flat)
