"""AdamW against the formula by hand, clipping, decay groups, state; schedule key points."""

import math

import numpy as np
import pytest

from nn_helpers import small_config
from sft_sweep.errors import ConfigError, NonFiniteLossError
from sft_sweep.nn import GPT, AdamW, lr_at


def reference_adamw(p, g, m, v, t, lr, b1, b2, eps, wd):
    """Textbook AdamW for one tensor, float64."""
    m = b1 * m + (1 - b1) * g
    v = b2 * v + (1 - b2) * g * g
    mhat = m / (1 - b1 ** t)
    vhat = v / (1 - b2 ** t)
    p = p * (1 - lr * wd) - lr * mhat / (np.sqrt(vhat) + eps)
    return p, m, v


def test_adamw_step_matches_hand_computed_example():
    # One scalar parameter, two steps, numbers worked out by hand:
    # step 1: m = 0.1*0.5 = 0.05, v = 0.05*0.25 = 0.0125, mhat = 0.5, vhat = 0.25,
    #         p = 1.0*(1 - 0.1*0.5) - 0.1*0.5/(0.5 + 1e-8) = 0.95 - 0.1 = 0.85 (up to eps)
    p = {"w": np.array([[1.0]])}
    opt = AdamW(p, betas=(0.9, 0.95), eps=1e-8, weight_decay=0.5, grad_clip=0.0)
    norm = opt.step({"w": np.array([[0.5]])}, lr=0.1)
    assert norm == pytest.approx(0.5)
    assert p["w"][0, 0] == pytest.approx(0.85, abs=1e-8)
    assert p["w"][0, 0] == pytest.approx(0.95 - 0.05 / (0.5 + 1e-8), abs=1e-15)
    assert opt.t == 1
    # step 2 with g = -0.25: m = 0.045 - 0.025 = 0.02, v = 0.011875 + 0.003125 = 0.015,
    # mhat = 0.02/0.19, vhat = 0.015/0.0975
    opt.step({"w": np.array([[-0.25]])}, lr=0.1)
    mhat, vhat = 0.02 / 0.19, 0.015 / 0.0975
    p1 = 0.95 - 0.05 / (0.5 + 1e-8)
    want = p1 * (1 - 0.05) - 0.1 * mhat / (math.sqrt(vhat) + 1e-8)
    assert p["w"][0, 0] == pytest.approx(want, abs=1e-12)


def test_adamw_matches_reference_on_model_with_decay_groups():
    model = GPT(small_config(dtype="float64"), seed=0)
    params0 = {n: p.copy() for n, p in model.params.items()}
    opt = AdamW(model.params, betas=(0.8, 0.9), eps=1e-6, weight_decay=0.3, grad_clip=0.0)
    rng = np.random.default_rng(0)
    state = {n: (p.copy(), np.zeros_like(p), np.zeros_like(p)) for n, p in params0.items()}
    for t in (1, 2, 3):
        grads = {n: rng.normal(size=p.shape) for n, p in model.params.items()}
        opt.step(grads, lr=0.01 * t)
        for n, g in grads.items():
            p, m, v = state[n]
            wd = 0.3 if (p.ndim == 2 and n not in ("wte", "wpe")) else 0.0
            state[n] = reference_adamw(p, g, m, v, t, 0.01 * t, 0.8, 0.9, 1e-6, wd)
    for n, p in model.params.items():
        np.testing.assert_allclose(p, state[n][0], rtol=1e-12, atol=1e-14, err_msg=n)


def test_decay_embeddings_option_and_no_decay_on_biases_and_layernorm():
    model = GPT(small_config(dtype="float64"), seed=0)
    before = {n: p.copy() for n, p in model.params.items()}
    zero = {n: np.zeros_like(p) for n, p in model.params.items()}
    opt = AdamW(model.params, weight_decay=0.5, decay_embeddings=True)
    opt.step(zero, lr=0.1)  # zero grads: only the decay moves anything
    for n, p in model.params.items():
        if p.ndim == 2:
            np.testing.assert_allclose(p, before[n] * 0.95, rtol=1e-12, err_msg=n)
        else:
            assert np.array_equal(p, before[n]), n


def test_non_flat_params_take_the_same_path():
    rng = np.random.default_rng(1)
    a = {"w": rng.normal(size=(3, 4)), "b": rng.normal(size=4)}
    b = {n: v.copy() for n, v in a.items()}
    flat = np.concatenate([b["w"].ravel(), b["b"]])
    b = {"w": flat[:12].reshape(3, 4), "b": flat[12:]}
    oa, ob = AdamW(a, weight_decay=0.1), AdamW(b, weight_decay=0.1)
    assert ob._flat is flat and oa._flat is None
    for _ in range(3):
        g = {"w": rng.normal(size=(3, 4)), "b": rng.normal(size=4)}
        na, nb = oa.step(g, 0.01), ob.step(g, 0.01)
        assert na == nb
    for n in a:
        np.testing.assert_array_equal(a[n], b[n])


def test_global_norm_clipping():
    p = {"w": np.zeros((2, 2)), "b": np.zeros(2)}
    g = {"w": np.full((2, 2), 3.0), "b": np.full(2, 4.0)}       # norm sqrt(36 + 32)
    opt = AdamW(p, grad_clip=1.0, betas=(0.0, 0.0), eps=0.0 + 1e-12)
    norm = opt.step(g, lr=1.0)
    assert norm == pytest.approx(math.sqrt(68.0))
    s = 1.0 / (math.sqrt(68.0) + 1e-6)
    np.testing.assert_allclose(opt.m[:4], 3.0 * s)  # m = clipped grad with beta1 = 0
    # disabled clipping leaves the moments unscaled
    opt2 = AdamW({"w": np.zeros(2)}, grad_clip=0.0, betas=(0.0, 0.0))
    opt2.step({"w": np.array([30.0, 40.0])}, lr=1.0)
    np.testing.assert_allclose(opt2.m, [30.0, 40.0])


def test_state_dict_roundtrip():
    model = GPT(small_config(), seed=0)
    opt = AdamW(model.params)
    grads = {n: np.ones_like(p) for n, p in model.params.items()}
    opt.step(grads, 1e-3)
    sd = opt.state_dict()
    opt2 = AdamW(model.params)
    opt2.load_state_dict(sd)
    assert opt2.t == 1
    assert np.array_equal(opt2.m, opt.m) and np.array_equal(opt2.v, opt.v)
    assert set(sd) == {"t"} | {f"{k}:{n}" for n in model.params for k in "mv"}
    bad = dict(sd, **{"m:wte": sd["m:wte"][:5]})
    with pytest.raises(ValueError, match="m:wte"):
        opt2.load_state_dict(bad)
    missing = {k: v for k, v in sd.items() if k != "v:lnf.b"}
    with pytest.raises(ValueError, match="v:lnf.b"):
        opt2.load_state_dict(missing)


def test_non_finite_gradient_refused():
    p = {"w": np.zeros(3)}
    with pytest.raises(NonFiniteLossError):
        AdamW(p).step({"w": np.array([1.0, np.nan, 0.0])}, 1e-3)
    assert not p["w"].any()


# ----------------------------------------------------------------------------- schedules

def test_warmup_is_linear_from_near_zero_to_peak():
    lrs = [lr_at(s, total_steps=100, peak_lr=1.0, schedule="cosine", warmup_steps=10) for s in range(10)]
    assert lrs[0] == pytest.approx(0.1)
    assert lrs[9] == pytest.approx(1.0)
    assert np.allclose(np.diff(lrs), 0.1)


@pytest.mark.parametrize("schedule", ["cosine", "linear"])
def test_decay_key_points(schedule):
    kw = dict(total_steps=110, peak_lr=1.0, schedule=schedule, warmup_steps=10, min_lr=0.1)
    assert lr_at(10, **kw) == pytest.approx(1.0)
    assert lr_at(60, **kw) == pytest.approx(0.55)          # halfway: midpoint for both
    assert lr_at(110, **kw) == pytest.approx(0.1)
    assert lr_at(500, **kw) == pytest.approx(0.1)
    seq = [lr_at(s, **kw) for s in range(10, 111)]
    assert all(a >= b for a, b in zip(seq, seq[1:]))


def test_cosine_quarter_point_and_linear_shape():
    assert lr_at(25, total_steps=100, peak_lr=2.0, schedule="cosine") == pytest.approx(
        1.0 + math.cos(math.pi / 4))
    assert lr_at(25, total_steps=100, peak_lr=2.0, schedule="linear") == pytest.approx(1.5)


def test_constant_schedule():
    assert lr_at(0, total_steps=10, peak_lr=0.3, schedule="constant") == 0.3
    assert lr_at(9, total_steps=10, peak_lr=0.3, schedule="constant", min_lr=0.1) == 0.3
    assert lr_at(1, total_steps=10, peak_lr=0.3, schedule="constant", warmup_steps=4) == pytest.approx(0.15)


def test_schedule_errors():
    with pytest.raises(ConfigError, match="schedule"):
        lr_at(0, total_steps=10, peak_lr=1.0, schedule="step")
    with pytest.raises(ConfigError):
        lr_at(0, total_steps=0, peak_lr=1.0)
