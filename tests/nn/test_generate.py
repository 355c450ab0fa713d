"""KV-cache generation equals full recompute; stops, limits, sampling filters."""

import numpy as np
import pytest

from nn_helpers import small_config
from sft_sweep.nn import GPT, generate


@pytest.fixture(scope="module")
def model():
    return GPT(small_config(init_std=0.3), seed=0)


PROMPTS = [[5, 6, 7], [1], [9, 8, 7, 6, 5, 4, 3, 2, 1, 0, 11], [200, 100]]


@pytest.mark.parametrize("threads", [1, 2])
def test_cache_equals_full_recompute_greedy(model, threads):
    model.set_threads(threads)
    a = generate(model, PROMPTS, 40, use_cache=True)
    b = generate(model, PROMPTS, 40, use_cache=False)
    model.set_threads(1)
    assert a == b
    # block_size 32 caps every row at 32 tokens in total
    assert [len(p) + len(o) for p, o in zip(PROMPTS, a)] == [32] * 4


def test_cache_equals_full_recompute_float64():
    m = GPT(small_config(init_std=0.3, dtype="float64"), seed=1)
    assert generate(m, PROMPTS, 20) == generate(m, PROMPTS, 20, use_cache=False)


def test_batched_equals_one_by_one(model):
    batched = generate(model, PROMPTS, 10)
    single = [generate(model, [p], 10)[0] for p in PROMPTS]
    assert batched == single


def test_greedy_matches_argmax_of_logits(model):
    out = generate(model, [PROMPTS[0]], 1)[0]
    assert out == [int(np.argmax(model.logits(np.array([PROMPTS[0]]))[0, -1]))]


def test_sampling_cache_equals_recompute_with_same_rng(model):
    kw = dict(temperature=0.9, top_k=20, top_p=0.9)
    a = generate(model, PROMPTS, 15, rng=np.random.default_rng(3), **kw)
    b = generate(model, PROMPTS, 15, rng=np.random.default_rng(3), use_cache=False, **kw)
    assert a == b
    c = generate(model, PROMPTS, 15, rng=np.random.default_rng(4), **kw)
    assert a != c


def test_stop_ids_included_and_max_new_tokens(model):
    free = generate(model, [PROMPTS[0]], 10)[0]
    stop = free[3]
    first = free.index(stop)
    out = generate(model, [PROMPTS[0], PROMPTS[1]], 10, stop_ids=[stop])
    assert out[0] == free[:first + 1]
    assert all(len(o) <= 10 for o in out)
    assert generate(model, PROMPTS, 0) == [[], [], [], []]


def test_prompt_at_and_over_block_size(model):
    full = list(range(32))
    assert generate(model, [full, [1, 2]], 5) == [[], generate(model, [[1, 2]], 5)[0]]
    with pytest.raises(ValueError, match="block_size"):
        generate(model, [list(range(33))], 5)
    with pytest.raises(ValueError, match="empty"):
        generate(model, [[]], 5)
    with pytest.raises(ValueError, match="vocabulary"):
        generate(model, [[1, 999]], 5)


def test_top_k_1_is_greedy_and_top_p_small_is_greedy(model):
    greedy = generate(model, PROMPTS, 8)
    rng = np.random.default_rng(0)
    assert generate(model, PROMPTS, 8, temperature=1.5, top_k=1, rng=rng) == greedy
    assert generate(model, PROMPTS, 8, temperature=1.5, top_p=1e-6, rng=rng) == greedy


def test_sampling_respects_top_k_support():
    from sft_sweep.nn.generate import _choose
    logits = np.log(np.array([[0.5, 0.3, 0.15, 0.05]] * 4000))
    rng = np.random.default_rng(0)
    picks = _choose(logits, 1.0, 2, 1.0, rng)
    assert set(picks.tolist()) == {0, 1}
    assert abs((picks == 0).mean() - 0.625) < 0.03
    picks = _choose(logits, 1.0, 0, 0.7, rng)            # nucleus: {0, 1} reach 0.8 >= 0.7
    assert set(picks.tolist()) == {0, 1}
    picks = _choose(logits, 1.0, 0, 1.0, rng)
    assert abs((picks == 3).mean() - 0.05) < 0.015


def _staggered_stops(model, prompts, n=12):
    """Stop ids that end the rows of ``prompts`` after different numbers of tokens."""
    free = generate(model, prompts, n)
    return sorted({row[k % len(row)] for k, row in enumerate(free)})


@pytest.mark.parametrize("threads", [1, 2])
def test_rows_that_finish_leave_the_batch_without_changing_any_row(model, threads):
    # 40 rows (two shards with 2 threads) stopping at different steps: finished rows leave the
    # cache as the batch shrinks, and every row's tokens equal those of its prompt alone.
    rng = np.random.default_rng(7)
    prompts = [list(rng.integers(0, 256, int(rng.integers(1, 12)))) for _ in range(40)]
    stops = _staggered_stops(model, prompts)
    model.set_threads(threads)
    try:
        batched = generate(model, prompts, 12, stop_ids=stops)
    finally:
        model.set_threads(1)
    lengths = {len(o) for o in batched}
    assert len(lengths) > 3, "the rows must finish at different steps for this test to mean anything"
    assert batched == [generate(model, [p], 12, stop_ids=stops)[0] for p in prompts]
    assert batched == generate(model, prompts, 12, stop_ids=stops, use_cache=False)


def test_sampling_with_rows_leaving_equals_recompute(model):
    rng = np.random.default_rng(8)
    prompts = [list(rng.integers(0, 256, int(rng.integers(1, 12)))) for _ in range(24)]
    stops = _staggered_stops(model, prompts)
    kw = dict(temperature=0.8, top_k=30, stop_ids=stops)
    a = generate(model, prompts, 12, rng=np.random.default_rng(5), **kw)
    b = generate(model, prompts, 12, rng=np.random.default_rng(5), use_cache=False, **kw)
    assert a == b and len({len(o) for o in a}) > 3
