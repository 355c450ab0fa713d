"""Replay: fresh pre-training windows each epoch, an exact ratio, a report per epoch."""

from __future__ import annotations

import numpy as np
import pytest

from sft_sweep.data import Example, mix_replay
from sft_sweep.data.mixing import ReplayMix
from sft_sweep.data.prepare import PreparedData


def _sft(n: int) -> list[Example]:
    out = []
    for i in range(n):
        ids = np.arange(10, dtype=np.int32) + i
        mask = np.zeros(10, dtype=np.uint8)
        mask[6:] = 1
        out.append(Example(ids, mask, "sft"))
    return out


STREAM = np.arange(200_000, dtype=np.int32)  # every window identifies its offset


def _data(n: int) -> PreparedData:
    return PreparedData(template=None, pretrain_tokens=STREAM, heldout_tokens=STREAM[:100],
                        train_examples=_sft(n), val_examples=[], eval_items=[], probe_items=[],
                        follow_prompts=[])


def _windows(examples):
    return [tuple(e.ids.tolist()) for e in examples if e.source == "replay"]


def test_windows_differ_by_epoch_and_repeat_per_seed_and_epoch():
    mix = ReplayMix(_data(30), 0.5, 17, seed=3)
    e0, e1 = _windows(mix(0)), _windows(mix(1))
    assert len(e0) == len(e1) == 30
    assert not set(e0) & set(e1)  # fresh text each epoch
    assert _windows(ReplayMix(_data(30), 0.5, 17, seed=3)(1)) == e1  # a resumed job draws the same
    assert _windows(ReplayMix(_data(30), 0.5, 17, seed=4)(1)) != e1
    # every window is a contiguous slice of the stream, trained on all tokens but the first
    for e in mix(2):
        if e.source == "replay":
            s = int(e.ids[0])
            assert e.mask[0] == 0 and e.mask[1:].all() and len(e.ids) == 17
            assert (e.ids == STREAM[s:s + 17]).all()


@pytest.mark.parametrize("n, ratio, n_replay", [(30, 0.5, 30), (450, 0.5, 450), (450, 0.2, 112),
                                                 (100, 0.05, 5), (7, 0.1, 1), (10, 0.0, 0)])
def test_achieved_ratio_exact_per_epoch(n, ratio, n_replay):
    mix = ReplayMix(_data(n), ratio, 17, seed=0)
    rep = mix.report(3)
    assert [p["n_replay"] for p in rep["per_epoch"]] == [n_replay] * 3
    for e, p in enumerate(rep["per_epoch"]):
        exs = mix(e)
        assert sum(x.source == "replay" for x in exs) == n_replay and len(exs) == n + n_replay
        assert p["achieved_ratio"] == pytest.approx(n_replay / (n + n_replay), abs=0)
        assert p["epoch"] == e
    assert rep["achieved_ratio"] == pytest.approx(n_replay / (n + n_replay))
    assert abs(rep["achieved_ratio"] - ratio) <= 0.5 / (n + n_replay) + 1e-12


def test_token_share_is_reported():
    _, rep = mix_replay(_sft(10), STREAM, 0.5, 17, seed=0, epoch=0)
    # 10 SFT examples x 4 trained tokens; 10 windows x 16 trained tokens
    assert rep["sft_trained_tokens"] == 40 and rep["replay_tokens"] == 160
    assert rep["replay_token_fraction"] == pytest.approx(160 / 200)


def test_an_epoch_s_windows_are_drawn_once_however_often_asked(monkeypatch):
    from sft_sweep.data import mixing

    calls = []
    real = mixing.mix_replay
    monkeypatch.setattr(mixing, "mix_replay", lambda *a: calls.append(a[-1]) or real(*a))
    mix = ReplayMix(_data(30), 0.5, 17, seed=3)
    first = _windows(mix(0))
    assert _windows(mix(0)) == first and mix.report(1)["n_replay"] == 30
    assert calls == [0]
    mix(0).clear()  # a caller's list is its own
    assert _windows(mix(0)) == first
    # a job plans with epoch 0, trains every epoch, then counts epoch 0's examples: each drawn once
    for e in (1, 2, 0):
        mix(e)
    assert calls == [0, 1, 2]
