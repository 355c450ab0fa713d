"""Per-token positions: packed documents restart their position embeddings at 0.

The key property: two examples packed into one row (segment ids + restarted positions)
give the same loss and gradients as the same two examples in separate padded rows.
"""

import numpy as np
import pytest

from nn_helpers import assert_same_across_threads, numeric_grad, small_config, tiny_config
from sft_sweep.data import Example, make_batches
from sft_sweep.nn import GPT
from sft_sweep.train.sft import accumulate

TOL = 1e-6


def finite_difference_check(model, ids, targets, mask, segment_ids, positions):
    """Every parameter tensor's gradient against central differences (float64)."""
    loss, grads = model.loss_and_grads(ids, targets, mask, segment_ids=segment_ids,
                                       positions=positions)
    safe_targets = np.where(mask != 0, targets, 0)

    def fn():
        nll = model.token_nll(ids, safe_targets, segment_ids=segment_ids, positions=positions)
        return float((nll * mask).sum() / mask.sum())

    # the forward-only path agrees with the training forward
    assert fn() == pytest.approx(loss, rel=1e-13)
    for name in model.params:
        _, num = numeric_grad(model, fn, name)
        ana = grads[name].reshape(-1)
        denom = max(np.linalg.norm(num), np.linalg.norm(ana))
        assert denom > 0, f"{name}: zero gradient, the check would prove nothing"
        rel = np.linalg.norm(num - ana) / denom
        assert rel <= TOL, f"{name}: relative error {rel:.3e}"
    return grads


def test_gradcheck_with_positions_and_segment_ids():
    model = GPT(tiny_config(), seed=11)
    rng = np.random.default_rng(12)
    ids = rng.integers(0, 11, (2, 8))
    targets = rng.integers(0, 11, (2, 8))
    mask = (rng.random((2, 8)) < 0.8).astype(float)
    mask[:, 0] = 1
    seg = np.array([[1, 1, 1, 2, 2, 3, 3, 3], [1, 1, 1, 1, 1, 2, 2, 0]])
    pos = np.array([[0, 1, 2, 0, 1, 0, 1, 2], [0, 1, 2, 3, 4, 0, 1, 0]])
    finite_difference_check(model, ids, targets, mask, seg, pos)


def test_gradcheck_positions_beyond_seq_len():
    """T < block_size with positions reaching block_size - 1: wpe rows >= T get gradient,
    rows never used get exactly zero."""
    model = GPT(tiny_config(), seed=13)
    rng = np.random.default_rng(14)
    ids = rng.integers(0, 11, (2, 5))
    targets = rng.integers(0, 11, (2, 5))
    mask = np.ones((2, 5))
    seg = np.array([[1, 1, 2, 2, 2], [1, 1, 1, 1, 1]])
    pos = np.array([[6, 7, 0, 1, 2], [3, 4, 5, 6, 7]])
    grads = finite_difference_check(model, ids, targets, mask, seg, pos)
    used = np.unique(pos)
    assert np.all(grads["wpe"][np.setdiff1d(np.arange(8), used)] == 0)
    assert np.all(np.abs(grads["wpe"][used]).sum(axis=1) > 0)


def _two_examples(rng, V):
    a_ids = rng.integers(0, V, 9)
    a_tg = rng.integers(0, V, 9)
    a_m = np.r_[np.zeros(4), np.ones(5)]          # prompt untrained, response trained
    b_ids = rng.integers(0, V, 6)
    b_tg = rng.integers(0, V, 6)
    b_m = np.r_[np.zeros(2), np.ones(4)]
    return (a_ids, a_tg, a_m), (b_ids, b_tg, b_m)


@pytest.mark.parametrize("threads", [1, 2])
def test_packed_with_positions_equals_separate_padded_rows(threads):
    cfg = small_config(dtype="float64", block_size=16)
    model = GPT(cfg, seed=21, threads=threads)
    rng = np.random.default_rng(22)
    (a_ids, a_tg, a_m), (b_ids, b_tg, b_m) = _two_examples(rng, cfg.vocab_size)
    pad = 7
    T = 16
    # packed: [a | b | pad], segments 1, 2, 0; positions restart per document
    p_ids = np.full((1, T), pad)
    p_tg = np.full((1, T), pad)
    p_m = np.zeros((1, T))
    p_seg = np.zeros((1, T), dtype=np.int32)
    p_pos = np.zeros((1, T), dtype=np.int32)
    p_ids[0, :9], p_ids[0, 9:15] = a_ids, b_ids
    p_tg[0, :9], p_tg[0, 9:15] = a_tg, b_tg
    p_m[0, :9], p_m[0, 9:15] = a_m, b_m
    p_seg[0, :9], p_seg[0, 9:15] = 1, 2
    p_pos[0, :9], p_pos[0, 9:15] = np.arange(9), np.arange(6)
    # separate: one example per row, right-padded to the longer one, mask 0 on padding
    s_ids = np.full((2, 9), pad)
    s_tg = np.full((2, 9), pad)
    s_m = np.zeros((2, 9))
    s_ids[0], s_ids[1, :6] = a_ids, b_ids
    s_tg[0], s_tg[1, :6] = a_tg, b_tg
    s_m[0], s_m[1, :6] = a_m, b_m
    n = p_m.sum()
    assert n == s_m.sum() == 9

    loss_p, g_p = model.loss_and_grads(p_ids, p_tg, p_m, segment_ids=p_seg, normalizer=n,
                                       positions=p_pos)
    loss_s, g_s = model.loss_and_grads(s_ids, s_tg, s_m, normalizer=n)
    assert loss_p == pytest.approx(loss_s, rel=1e-12)
    for name in g_s:
        np.testing.assert_allclose(g_p[name], g_s[name], rtol=1e-9, atol=1e-12,
                                   err_msg=name)

    # the forward-only paths agree token by token too
    nll_p = model.token_nll(p_ids, p_tg, segment_ids=p_seg, positions=p_pos)
    nll_s = model.token_nll(s_ids, s_tg)
    np.testing.assert_allclose(nll_p[0, :9], nll_s[0], rtol=1e-12)
    np.testing.assert_allclose(nll_p[0, 9:15], nll_s[1, :6], rtol=1e-12)
    lg_p = model.logits(p_ids, segment_ids=p_seg, positions=p_pos)
    lg_s = model.logits(s_ids)
    np.testing.assert_allclose(lg_p[0, 9:15], lg_s[1, :6], rtol=1e-12, atol=1e-12)

    # without restarted positions the second document is shifted: the test has teeth
    loss_abs, g_abs = model.loss_and_grads(p_ids, p_tg, p_m, segment_ids=p_seg, normalizer=n)
    assert abs(loss_abs - loss_s) > 1e-6
    assert not np.allclose(g_abs["wpe"], g_s["wpe"], rtol=1e-6, atol=1e-9)
    model.close()


def test_arange_positions_equal_default():
    model = GPT(small_config(dtype="float64"), seed=31)
    rng = np.random.default_rng(32)
    B, T = 3, 20
    ids = rng.integers(0, 260, (B, T))
    targets = rng.integers(0, 260, (B, T))
    mask = (rng.random((B, T)) < 0.6).astype(float)
    mask[:, 0] = 1
    pos = np.tile(np.arange(T, dtype=np.int32), (B, 1))
    loss0, g0 = model.loss_and_grads(ids, targets, mask)
    loss1, g1 = model.loss_and_grads(ids, targets, mask, positions=pos)
    assert loss1 == pytest.approx(loss0, rel=1e-13)
    for name in g0:
        np.testing.assert_allclose(g1[name], g0[name], rtol=1e-10, atol=1e-14, err_msg=name)
    np.testing.assert_array_equal(model.logits(ids, positions=pos), model.logits(ids))


@pytest.mark.parametrize("threads", [2, 3])
def test_positions_gradients_do_not_depend_on_threads(threads):
    rng = np.random.default_rng(41)
    ids = rng.integers(0, 11, (5, 8))
    targets = rng.integers(0, 11, (5, 8))
    mask = (rng.random((5, 8)) < 0.6).astype(float)
    mask[:, 0] = 1
    seg = np.array([[1] * 3 + [2] * 5] * 5)
    pos = np.array([[0, 1, 2, 0, 1, 2, 3, 4]] * 5)
    assert_same_across_threads(threads, ids, targets, mask, segment_ids=seg, positions=pos)


@pytest.mark.parametrize("bad, match", [
    (np.full((2, 6), 8), r"positions contains 8 outside .*0\.\.7"),
    (np.full((2, 6), -1), r"positions contains -1 outside"),
    (np.zeros((2, 5), dtype=int), r"positions shape \(2, 5\) does not match ids shape \(2, 6\)"),
    (np.zeros((12,), dtype=int), r"positions shape \(12,\) does not match"),
    (np.zeros((2, 6)), r"positions must be integers"),
    (np.zeros((2, 6), dtype=bool), r"positions must be integers"),
])
def test_bad_positions_raise(bad, match):
    model = GPT(tiny_config(), seed=0)
    rng = np.random.default_rng(0)
    ids = rng.integers(0, 11, (2, 6))
    targets = rng.integers(0, 11, (2, 6))
    mask = np.ones((2, 6))
    with pytest.raises(ValueError, match=match):
        model.loss_and_grads(ids, targets, mask, positions=bad)
    with pytest.raises(ValueError, match=match):
        model.logits(ids, positions=bad)
    with pytest.raises(ValueError, match=match):
        model.token_nll(ids, targets, positions=bad)


def test_accumulate_uses_packed_positions():
    """The SFT loop hands a packed batch's positions to the model."""
    rng = np.random.default_rng(51)
    examples = [Example(ids=[int(t) for t in rng.integers(0, 256, n)], mask=[0] * 3 + [1] * (n - 3))
                for n in (7, 5, 9, 4, 6)]
    batches, _ = make_batches(examples, 2, 16, pack=True, seed=0)
    model = GPT(small_config(dtype="float64", block_size=16), seed=52)
    b = batches[0]
    assert b.positions is not None and (b.positions[:, 0] == 0).all()
    assert (b.positions > 0).any() and (b.segment_ids.max() > 1)
    loss, grads, _ = accumulate(model, [b])
    want_loss, want = model.loss_and_grads(b.ids, b.targets, b.mask, b.segment_ids,
                                           positions=b.positions)
    assert loss == pytest.approx(want_loss, rel=1e-12)
    np.testing.assert_allclose(grads["wpe"], want["wpe"], rtol=1e-12, atol=1e-15)
