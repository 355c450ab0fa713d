"""Decoding controls against loops: the repetition penalty and the n-gram ban, token by token."""

import numpy as np
import pytest

from sft_sweep.nn import GPT, generate
from sft_sweep.nn.generate import restrain_repeats
from nn_helpers import small_config


def test_off_by_default_returns_the_same_logits():
    z = np.arange(12, dtype=np.float32).reshape(2, 6)
    assert restrain_repeats(z, [[1, 2], [3]], np.array([True, True])) is z


def test_penalty_lowers_every_generated_token_and_only_those():
    z = np.array([[2.0, -2.0, 1.0, 0.5]], dtype=np.float32)
    out = restrain_repeats(z, [[0, 1, 0]], np.array([True]), repetition_penalty=2.0)
    assert out.tolist() == [[1.0, -4.0, 1.0, 0.5]]
    assert z.tolist() == [[2.0, -2.0, 1.0, 0.5]]  # the caller's logits are not changed


def test_ngram_ban_forbids_exactly_the_completions_of_seen_ngrams():
    z = np.zeros((3, 8), dtype=np.float32)
    gen = [[5, 6, 7, 5, 6], [1, 2, 1], [4]]
    out = restrain_repeats(z, gen, np.array([True, True, False]), no_repeat_ngram=3)
    assert np.isinf(out[0]).nonzero()[0].tolist() == [7]        # "5 6" was followed by 7
    assert not np.isinf(out[1]).any()                          # "2 1" never seen before
    assert not np.isinf(out[2]).any()                          # a finished row is left alone
    out1 = restrain_repeats(z, [[3, 4, 3]], np.array([True]), no_repeat_ngram=1)
    assert np.isinf(out1[0]).nonzero()[0].tolist() == [3, 4]    # n=1: no token twice


def test_generation_never_repeats_an_ngram_and_defaults_change_nothing():
    model = GPT(small_config(block_size=64), seed=3)
    prompts = [[1, 2, 3], [7, 8]]
    plain = generate(model, prompts, 40)
    assert generate(model, prompts, 40, repetition_penalty=1.0, no_repeat_ngram=0) == plain
    for row in generate(model, prompts, 40, no_repeat_ngram=2):
        grams = list(zip(row, row[1:]))
        assert len(grams) == len(set(grams))
    with pytest.raises(ValueError, match="repetition_penalty"):
        generate(model, prompts, 4, repetition_penalty=0.0)
    with pytest.raises(ValueError, match="no_repeat_ngram"):
        generate(model, prompts, 4, no_repeat_ngram=-1)
