"""The memorisation check cuts only the training conversations it samples: its memory does not
grow with the training set, and the sample is the one of cutting every conversation."""

from __future__ import annotations

import random
import tracemalloc

import numpy as np
import pytest

from sft_sweep.data import Example
from sft_sweep.train import memorisation
from sft_sweep.train.memorisation import SAMPLE_SIZE, MemorisationCheck, last_response

BLOCK = 64


def _examples(n: int, seed: int) -> list[Example]:
    """Conversations of random lengths with one or two trained spans (some too long for BLOCK,
    some with nothing trained)."""
    rng = np.random.default_rng(seed)
    out = []
    for _ in range(n):
        L = int(rng.integers(3, 90))
        mask = np.zeros(L, np.uint8)
        if rng.random() < 0.95:
            a = int(rng.integers(1, L))
            mask[a:int(rng.integers(a, L)) + 1] = 1
            if rng.random() < 0.3 and a > 3:
                mask[1:a - 1] = 1
        out.append(Example(rng.integers(0, 256, L).astype(np.int32), mask))
    return out


def _check(train, held):
    return MemorisationCheck(train, held, block_size=BLOCK, halt_ids=(1,), batch_size=8,
                             decode=str, nll_sums=None)


def _reference_sample(train, held):
    """The training sample as chosen by cutting every conversation and matching prompt lengths
    (nearest unused, ties by a seeded order; a plain seeded sample without held-out prompts)."""
    def cut(examples):
        out = (last_response(e) for e in examples)
        return [c for c in out if c is not None and len(c.prompt) + len(c.response) <= BLOCK]

    pool, targets = cut(train), cut(held[:SAMPLE_SIZE])
    if not targets:
        if len(pool) <= SAMPLE_SIZE:
            return pool
        return [pool[i] for i in sorted(random.Random("memorisation:0").sample(range(len(pool)), SAMPLE_SIZE))]
    order = list(range(len(pool)))
    random.Random("memorisation-match:0").shuffle(order)
    rank = {i: r for r, i in enumerate(order)}
    free, out = set(order), []
    for t in targets:
        if not free:
            break
        best = min(free, key=lambda i: (abs(len(pool[i].prompt) - len(t.prompt)), rank[i]))
        free.discard(best)
        out.append(pool[best])
    return out


def _same(a, b):
    assert len(a) == len(b)
    for x, y in zip(a, b):
        assert x.prompt == y.prompt and x.response == y.response
        assert np.array_equal(x.ids, y.ids) and np.array_equal(x.mask, y.mask) and x.mask.dtype == y.mask.dtype


@pytest.mark.parametrize("n_train,n_held", [(3000, 40), (3000, 0), (30, 60), (20, 5), (0, 5)])
def test_the_samples_are_those_of_cutting_every_conversation(n_train, n_held):
    train, held = _examples(n_train, 1), _examples(n_held, 2)
    check = _check(train, held)
    _same(check.samples["train"], _reference_sample(train, held))
    _same(check.samples["heldout"], [last_response(e) for e in held[:SAMPLE_SIZE]
                                     if last_response(e) is not None and len(last_response(e).ids) <= BLOCK])


def test_only_the_sampled_conversations_are_cut(monkeypatch):
    train, held = _examples(20_000, 3), _examples(SAMPLE_SIZE, 4)
    made = []

    class Counted(memorisation.PromptResponse):
        def __init__(self, *a, **k):
            super().__init__(*a, **k)
            made.append(1)

    monkeypatch.setattr(memorisation, "PromptResponse", Counted)
    tracemalloc.start()
    try:
        check = _check(train, held)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    # the training sample and the held-out conversations considered (those that fit are kept)
    assert len(check.samples["train"]) == len(check.samples["heldout"]) <= SAMPLE_SIZE
    assert len(made) <= len(check.samples["train"]) + SAMPLE_SIZE
    # a cut conversation holds its prompt and response as lists and a mask: a few hundred bytes
    # each, so cutting all 20,000 takes over 15 MB; what stays is a few numbers a conversation
    assert peak < 4_000_000, f"building the check peaked at {peak} bytes"
