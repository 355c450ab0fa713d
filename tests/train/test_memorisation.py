"""Memorisation metrics on a model that has memorised a handful of conversations and on one
that has not seen them."""

import numpy as np
import pytest

from sft_sweep.data import WorldConfig, build_world, get_template
from sft_sweep.nn import GPT, AdamW, GPTConfig
from sft_sweep.data.prepare import render_examples
from sft_sweep.train.evaluate import masked_nll_sums
from sft_sweep.train.memorisation import (MemorisationCheck, fixed_sample, last_response,
                                          ngram_overlap)
from sft_sweep.tokenizer import ByteTokenizer

TOK = ByteTokenizer()
BLOCK = 96


def _examples():
    world = build_world(WorldConfig())
    template = get_template("chatml")
    short = [c for c in world.train if c.meta.get("task") != "context"]
    train = render_examples(short[:6], template, "assistant", "world")
    held = render_examples(world.val[:8], template, "assistant", "world")
    return train, held, template


def _check(train, held, template):
    return MemorisationCheck(
        train, held, block_size=BLOCK, halt_ids=template.stop_ids, batch_size=8,
        decode=lambda ids: TOK.decode(ids, skip_special=True),
        nll_sums=lambda m, s, k: masked_nll_sums(m, s, k, 8, TOK.pad_id))


def _memorised_model(train):
    model = GPT(GPTConfig(n_layer=2, n_head=2, n_embd=64, n_mlp=256, block_size=BLOCK), seed=0, threads=1)
    T = max(len(e.ids) for e in train)
    ids = np.full((len(train), T), TOK.pad_id, dtype=np.int32)
    mask = np.zeros((len(train), T), dtype=np.int32)
    for i, e in enumerate(train):
        ids[i, : len(e.ids)] = e.ids
        mask[i, : len(e.ids)] = e.mask  # the responses, learnt by heart
    opt = AdamW(model.params, weight_decay=0.0)
    on = mask[:, 1:] > 0
    for _ in range(600):
        loss, grads = model.loss_and_grads(ids[:, :-1], ids[:, 1:], mask[:, 1:])
        # every response token the most likely one given the true prefix: greedy decoding
        # then reproduces each response exactly
        if (model.logits(ids[:, :-1]).argmax(-1)[on] == ids[:, 1:][on]).all() and loss < 0.05:
            break
        opt.step(grads, 5e-3)
    assert (model.logits(ids[:, :-1]).argmax(-1)[on] == ids[:, 1:][on]).all()
    return model


@pytest.fixture(scope="module")
def setup():
    train, held, template = _examples()
    return train, held, template, _memorised_model(train)


def test_memorised_model_reproduces_training_responses(setup):
    train, held, template, model = setup
    m = _check(train, held, template).measure(model)
    assert m["memorised_n_train"] == 6 and m["memorised_n_heldout"] == 8
    assert m["memorised_exact_train"] == 1.0
    assert m["memorised_ngram_train"] == 1.0
    assert m["memorised_exact_heldout"] <= 0.25
    assert m["memorised_loss_gap"] > 1.0


def test_fresh_model_reproduces_nothing(setup):
    train, held, template, _ = setup
    model = GPT(GPTConfig(n_layer=2, n_head=2, n_embd=64, n_mlp=256, block_size=BLOCK), seed=1, threads=1)
    m = _check(train, held, template).measure(model)
    assert m["memorised_exact_train"] == 0.0 and m["memorised_exact_heldout"] == 0.0
    assert m["memorised_ngram_train"] == 0.0
    assert abs(m["memorised_loss_gap"]) < 0.5


def test_absent_without_samples(setup):
    train, held, template, model = setup
    assert _check([], [], template).measure(model) == {}
    only_train = _check(train, [], template).measure(model)
    assert "memorised_exact_train" in only_train and "memorised_loss_gap" not in only_train
    assert "memorised_exact_heldout" not in only_train


def test_last_response_is_the_last_trained_span():
    world = build_world(WorldConfig(multi_turn_fraction=0.5))
    conv = next(c for c in world.train if len(c.turns) > 2)
    ex = render_examples([conv], get_template("chatml"), "assistant", "world")[0]
    cut = last_response(ex)
    assert TOK.decode(cut.response, skip_special=True) == conv.turns[-1].content
    assert TOK.decode(cut.prompt).endswith("<|im_start|>assistant\n")
    assert conv.turns[-2].content in TOK.decode(cut.prompt)
    assert list(cut.ids) == list(ex.ids[: len(cut.prompt) + len(cut.response)])
    assert cut.mask.sum() == len(cut.response)


def test_fixed_sample_is_seeded_and_stable():
    xs = list(range(200))
    a, b = fixed_sample(xs, 50), fixed_sample(xs, 50)
    assert a == b and len(set(a)) == 50 and a == sorted(a)
    assert fixed_sample(xs, 50, seed=1) != a
    assert fixed_sample(xs[:10], 50) == xs[:10]


def test_ngram_overlap():
    ref = "The capital of Vaiiorn is Vaizem."
    assert ngram_overlap(ref, ref) == 1.0
    assert ngram_overlap("The capital of Vaiiorn is Kepend.", ref) == 2 / 3
    assert ngram_overlap("Vaizem.", ref) == 0.0
    assert ngram_overlap("Vaizem.", "Vaizem.") == 1.0
    assert ngram_overlap("", ref) == 0.0


def test_training_sample_matches_the_held_out_prompt_lengths():
    from sft_sweep.train.memorisation import PromptResponse, matched_sample

    def pr(n):
        return PromptResponse([1] * n, [2], np.zeros(n + 1, dtype=np.int32), np.zeros(n + 1, dtype=np.int32))

    pool = [pr(n) for n in (10, 10, 11, 30, 31, 50)]
    got = matched_sample(pool, [pr(30), pr(10), pr(30), pr(12)])
    assert [len(p.prompt) for p in got] == [30, 10, 31, 11]
    assert len({id(p) for p in got}) == 4
    assert matched_sample(pool, [pr(30), pr(10), pr(30), pr(12)]) == got  # fixed
    assert len(matched_sample(pool[:2], [pr(5)] * 4)) == 2
