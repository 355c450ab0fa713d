"""The noise standard: seeds first, else per-item binomial intervals, else no estimate."""

from __future__ import annotations

import math

import pytest

from analysis.noise import ITEMS, NONE, SEEDS, effect, items_column, judge, newcombe, wilson


def test_wilson_matches_the_textbook_values():
    lo, hi = wilson(0, 10)
    assert lo == 0.0 and hi == pytest.approx(0.2775, abs=1e-3)
    lo, hi = wilson(5, 10)
    assert (lo, hi) == (pytest.approx(0.2366, abs=1e-3), pytest.approx(0.7634, abs=1e-3))
    assert all(math.isnan(v) for v in wilson(0, 0))


def test_newcombe_matches_the_published_example():
    # Newcombe (1998), example (a): 56/70 vs 48/80 -> difference 0.2, interval 0.0524 to 0.3339
    d, lo, hi = newcombe(48, 80, 56, 70)
    assert d == pytest.approx(0.2) and lo == pytest.approx(0.0524, abs=2e-3) and hi == pytest.approx(0.3339, abs=2e-3)


@pytest.mark.parametrize("a, b, items, source, call", [
    # seeds: replicates in both groups decide, whatever the item counts
    ([0.10, 0.11, 0.09], [0.50, 0.51, 0.49], None, SEEDS, True),
    ([0.1, 0.3, 0.5], [0.2, 0.4, 0.6], None, SEEDS, None),          # wide interval: cannot tell
    ([0.50, 0.501, 0.499], [0.501, 0.50, 0.502], None, SEEDS, False),  # tight around 0: no effect
    # one job per group: the items each job scored give the interval
    ([0.0], [0.9], 100, ITEMS, True),
    ([0.40], [0.45], 20, ITEMS, None),                              # 5 points on 20 items is noise
    ([0.50], [0.50], 100000, ITEMS, False),
    # one job per group and no item counts: no estimate, never a call
    ([0.0], [0.9], None, NONE, None),
    ([3.1], [-0.9], None, NONE, None),
])
def test_effect_source_and_call(a, b, items, source, call):
    ia = None if items is None else [items] * len(a)
    ib = None if items is None else [items] * len(b)
    e = effect(a, b, items_a=ia, items_b=ib)
    assert e.source == source
    assert judge(e, 0.02) is call
    assert e.diff == pytest.approx(sum(b) / len(b) - sum(a) / len(a))


def test_a_missing_count_means_no_item_estimate():
    assert effect([0.1], [0.9], items_a=[100], items_b=[None]).source == NONE
    assert effect([0.1], [0.9], items_a=[100], items_b=[0]).source == NONE


def test_item_columns_only_for_shares_of_items():
    assert items_column("final_follow_rate") == "items_follow"
    assert items_column("base_knowledge_mc_acc") == "items_knowledge"
    assert items_column("forgetting_pct") is None and items_column("final_response_loss") is None


def test_per_job_intervals_give_a_normal_interval_of_the_difference():
    from analysis.noise import ITEMS, effect

    # one job each, standard errors 3 and 4: the difference's standard error is 5
    e = effect([10.0], [30.0], se_a=[3.0], se_b=[4.0])
    assert e.source == ITEMS and e.diff == 20.0
    assert e.low == pytest.approx(20.0 - 1.959964 * 5) and e.high == pytest.approx(20.0 + 1.959964 * 5)
    # two jobs in a group average their errors: sqrt(3^2 + 4^2) / 2
    e2 = effect([10.0, 12.0], [30.0], se_a=[3.0, 4.0], se_b=[0.0])
    assert e2.high - e2.diff == pytest.approx(1.959964 * 2.5)
    assert effect([10.0], [30.0], se_a=[3.0], se_b=[None]).source == "none"
