"""raw_nats_per_byte_se: the held-out text loss per byte carries its standard error over the
windows (the ratio estimator), so that bases with different tokenizers meet under the noise
standard."""

from __future__ import annotations

import numpy as np
import pytest

from sft_sweep.data.prepare import join_docs
from sft_sweep.data.templates import get_template
from sft_sweep.nn import GPT, GPTConfig
from sft_sweep.tokenizer import ByteTokenizer
from sft_sweep.train.evaluate import Evaluator


def _evaluator(windows: int) -> Evaluator:
    t = ByteTokenizer()
    stream = join_docs(["The capital of Varnia is Ostrel. ünïcode ✓", "Another document, short."] * 8, t)
    return Evaluator(template=get_template("chatml", t), val_examples=[], heldout_tokens=stream, eval_items=[],
                     probe_items=[], follow_prompts=[], block_size=16, max_items=10, max_new_tokens=4,
                     raw_windows=windows, batch_size=4)


def test_standard_error_of_the_ratio_over_windows():
    ev = _evaluator(6)
    model = GPT(GPTConfig(n_layer=1, n_head=2, n_embd=16, n_mlp=32, block_size=16, vocab_size=260), seed=0)
    metrics, _ = ev.evaluate(model)
    s = np.asarray(ev._raw_sums, dtype=float)
    b = np.asarray([int(ev.tok.byte_lengths[w[1:]].sum()) for w in ev.raw], dtype=float)
    r = s.sum() / b.sum()
    assert metrics["raw_nats_per_byte"] == pytest.approx(r)
    n = len(s)
    assert n == 6
    want = np.sqrt(((s - r * b) ** 2).sum() / (n * (n - 1))) / b.mean()
    assert metrics["raw_nats_per_byte_se"] == pytest.approx(want) and 0 < want < r


def test_absent_with_one_window():
    ev = _evaluator(1)
    model = GPT(GPTConfig(n_layer=1, n_head=2, n_embd=16, n_mlp=32, block_size=16, vocab_size=260), seed=0)
    metrics, _ = ev.evaluate(model)
    assert "raw_nats_per_byte" in metrics and "raw_nats_per_byte_se" not in metrics
