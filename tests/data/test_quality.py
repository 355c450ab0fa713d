"""Quality filters and exact deduplication: counts are exact on constructed inputs."""

from __future__ import annotations

import pytest

from sft_sweep.data import Conversation, QualityConfig, filter_quality
from sft_sweep.data.quality import quality_metrics
from sft_sweep.errors import ConfigError


def conv(user, answer, system=None):
    return Conversation.simple(user, answer, system=system)


def test_metrics():
    m = quality_metrics(conv("abcd", "one two one two"))
    assert m["response_chars"] == 15 and m["prompt_chars"] == 4
    assert m["response_to_prompt_ratio"] == pytest.approx(15 / 4)
    assert m["token_diversity"] == pytest.approx(0.5)
    m = quality_metrics(conv("q", "a", system="sys"))
    assert m["prompt_chars"] == len("sys\nq")


def test_each_rule_counted_exactly():
    data = [
        conv("question one", "a fine answer here"),            # kept
        conv("question two", ""),                               # too_short (min 3)
        conv("question three", "ab"),                           # too_short
        conv("q", "x" * 61),                                    # too_long (max 60)
        conv("a very long question " * 3, "short one"),         # low_ratio (< 0.2)
        conv("q4", "yes yes yes yes yes yes"),                  # low_diversity (1/6 < 0.5)
        conv("question one", "a fine answer here"),             # duplicate of #0
        conv("question one", "a fine answer here", system="s"),  # not a duplicate (system differs)
        conv("question five", "another good answer"),          # kept
        conv("question five", "another good answer"),          # duplicate
        conv("question five", "another good answer"),          # duplicate
    ]
    cfg = QualityConfig(min_response_chars=3, max_response_chars=60,
                        min_response_to_prompt_ratio=0.2, min_token_diversity=0.5, dedup=True)
    kept, rep = filter_quality(data, cfg)
    assert rep["removed"] == {"too_short": 2, "too_long": 1, "low_ratio": 1, "low_diversity": 1,
                              "duplicate": 3}
    assert rep["n_in"] == 11 and rep["n_kept"] == 3 == len(kept)
    assert [c.key() for c in kept] == [data[0].key(), data[7].key(), data[8].key()]
    # dedup off: the duplicates stay
    kept, rep = filter_quality(data, QualityConfig(min_response_chars=3, max_response_chars=60,
                                                   min_response_to_prompt_ratio=0.2,
                                                   min_token_diversity=0.5, dedup=False))
    assert rep["removed"]["duplicate"] == 0 and rep["n_kept"] == 6


def test_defaults_remove_only_empty_answers_and_duplicates():
    data = [conv("q", "a"), conv("q", ""), conv("q", "a"), conv("q2", "b" * 5000)]
    kept, rep = filter_quality(data)
    assert rep["removed"] == {"too_short": 1, "too_long": 0, "low_ratio": 0, "low_diversity": 0,
                              "duplicate": 1}
    assert len(kept) == 2


def test_bad_config():
    with pytest.raises(ConfigError):
        filter_quality([], QualityConfig(min_token_diversity=2.0))
