"""Scores of several continuations sharing one prefilled prompt equal those of the full sequences."""

import numpy as np
import pytest

from nn_helpers import small_config
from sft_sweep.nn import GPT
from sft_sweep.nn.continuations import continuation_logprobs


def _full_sequence_score(model, prompt, cont):
    seq = np.array(prompt + cont)[None]
    nll = model.token_nll(seq[:, :-1], seq[:, 1:])[0].astype(np.float64)
    return -nll[len(prompt) - 1:].sum()


@pytest.mark.parametrize("dtype,tol", [("float64", 1e-10), ("float32", 1e-4)])
def test_equals_scoring_each_full_sequence(dtype, tol):
    model = GPT(small_config(init_std=0.3, dtype=dtype), seed=2)
    rng = np.random.default_rng(0)
    # prompts of different lengths (one token, near the block), continuations of 1..20 tokens,
    # different numbers per prompt
    prompts = [list(rng.integers(0, 260, n)) for n in (5, 12, 1, 12, 3)]
    conts = [[list(rng.integers(0, 260, k)) for k in ks]
             for ks in ([1, 3, 7], [2], [4, 4, 20], [21, 1], [9] * 30)]
    got = continuation_logprobs(model, prompts, conts)
    for p, cs, g in zip(prompts, conts, got):
        assert g.shape == (len(cs),)
        want = [_full_sequence_score(model, p, c) for c in cs]
        np.testing.assert_allclose(g, want, rtol=tol, atol=tol)


def test_a_continuation_that_does_not_fit_is_refused():
    model = GPT(small_config(), seed=0)
    with pytest.raises(ValueError, match="block_size"):
        continuation_logprobs(model, [[1] * 30], [[[2, 3, 4, 5]]])
    with pytest.raises(ValueError, match="empty"):
        continuation_logprobs(model, [[1]], [[[]]])
