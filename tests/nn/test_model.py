"""Loss semantics, accumulation, forward consistency, determinism, overfitting, bad input."""

import math

import numpy as np
import pytest

from nn_helpers import random_batch, small_config, tiny_config
from sft_sweep.errors import ConfigError, NonFiniteLossError
from sft_sweep.nn import GPT, AdamW, GPTConfig


def direct_loss(model, ids, targets, mask):
    """Masked mean cross-entropy computed straight from the logits, in float64."""
    logits = model.logits(ids).astype(np.float64)
    m = logits.max(-1, keepdims=True)
    logp = logits - m - np.log(np.exp(logits - m).sum(-1, keepdims=True))
    B, T = ids.shape
    ce = -logp[np.arange(B)[:, None], np.arange(T)[None, :], targets]
    return float((ce * mask).sum() / mask.sum()), ce


# ----------------------------------------------------------------------------- config

def test_config_validation():
    with pytest.raises(ConfigError, match="divide"):
        GPTConfig(n_embd=130, n_head=4)
    with pytest.raises(ConfigError, match="n_layer"):
        GPTConfig(n_layer=0)
    with pytest.raises(ConfigError, match="dtype"):
        GPTConfig(dtype="float16")
    with pytest.raises(ConfigError, match="init_std"):
        GPTConfig(init_std=-1.0)
    assert GPTConfig().flops_per_token() == pytest.approx(5.7e6, rel=0.01)


def test_params_are_views_of_one_flat_buffer():
    model = GPT(small_config(), seed=0)
    assert sum(p.size for p in model.params.values()) == model.num_params == model.flat_params.size
    for p in model.params.values():
        assert p.base is model.flat_params and p.dtype == np.float32
    # tied head: no separate output matrix
    assert not any("head" in n for n in model.params)


def test_same_seed_same_weights_different_seed_different():
    a, b, c = (GPT(small_config(), seed=s) for s in (3, 3, 4))
    assert np.array_equal(a.flat_params, b.flat_params)
    assert not np.array_equal(a.flat_params, c.flat_params)


# ----------------------------------------------------------------------------- loss semantics

def test_loss_equals_direct_computation_and_token_nll(small32=None):
    model = GPT(small_config(dtype="float64"), seed=0)
    rng = np.random.default_rng(0)
    ids, targets, mask = random_batch(rng, 3, 20, 260)
    loss, _ = model.loss_and_grads(ids, targets, mask)
    want, ce = direct_loss(model, ids, targets, mask)
    assert loss == pytest.approx(want, rel=1e-12)
    np.testing.assert_allclose(model.token_nll(ids, targets), ce, rtol=1e-12)


def test_masked_targets_get_no_gradient_signal():
    model = GPT(tiny_config(), seed=1)
    rng = np.random.default_rng(1)
    ids, targets, mask = random_batch(rng, 3, 8, 11, p_mask=0.5)
    l1, g1 = model.loss_and_grads(ids, targets, mask)
    t2 = targets.copy()
    t2[mask == 0] = rng.integers(0, 11, int((mask == 0).sum()))
    t3 = targets.copy()
    t3[mask == 0] = -100                      # any integer is fine where the mask is 0
    for t in (t2, t3):
        l2, g2 = model.loss_and_grads(ids, t, mask)
        assert l2 == l1
        for name in g1:
            assert np.array_equal(g1[name], g2[name]), name


def test_mask_weights_scale_loss_like_direct_sum():
    model = GPT(tiny_config(), seed=2)
    rng = np.random.default_rng(2)
    ids, targets, _ = random_batch(rng, 2, 8, 11)
    mask = np.zeros((2, 8))
    mask[0, 3] = 1
    loss, _ = model.loss_and_grads(ids, targets, mask)
    assert loss == pytest.approx(model.token_nll(ids, targets)[0, 3], rel=1e-12)
    # int masks work too
    loss_i, _ = model.loss_and_grads(ids, targets, mask.astype(np.int64))
    assert loss_i == loss


def test_segments_block_attention_across_documents():
    """A token's logits depend only on earlier tokens of its own segment."""
    model = GPT(small_config(dtype="float64"), seed=3)
    rng = np.random.default_rng(3)
    a = rng.integers(0, 260, 10)
    b1, b2 = rng.integers(0, 260, 6), rng.integers(0, 260, 6)
    seg = np.array([[0] * 10 + [1] * 6])
    packed1 = model.logits(np.concatenate([a, b1])[None], segment_ids=seg)
    packed2 = model.logits(np.concatenate([a, b2])[None], segment_ids=seg)
    np.testing.assert_allclose(packed1[0, :10], packed2[0, :10], rtol=1e-12, atol=1e-12)
    # the second document alone, at positions 10.., behaves as if unpacked except for wpe
    alone = model.logits(a[None])
    np.testing.assert_allclose(packed1[0, :10], alone[0], rtol=1e-12, atol=1e-12)


def test_causality_future_tokens_do_not_change_past_logits():
    model = GPT(small_config(), seed=4)
    rng = np.random.default_rng(4)
    x = rng.integers(0, 260, (1, 16))
    y = x.copy()
    y[0, 9:] = rng.integers(0, 260, 7)
    np.testing.assert_array_equal(model.logits(x)[0, :9], model.logits(y)[0, :9])


def test_gradient_accumulation_equals_one_big_batch():
    model = GPT(small_config(dtype="float64"), seed=5)
    rng = np.random.default_rng(5)
    ids, targets, mask = random_batch(rng, 8, 24, 260, p_mask=0.4)
    mask[3] = 0.0                                  # a micro-batch row with no response tokens
    big_loss, big = model.loss_and_grads(ids, targets, mask)
    total = mask.sum()
    loss, acc = 0.0, None
    for k in range(4):
        s = slice(2 * k, 2 * k + 2)
        l, g = model.loss_and_grads(ids[s], targets[s], mask[s], normalizer=total)
        loss += l
        acc = g if acc is None else {n: acc[n] + g[n] for n in g}
    assert loss == pytest.approx(big_loss, rel=1e-12)
    for n in big:
        np.testing.assert_allclose(acc[n], big[n], rtol=1e-9, atol=1e-14)


def test_returned_grads_are_owned_by_the_caller():
    model = GPT(small_config(), seed=6)
    rng = np.random.default_rng(6)
    ids, targets, mask = random_batch(rng, 2, 8, 260)
    _, g1 = model.loss_and_grads(ids, targets, mask)
    keep = {n: v.copy() for n, v in g1.items()}
    model.loss_and_grads(ids[::-1], targets, mask)
    for n in g1:
        assert np.array_equal(g1[n], keep[n])


# ----------------------------------------------------------------------------- dtype stability

def test_float32_stays_float32():
    model = GPT(small_config(), seed=7, threads=2)
    rng = np.random.default_rng(7)
    ids, targets, mask = random_batch(rng, 3, 16, 260)
    loss, grads = model.loss_and_grads(ids, targets, mask)
    assert isinstance(loss, float)
    assert all(g.dtype == np.float32 for g in grads.values())
    assert model.logits(ids).dtype == np.float32
    assert model.token_nll(ids, targets).dtype == np.float32
    opt = AdamW(model.params, weight_decay=0.1)
    opt.step(grads, 1e-3)
    assert model.flat_params.dtype == np.float32
    assert opt.m.dtype == np.float32 and opt.v.dtype == np.float32
    model.close()


# ----------------------------------------------------------------------------- determinism

def train_losses(threads, steps=20):
    model = GPT(small_config(), seed=11, threads=threads)
    opt = AdamW(model.params, weight_decay=0.1)
    rng = np.random.default_rng(12)
    losses = []
    for _ in range(steps):
        ids, targets, mask = random_batch(rng, 4, 32, 260)
        loss, grads = model.loss_and_grads(ids, targets, mask)
        opt.step(grads, 3e-3)
        losses.append(loss)
    model.close()
    return losses


@pytest.mark.parametrize("threads", [1, 2])
def test_bit_identical_losses_over_20_steps(threads):
    a, b = train_losses(threads), train_losses(threads)
    assert a == b
    assert a[-1] < a[0]


def test_overfit_small_fixed_batch():
    """The mini model memorizes a small fixed batch (loss below 0.05)."""
    model = GPT(GPTConfig(), seed=0, threads=2)      # the default "mini": 4x4x128, MLP 512
    opt = AdamW(model.params, weight_decay=0.0)
    rng = np.random.default_rng(0)
    ids = rng.integers(0, 256, (2, 32))
    targets = np.roll(ids, -1, axis=1)
    mask = np.ones_like(ids)
    loss = math.inf
    for step in range(150):
        loss, grads = model.loss_and_grads(ids, targets, mask)
        if loss < 0.05:
            break
        opt.step(grads, 3e-3)
    model.close()
    assert loss < 0.05, f"loss {loss} after {step} steps"


# ----------------------------------------------------------------------------- bad input

@pytest.fixture(scope="module")
def bad_model():
    return GPT(tiny_config(), seed=0)


def test_bad_shapes(bad_model):
    ids = np.zeros((2, 4), dtype=int)
    with pytest.raises(ValueError, match="2-D"):
        bad_model.loss_and_grads(ids[0], ids[0], np.ones(4))
    with pytest.raises(ValueError, match="targets shape"):
        bad_model.loss_and_grads(ids, ids[:, :3], np.ones((2, 4)))
    with pytest.raises(ValueError, match="mask shape"):
        bad_model.loss_and_grads(ids, ids, np.ones((2, 3)))
    with pytest.raises(ValueError, match="segment_ids shape"):
        bad_model.loss_and_grads(ids, ids, np.ones((2, 4)), segment_ids=np.zeros((2, 5), int))
    with pytest.raises(ValueError, match="2-D"):
        bad_model.logits(np.zeros((1, 2, 3), dtype=int))
    with pytest.raises(ValueError, match="non-empty"):
        bad_model.logits(np.zeros((1, 0), dtype=int))
    with pytest.raises(ValueError, match="integers"):
        bad_model.logits(np.zeros((1, 3)) + 0.5)


def test_ids_out_of_vocab(bad_model):
    ids = np.array([[1, 2, 11]])
    with pytest.raises(ValueError, match="outside the vocabulary"):
        bad_model.logits(ids)
    with pytest.raises(ValueError, match="outside the vocabulary"):
        bad_model.loss_and_grads(np.array([[1, -1]]), np.array([[1, 2]]), np.ones((1, 2)))
    with pytest.raises(ValueError, match="targets contains id 11"):
        bad_model.loss_and_grads(np.array([[1, 2]]), np.array([[1, 11]]), np.ones((1, 2)))
    with pytest.raises(ValueError, match="outside the vocabulary"):
        bad_model.token_nll(np.array([[1, 2]]), np.array([[1, 99]]))


def test_sequence_longer_than_block_size(bad_model):
    with pytest.raises(ValueError, match="block_size"):
        bad_model.logits(np.zeros((1, 9), dtype=int))
    with pytest.raises(ValueError, match="block_size"):
        bad_model.loss_and_grads(np.zeros((1, 9), int), np.zeros((1, 9), int), np.ones((1, 9)))


def test_all_zero_mask_is_an_error_not_nan(bad_model):
    ids = np.zeros((2, 4), dtype=int)
    with pytest.raises(ValueError, match="all zeros"):
        bad_model.loss_and_grads(ids, ids, np.zeros((2, 4)))
    # with an explicit normalizer (accumulation) an empty micro-batch is legal: zero loss/grads
    loss, grads = bad_model.loss_and_grads(ids, ids, np.zeros((2, 4)), normalizer=10)
    assert loss == 0.0 and all(not g.any() for g in grads.values())
    with pytest.raises(ValueError, match="normalizer"):
        bad_model.loss_and_grads(ids, ids, np.ones((2, 4)), normalizer=0)


def test_non_finite_loss_raises(bad_model):
    model = GPT(tiny_config(), seed=0)
    model.params["wte"][3, 0] = np.nan
    ids = np.array([[3, 1, 2]])
    with pytest.raises(NonFiniteLossError):
        model.loss_and_grads(ids, ids, np.ones((1, 3)))
    with pytest.raises(ValueError, match="non-finite"):
        bad_model.loss_and_grads(ids, ids, np.array([[1.0, np.inf, 1.0]]))


def test_threads_setting_validation():
    with pytest.raises(ConfigError):
        GPT(tiny_config(), threads=0)
    m = GPT(tiny_config(), threads=2)
    m.set_threads(1)
    assert m.threads == 1


def test_no_float64_intermediates_in_float32_mode(monkeypatch):
    """Every floating array a numpy function returns inside the model code is float32
    (under numpy 2, one float64 scalar in the wrong place silently upcasts a pass)."""
    import types

    import sft_sweep.nn.gpt as G
    import sft_sweep.nn.layers as Lmod

    seen = []

    class Checked(types.ModuleType):
        def __getattr__(self, name):
            attr = getattr(np, name)
            if not callable(attr) or isinstance(attr, type) or isinstance(attr, np.ufunc):
                if isinstance(attr, np.ufunc):
                    return _CheckedUfunc(attr, seen)
                return attr

            def wrapped(*a, **kw):
                out = attr(*a, **kw)
                seen.append((name, out))
                seen.extend((name, x) for x in (*a, *kw.values()) if _is_f64(x))
                return out
            return wrapped

    monkeypatch.setattr(G, "np", Checked("np"))
    monkeypatch.setattr(Lmod, "np", Checked("np"))
    model = GPT(small_config(), seed=0)
    rng = np.random.default_rng(0)
    ids, targets, mask = random_batch(rng, 3, 32, 260)
    seg = np.repeat(np.arange(4), 8)[None].repeat(3, 0)
    model.loss_and_grads(ids, targets, mask, segment_ids=seg)
    model.logits(ids)
    bad = [name for name, out in seen       # asarray hands back the caller's own inputs
           if name != "asarray" and (_is_f64(out) or (isinstance(out, np.ndarray)
                                                        and out.dtype.kind == "f"
                                                        and out.dtype != np.float32))]
    assert not bad, f"float64 results from {sorted(set(bad))}"
    assert len(seen) > 100


class _CheckedUfunc:
    def __init__(self, uf, seen):
        self.uf, self.seen = uf, seen

    def __call__(self, *a, **kw):
        out = self.uf(*a, **kw)
        self.seen.append((self.uf.__name__, out))
        self.seen.extend((self.uf.__name__, x) for x in (*a, *kw.values()) if _is_f64(x))
        return out

    def __getattr__(self, name):
        return getattr(self.uf, name)


def _is_f64(x) -> bool:
    """A float64 array or numpy float64 scalar (Python floats are fine: weak scalars)."""
    return isinstance(x, (np.ndarray, np.generic)) and x.dtype == np.float64


@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_evaluation_forward_computes_the_training_forwards_numbers(dtype):
    """Evaluation skips the copies only the backward reads (k, v^T): the residual stream, the
    cached keys and values and every loss stay those of the training forward, to the bit."""
    from sft_sweep.nn import layers as L
    from sft_sweep.nn.gpt import QUERY_BLOCK

    model = GPT(small_config(dtype=dtype), seed=3)
    ids = np.random.default_rng(0).integers(0, 260, (20, 32))   # several chunks of rows
    fw = model._fold()
    out = {}
    for for_backward in (True, False):
        ws = L.Workspace(model.dtype)
        model._forward_layers(ws, ids, None, fw, for_backward=for_backward)
        bufs = [model._block_buffers(ws, i, 20, 32, L.query_blocks(32, QUERY_BLOCK))
                for i in range(model.config.n_layer)]
        out[for_backward] = [ws.get("x", (20 * 32, 32)).copy()] + \
            [b.kt.copy() for b in bufs] + [b.v.copy() for b in bufs]
    for a, b in zip(out[True], out[False]):
        assert np.array_equal(a, b)
    targets = np.roll(ids, -1, axis=1)
    loss, _ = model.loss_and_grads(ids, targets, np.ones(ids.shape))
    nll = model.token_nll(ids, targets)
    assert nll.astype(np.float64).mean() == pytest.approx(loss, rel=1e-6 if dtype == "float32" else 1e-12)
