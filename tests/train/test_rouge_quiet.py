"""Scoring ROUGE-L prints nothing in a job's log: rouge-score's own INFO line stays out of it."""

import logging

import pytest

from sft_sweep.train.freeform import rouge_l_scores


def test_rouge_scoring_adds_no_line_to_the_log(caplog):
    pytest.importorskip("rouge_score")
    with caplog.at_level(logging.INFO):
        scores = rouge_l_scores(["the cat sat"], ["the cat sat down"])
    assert scores is not None and 0 < scores[0] < 1
    assert not [r for r in caplog.records if "tokenizer" in r.getMessage()], caplog.text
