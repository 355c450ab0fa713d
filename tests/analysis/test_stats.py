"""Statistics helpers: confidence intervals, comparisons, Pareto front."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest

from analysis import pareto_front
from analysis.stats import aggregate, mean_ci, pareto_mask, spearman, t_quantile_975


def test_mean_ci_matches_t_interval():
    m = mean_ci([1.0, 2.0, 3.0])
    assert m.mean == 2.0 and m.n == 3
    assert m.half == pytest.approx(4.303 * 1.0 / math.sqrt(3))
    one = mean_ci([5.0, float("nan"), None])
    assert one.n == 1 and one.mean == 5.0 and math.isnan(one.half)
    assert mean_ci([]).n == 0
    assert t_quantile_975(1000) == 1.96 and t_quantile_975(35) == t_quantile_975(30)


def test_aggregate_groups():
    df = pd.DataFrame({"lr": [1, 1, 2, 2, 2], "y": [1.0, 3.0, 5.0, 5.0, np.nan]})
    agg = aggregate(df, ["lr"], "y").set_index("lr")
    assert agg.loc[1, "mean"] == 2.0 and agg.loc[1, "n"] == 2
    assert agg.loc[2, "n"] == 2 and agg.loc[2, "ci"] == 0.0


def test_spearman():
    assert spearman([1, 2, 3, 4], [10, 20, 30, 40]) == pytest.approx(1.0)
    assert spearman([1, 2, 3, 4], [4, 3, 2, 1]) == pytest.approx(-1.0)
    assert math.isnan(spearman([1, 2], [1, 2]))


def test_pareto_front_known_answer():
    df = pd.DataFrame({
        "job": list("abcdefg"),
        "follow": [0.9, 0.8, 0.95, 0.5, 0.9, np.nan, 0.95],
        "forget": [10.0, 5.0, 20.0, 6.0, 12.0, 1.0, 20.0],
    })
    front = pareto_front(df, maximize=["follow"], minimize=["forget"])
    # d is beaten by b, e by a; f has no follow rate; c and g tie (both stay)
    assert list(front["job"]) == ["a", "b", "c", "g"]
    mask = pareto_mask(df, maximize=["follow"], minimize=["forget"])
    assert mask.index.equals(df.index) and mask.sum() == 4


def test_pareto_front_errors():
    df = pd.DataFrame({"a": [1.0]})
    with pytest.raises(ValueError):
        pareto_front(df)
    with pytest.raises(KeyError):
        pareto_front(df, maximize=["missing"])


def test_strata_keys_are_dicts_and_no_columns_is_one_group():
    import pandas as pd

    from analysis.stats import strata

    df = pd.DataFrame({"a": [1, 1, 2], "b": ["x", "y", "x"], "v": [1.0, 2.0, 3.0]})
    assert [(k, len(p)) for k, p in strata(df, [])] == [({}, 3)]
    assert [k for k, _ in strata(df, ["a"])] == [{"a": 1}, {"a": 2}]
    assert [k for k, _ in strata(df, ["a", "b"])] == [{"a": 1, "b": "x"}, {"a": 1, "b": "y"}, {"a": 2, "b": "x"}]


def test_every_block_kind_has_a_renderer_in_both_formats():
    from analysis.render import HTML, MARKDOWN, style_sheet

    assert set(MARKDOWN) == set(HTML)
    assert ".finding" in style_sheet()
