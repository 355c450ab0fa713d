"""LoRA, freezing and NEFTune's embedding noise: exact gradients (float64 finite differences),
frozen weights untouched, step 0 is the base to the bit."""

import math

import numpy as np
import pytest

from nn_helpers import numeric_grad, random_batch, tiny_config
from sft_sweep.nn import GPT, AdamW
from sft_sweep.nn.gpt import LINEARS, backward_plan
from sft_sweep.nn.peft import FreezeTuning, LoraTuning, Tuning, effective_rank, freeze_names


def _batch(seed=0, B=3, T=8, V=11):
    return random_batch(np.random.default_rng(seed), B, T, V)


def _packed(seed=1, B=2, T=8, V=11):
    rng = np.random.default_rng(seed)
    ids, targets, mask = random_batch(rng, B, T, V)
    seg = np.array([[0, 0, 0, 1, 1, 1, 1, 2], [0, 0, 0, 0, 0, 1, 1, 1]])
    pos = np.array([[0, 1, 2, 0, 1, 2, 3, 0], [0, 1, 2, 3, 4, 0, 1, 2]])
    return ids, targets, mask, {"segment_ids": seg, "positions": pos}


def _numeric(tuning, model, fn, name, rng):
    """Central differences of fn() w.r.t. an adapter matrix (re-applied to the model each time)."""
    flat = tuning.params[name].reshape(-1)
    idx = rng.choice(flat.size, min(flat.size, 12), replace=False)
    num = np.empty(idx.size)
    for j, i in enumerate(idx):
        old = flat[i]
        vals = []
        for x in (old + 1e-5, old - 1e-5):
            flat[i] = x
            tuning.apply()
            vals.append(fn())
        flat[i] = old
        tuning.apply()
        num[j] = (vals[0] - vals[1]) / 2e-5
    return idx, num


@pytest.mark.parametrize("targets,rslora,packed,rank", [
    (LINEARS, False, False, 3), (("attn.qkv", "attn.proj"), True, False, 3), (("mlp.fc",), False, True, 3),
    (("mlp.proj", "attn.qkv"), True, True, 3),
    (LINEARS, False, True, 6)])  # rank 6 of an 8x8 matrix: too large for the low-rank backward
def test_lora_gradients_match_finite_differences(targets, rslora, packed, rank):
    model = GPT(tiny_config(), seed=0)
    lora = LoraTuning(model, rank=rank, alpha=2.0 * rank, targets=targets, rslora=rslora, seed=1)
    assert lora.low_rank == (rank == 3)
    assert lora.scale == (2.0 * rank / math.sqrt(rank) if rslora else 2.0)
    rng = np.random.default_rng(2)
    for b in lora.params:  # B = 0 at the start; give it values so dA is not zero
        if b.endswith("lora_B"):
            lora.params[b][...] = rng.normal(0, 0.3, lora.params[b].shape)
    lora.apply()
    ids, targets_, mask, extra = _packed() if packed else (*_batch(), {})
    loss, mg = model.loss_and_grads(ids, targets_, mask, **extra)
    # only the adapters' gradients are formed (or, past the low-rank limit, the target matrices')
    assert set(mg) == (set(lora.params) if lora.low_rank else set(lora.weights))
    grads = lora.grads(mg)
    fn = lambda: model.loss_and_grads(ids, targets_, mask, **extra)[0]  # noqa: E731
    for name in lora.params:
        idx, num = _numeric(lora, model, fn, name, rng)
        np.testing.assert_allclose(grads[name].reshape(-1)[idx], num, rtol=1e-6, atol=1e-9, err_msg=name)


def test_lora_step_zero_is_the_base_to_the_bit_and_base_weights_stay():
    model = GPT(tiny_config(dtype="float32"), seed=0)
    ids, targets, mask = _batch()
    base_logits = model.logits(ids)
    base = {n: p.copy() for n, p in model.params.items()}
    lora = LoraTuning(model, rank=4, alpha=16, seed=0)
    lora.apply()
    assert np.array_equal(model.logits(ids), base_logits)
    opt = AdamW(lora.params)
    for _ in range(3):
        _, g = model.loss_and_grads(ids, targets, mask)
        opt.step(lora.grads(g), 1e-2)
        lora.apply()
    for n, p in model.params.items():
        if n in lora.weights:
            assert not np.array_equal(p, base[n])
            assert np.array_equal(lora.base[n], base[n])  # the frozen base copy is untouched
            np.testing.assert_allclose(p, base[n] + lora.delta(n), rtol=0, atol=0)
        else:
            assert np.array_equal(p, base[n]), n  # biases, LayerNorms, embeddings: bit-identical


def test_lora_a_is_drawn_as_peft_draws_it():
    model = GPT(tiny_config(n_embd=16, n_mlp=64), seed=0)
    lora = LoraTuning(model, rank=8, alpha=16, seed=0)
    a = lora.params["h.0.mlp.proj.lora_A"]  # fan-in 64
    assert a.shape == (64, 8) and np.abs(a).max() <= 1 / 8 and np.abs(a).max() > 0.9 / 8
    assert not lora.params["h.0.mlp.proj.lora_B"].any()


@pytest.mark.parametrize("layers,emb", [(1, False), (-1, False), (2, True), (-1, True)])
def test_frozen_gradients_equal_the_full_models_and_skip_the_rest(layers, emb):
    full = GPT(tiny_config(n_layer=3), seed=0)
    part = GPT(tiny_config(n_layer=3), seed=0)
    names = freeze_names(part, layers, emb)
    FreezeTuning(part, names)
    ids, targets, mask, extra = _packed()
    lf, gf = full.loss_and_grads(ids, targets, mask, **extra)
    lp, gp = part.loss_and_grads(ids, targets, mask, **extra)
    assert lp == lf
    assert set(gp) == set(names)
    for n in names:
        assert np.array_equal(gp[n], gf[n]), n


def test_freeze_names():
    m = GPT(tiny_config(n_layer=3), seed=0)
    last = freeze_names(m, 1, False)
    assert all(n.startswith("h.2.") for n in last if n.startswith("h.")) and "lnf.w" in last and "wte" not in last
    first = freeze_names(m, -2, True)
    assert {n.split(".")[1] for n in first if n.startswith("h.")} == {"0", "1"} and "lnf.w" not in first
    assert "wte" in first and "wpe" in first
    with pytest.raises(ValueError):
        freeze_names(m, 4, False)


def test_backward_plan_stops_below_the_lowest_trained_block():
    cfg = tiny_config(n_layer=4)
    plan = backward_plan(cfg, frozenset({"h.3.mlp.fc.w", "h.2.attn.proj.w"}))
    assert plan.stop == 2 and not plan.embed and not plan.head
    assert plan.linears == {(3, "mlp.fc"), (2, "attn.proj")}
    with pytest.raises(ValueError, match="no parameter"):
        backward_plan(cfg, frozenset({"h.9.attn.proj.w"}))


def test_low_rank_and_weight_gradient_routes_agree():
    ids, targets, mask, extra = _packed()
    grads = []
    for fits in (True, False):
        model = GPT(tiny_config(), seed=0)
        lora = LoraTuning(model, rank=2, alpha=4, seed=1)
        rng = np.random.default_rng(5)
        for b in lora.params:
            if b.endswith("lora_B"):
                lora.params[b][...] = rng.normal(0, 0.3, lora.params[b].shape)
        lora.apply()
        if not fits:  # force the chain rule through the weight gradients
            lora.low_rank = False
            model.set_trainable(lora.weights)
        grads.append({n: g.copy() for n, g in lora.grads(model.loss_and_grads(ids, targets, mask, **extra)[1]).items()})
    for n in grads[0]:
        np.testing.assert_allclose(grads[0][n], grads[1][n], rtol=1e-10, atol=1e-13, err_msg=n)


def test_frozen_step_runs_on_worker_processes_the_same():
    ids, targets, mask = _batch(B=6)
    one = GPT(tiny_config(n_layer=3), seed=0, threads=1)
    two = GPT(tiny_config(n_layer=3), seed=0, threads=2)
    try:
        for m in (one, two):
            LoraTuning(m, rank=2, alpha=4, targets=("attn.qkv",))
        la, ga = one.loss_and_grads(ids, targets, mask)
        lb, gb = two.loss_and_grads(ids, targets, mask)
        assert la == pytest.approx(lb, rel=1e-12)
        for n in ga:
            np.testing.assert_allclose(ga[n], gb[n], rtol=1e-10, atol=1e-13)
    finally:
        two.close()


def test_embedding_noise_gradient_is_exact_and_zero_noise_changes_nothing():
    model = GPT(tiny_config(), seed=0)
    ids, targets, mask = _batch()
    rng = np.random.default_rng(3)
    noise = rng.uniform(-1, 1, (*ids.shape, 8)) * 0.3
    l0, g0 = model.loss_and_grads(ids, targets, mask)
    lz, gz = model.loss_and_grads(ids, targets, mask, embed_noise=np.zeros_like(noise))
    assert lz == l0 and all(np.array_equal(g0[n], gz[n]) for n in g0)
    ln, gn = model.loss_and_grads(ids, targets, mask, embed_noise=noise)
    assert ln != l0
    fn = lambda: model.loss_and_grads(ids, targets, mask, embed_noise=noise)[0]  # noqa: E731
    for name in ("wte", "h.0.attn.qkv.w", "wpe"):
        idx, num = numeric_grad(model, fn, name, rng, max_entries=10)
        np.testing.assert_allclose(gn[name].reshape(-1)[idx], num, rtol=1e-6, atol=1e-9, err_msg=name)
    with pytest.raises(ValueError, match="embed_noise"):
        model.loss_and_grads(ids, targets, mask, embed_noise=noise[:, :3])


def test_pull_toward_the_start_is_decoupled_and_exact():
    model = GPT(tiny_config(), seed=0)
    t = Tuning(model)
    t.mark_start()
    start = model.params["h.0.mlp.fc.w"].copy()
    model.params["h.0.mlp.fc.w"][...] += 1.0
    t.pull(lr=0.1, strength=2.0)  # moves 20% of the way back
    np.testing.assert_allclose(model.params["h.0.mlp.fc.w"], start + 0.8, rtol=1e-12)


def test_effective_rank():
    rng = np.random.default_rng(0)
    low = rng.normal(size=(20, 3)) @ rng.normal(size=(3, 30))
    assert effective_rank(low) <= 3
    assert effective_rank(np.zeros((5, 5))) == 0
    assert effective_rank(np.eye(10)) == 9  # 9 of 10 equal values hold 90%
    assert effective_rank(rng.normal(size=(40, 40))) >= 15  # a random matrix spreads its energy
