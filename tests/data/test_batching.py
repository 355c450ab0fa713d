"""Length policy, replay / dataset mixing and batching."""

from __future__ import annotations

import numpy as np
import pytest

from sft_sweep.data import Example, fit_length, make_batches, mix_datasets, mix_replay
from sft_sweep.errors import ConfigError


def ex(n, trained_from=None, source="sft", start=0):
    ids = np.arange(start, start + n, dtype=np.int32) % 256
    mask = np.zeros(n, dtype=np.uint8)
    if trained_from is not None:
        mask[trained_from:] = 1
    return Example(ids, mask, source)


def test_fit_length_counts_exact():
    examples = [ex(10, 5), ex(20, 5), ex(20, 15), ex(8), ex(30, 2)]
    kept, rep = fit_length(examples, 12, "truncate")
    # 10 fits; 20/5 truncated; 20/15 truncated -> nothing trained -> dropped; 8 untrained; 30/2 truncated
    assert rep == {"n_in": 5, "n_kept": 3, "truncated": 2, "dropped_too_long": 0,
                   "dropped_no_trained_tokens": 2}
    assert [len(e) for e in kept] == [10, 12, 12]
    kept, rep = fit_length(examples, 12, "drop")
    assert rep["dropped_too_long"] == 3 and rep["dropped_no_trained_tokens"] == 1
    assert rep["n_kept"] == 1 and rep["truncated"] == 0
    with pytest.raises(ConfigError):
        fit_length(examples, 12, "squeeze")


@pytest.mark.parametrize("n,r,n_raw", [(95, 0.05, 5), (100, 0.0, 0), (90, 0.1, 10),
                                       (50, 0.5, 50), (7, 0.2, 2)])
def test_mix_replay_ratio_exact(n, r, n_raw):
    sft = [ex(12, 6) for _ in range(n)]
    docs = [np.arange(100, dtype=np.int32) % 256, np.arange(50, dtype=np.int32)]
    out, rep = mix_replay(sft, docs, r, window=17, seed=1)
    assert rep["n_sft"] == n and rep["n_replay"] == n_raw == round(r * n / (1 - r))
    assert rep["achieved_ratio"] == pytest.approx(n_raw / (n + n_raw))
    raw = [e for e in out if e.source == "replay"]
    assert len(raw) == n_raw and len(out) == n + n_raw
    for e in raw:
        assert len(e) == 17 and e.mask[0] == 0 and e.mask[1:].all()
    if n_raw:
        again, _ = mix_replay(sft, docs, r, window=17, seed=1)
        assert all((a.ids == b.ids).all() for a, b in zip(out, again))
    with pytest.raises(ConfigError):
        mix_replay(sft, docs, 1.0, window=17)


def test_mix_datasets_proportions_exact():
    a = [ex(5, 1, start=i) for i in range(30)]
    b = [ex(6, 1, start=i) for i in range(10)]
    out, rep = mix_datasets({"a": a, "b": b}, {"a": 1.0, "b": 3.0}, seed=0)
    assert rep["total"] == 40
    assert rep["datasets"]["a"]["n"] == 10 and rep["datasets"]["b"]["n"] == 30
    assert rep["datasets"]["b"]["repeats"] == 3.0
    assert sum(e.source == "b" for e in out) == 30 and sum(e.source == "a" for e in out) == 10
    out, rep = mix_datasets({"a": a, "b": b}, {"a": 1.0, "b": 1.0}, seed=0, total=7)
    assert {k: v["n"] for k, v in rep["datasets"].items()} in ({"a": 4, "b": 3}, {"a": 3, "b": 4})
    out, rep = mix_datasets({"a": a, "b": b}, {"a": 1.0, "b": 0.0}, seed=0)
    assert len(out) == 30 and "b" not in rep["datasets"]
    with pytest.raises(ConfigError):
        mix_datasets({"a": a}, {"c": 1.0})


def examples_set():
    rng = np.random.default_rng(0)
    return [ex(int(n), 3, start=i) for i, n in enumerate(rng.integers(4, 40, size=37))]


def test_padded_batches():
    exs = examples_set()
    batches, rep = make_batches(exs, 8, 64, seed=3, epoch=0)
    assert len(batches) == 5 and rep["n_examples"] == 37
    seen = []
    for b in batches:
        B, T = b.ids.shape
        assert b.targets.shape == b.mask.shape == (B, T) and b.segment_ids is None
        assert b.ids.dtype == np.int32 and b.mask.dtype == np.float32
        for r in range(B):
            n = int((b.ids[r] != 259).sum())
            seen.append((n, b.ids[r, 0]))
            assert T == max(int((bb != 259).sum()) for bb in b.ids)
            assert (b.mask[r, n:] == 0).all() and (b.targets[r, n:] == 259).all()
            assert (b.targets[r, : n - 1] == b.ids[r, 1:n]).all()
    assert sorted(seen) == sorted((len(e) - 1, e.ids[0]) for e in exs)
    assert rep["n_tokens"] == sum(len(e) - 1 for e in exs)
    assert rep["n_trained_tokens"] == sum(int(e.mask[1:].sum()) for e in exs)
    assert rep["padding_waste"] == pytest.approx(1 - rep["n_tokens"] / rep["n_positions"])
    same, _ = make_batches(exs, 8, 64, seed=3, epoch=0)
    other, _ = make_batches(exs, 8, 64, seed=3, epoch=1)
    assert all((a.ids == b.ids).all() for a, b in zip(batches, same))
    assert any(a.ids.shape != b.ids.shape or (a.ids != b.ids).any() for a, b in zip(batches, other))
    with pytest.raises(ConfigError, match="fit_length"):
        make_batches([ex(70, 3)], 2, 64)


def test_packed_batches():
    exs = examples_set()
    batches, rep = make_batches(exs, 4, 64, pack=True, seed=0)
    pieces = []
    for b in batches:
        assert b.ids.shape[1] == 64 and b.segment_ids is not None and b.positions is not None
        for r in range(b.ids.shape[0]):
            seg = b.segment_ids[r]
            for s in set(seg.tolist()) - {0}:
                where = np.flatnonzero(seg == s)
                assert (np.diff(where) == 1).all()
                assert (b.positions[r, where] == np.arange(len(where))).all()
                pieces.append((len(where), int(b.ids[r, where[0]])))
                # targets continue the same example: the next id of the input
                assert (b.targets[r, where[:-1]] == b.ids[r, where[1:]]).all()
            assert (b.mask[r][seg == 0] == 0).all()
    assert sorted(pieces) == sorted((len(e) - 1, int(e.ids[0])) for e in exs)
    assert rep["n_examples"] == 37
    assert rep["packing_efficiency"] == pytest.approx(rep["n_tokens"] / rep["n_positions"])
    total = sum(len(e) - 1 for e in exs)
    assert rep["n_tokens"] == total and rep["n_rows"] <= -(-total // 64) + 2
    assert rep["n_trained_tokens"] == sum(int(e.mask[1:].sum()) for e in exs)
