"""The optimized forward (chunks, folded LayerNorms, query blocks, unshifted softmax)
against the plain transcription of the architecture in ``sft_sweep.nn.reference``."""

import numpy as np
import pytest

from nn_helpers import small_config, tiny_config
from sft_sweep.nn import GPT, reference


def reference_logits(model, ids, segment_ids=None, positions=None):
    return reference.logits(model.params, model.config, ids, segment_ids, positions)


@pytest.mark.parametrize("B,T", [(1, 1), (3, 5), (5, 100), (9, 70)])
def test_logits_match_reference_float64(B, T):
    """Odd shapes: several chunks, a partial last chunk, partial query blocks."""
    model = GPT(small_config(dtype="float64", block_size=128, init_std=0.1), seed=B)
    rng = np.random.default_rng(T)
    ids = rng.integers(0, 260, (B, T))
    np.testing.assert_allclose(model.logits(ids), reference_logits(model, ids), rtol=1e-10,
                               atol=1e-10)


def test_logits_match_reference_with_segments_and_threads():
    model = GPT(small_config(dtype="float64", block_size=128, init_std=0.1), seed=0, threads=2)
    rng = np.random.default_rng(1)
    ids = rng.integers(0, 260, (5, 90))
    seg = np.cumsum(rng.random((5, 90)) < 0.08, axis=1)
    np.testing.assert_allclose(model.logits(ids, segment_ids=seg),
                               reference_logits(model, ids, seg), rtol=1e-10, atol=1e-10)
    model.close()


def test_float32_close_to_float64_reference():
    model = GPT(small_config(block_size=128), seed=3)
    ids = np.random.default_rng(3).integers(0, 260, (4, 128))
    np.testing.assert_allclose(model.logits(ids), reference_logits(model, ids), rtol=2e-4,
                               atol=2e-4)


def test_large_attention_scores_take_the_shifted_softmax_path():
    """Scores far beyond exp's float32 range (> 60 and rows that would underflow) must
    still give the exact softmax, and exact gradients."""
    model = GPT(small_config(dtype="float64", block_size=128, init_std=0.1), seed=4)
    for i in range(model.config.n_layer):
        model.params[f"h.{i}.attn.qkv.w"][:, :2 * model.config.n_embd] *= 60.0
    ids = np.random.default_rng(4).integers(0, 260, (2, 80))
    np.testing.assert_allclose(model.logits(ids), reference_logits(model, ids), rtol=1e-9,
                               atol=1e-9)
    m32 = GPT(small_config(block_size=128, init_std=0.1), seed=4)
    m32.flat_params[...] = model.flat_params
    assert np.all(np.isfinite(m32.logits(ids)))
    np.testing.assert_allclose(m32.logits(ids), reference_logits(model, ids), rtol=2e-3,
                               atol=2e-3)


def test_gradcheck_in_the_large_score_regime():
    model = GPT(tiny_config(init_std=3.0), seed=5)
    rng = np.random.default_rng(5)
    ids = rng.integers(0, 11, (2, 8))
    targets = rng.integers(0, 11, (2, 8))
    mask = np.ones((2, 8))
    loss, grads = model.loss_and_grads(ids, targets, mask)
    name = "h.0.attn.qkv.w"
    flat = model.params[name].reshape(-1)
    for j in rng.choice(flat.size, 10, replace=False):
        old = flat[j]
        flat[j] = old + 1e-6
        lp = model.loss_and_grads(ids, targets, mask)[0]
        flat[j] = old - 1e-6
        lm = model.loss_and_grads(ids, targets, mask)[0]
        flat[j] = old
        num = (lp - lm) / 2e-6
        assert num == pytest.approx(grads[name].reshape(-1)[j], rel=1e-5, abs=1e-8)


def test_changing_shapes_between_calls_reuses_nothing_stale():
    model = GPT(small_config(block_size=128), seed=6)
    fresh = GPT(small_config(block_size=128), seed=6)
    rng = np.random.default_rng(6)
    shapes = [(4, 128), (3, 17), (4, 128), (1, 64), (2, 33), (3, 17)]
    for B, T in shapes:
        ids = rng.integers(0, 260, (B, T))
        mask = np.ones((B, T))
        a = model.loss_and_grads(ids, ids, mask)
        b = GPT(small_config(block_size=128), seed=6).loss_and_grads(ids, ids, mask)
        assert a[0] == b[0]
        assert np.array_equal(a[1]["wte"], b[1]["wte"])
        assert np.array_equal(model.logits(ids), fresh.logits(ids))


@pytest.mark.parametrize("scale,shift", [(1.0, 0.0), (1.0, -15.0), (1.0, 200.0), (1.0, -150.0),
                                         (40.0, 0.0)])
def test_softmax_rows_all_regimes(scale, shift):
    """Unshifted path (0, -15), overflow fallback (+200), underflow fallback (-150), wide."""
    from sft_sweep.nn.layers import Workspace, softmax_rows
    rng = np.random.default_rng(0)
    for dt in (np.float32, np.float64):
        q = (rng.standard_normal((2, 3, 5, 4)) * scale).astype(dt)
        kt = rng.standard_normal((2, 3, 4, 7)).astype(dt)
        S = (q.astype(np.float64) @ kt) + shift
        allowed = np.tril(np.ones((5, 7), bool), k=2)
        E = np.empty((2, 3, 5, 7), dt)
        irs = np.empty((2, 3, 5), dt)

        def add_bias(X):
            X += np.where(allowed, shift, -np.inf).astype(dt)

        softmax_rows(q, kt, E, irs, Workspace(dt).ones(7), add_bias)
        ref = np.where(allowed, S, -np.inf)
        ref = np.exp(ref - ref.max(-1, keepdims=True))
        ref /= ref.sum(-1, keepdims=True)
        got = E * irs[..., None]
        assert np.all(np.isfinite(got))
        tol = 1e-5 if dt == np.float32 else 1e-12
        np.testing.assert_allclose(got, ref, rtol=tol, atol=tol)


def test_token_nll_and_positions_match_reference():
    model = GPT(small_config(dtype="float64", block_size=128, init_std=0.1), seed=7)
    rng = np.random.default_rng(7)
    ids, targets = rng.integers(0, 260, (3, 40)), rng.integers(0, 260, (3, 40))
    seg = np.repeat(np.arange(4), 10)[None].repeat(3, 0)
    pos = np.tile(np.arange(10), 4)[None].repeat(3, 0)
    want = reference.token_nll(model.params, model.config, ids, targets, seg, pos)
    got = model.token_nll(ids, targets, segment_ids=seg, positions=pos)
    np.testing.assert_allclose(got, want, rtol=1e-10, atol=1e-10)
