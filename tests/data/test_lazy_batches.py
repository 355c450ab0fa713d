"""make_batches builds a batch's arrays only when asked: an epoch of padded arrays (12 bytes a
position) is never held at once, and every batch and report number is that of building them all."""

from __future__ import annotations

import tracemalloc

import numpy as np
import pytest

from sft_sweep.data import Example, make_batches
from sft_sweep.data.batching import _best_fit

PAD = 259


def _examples(n: int, seed: int = 0, longest: int = 65) -> list[Example]:
    rng = np.random.default_rng(seed)
    out = []
    for i in range(n):
        L = int(rng.integers(2, longest + 1))
        mask = (rng.random(L) < 0.6).astype(np.uint8)
        out.append(Example(rng.integers(0, 256, L).astype(np.int32), mask))
    return out


def _reference(examples, batch_size, seq_len, *, pack, seed, epoch, drop_last):
    """Every batch built at once, straightforwardly: (list of array tuples, report)."""
    order = np.random.default_rng([seed, epoch, 0xBA7C]).permutation(len(examples))
    if pack:
        rows = [[int(order[j]) for j in row]
                for row in _best_fit([len(examples[i]) - 1 for i in order], seq_len)]
        groups = [rows[s:s + batch_size] for s in range(0, len(rows), batch_size)]
    else:
        groups = [[[int(i)] for i in order[s:s + batch_size]] for s in range(0, len(order), batch_size)]
    if drop_last and groups and len(groups[-1]) < batch_size:
        groups.pop()
    out, n_tokens, n_trained, n_examples, n_positions = [], 0, 0, 0, 0
    for rows in groups:
        T = seq_len if pack else max(len(examples[r[0]]) - 1 for r in rows)
        ids = np.full((len(rows), T), PAD, np.int32)
        tg = np.full((len(rows), T), PAD, np.int32)
        m = np.zeros((len(rows), T), np.float32)
        seg = np.zeros((len(rows), T), np.int32)
        pos = np.zeros((len(rows), T), np.int32)
        for r, row in enumerate(rows):
            p = 0
            for k, i in enumerate(row):
                e = examples[i]
                n = len(e) - 1
                ids[r, p:p + n], tg[r, p:p + n], m[r, p:p + n] = e.ids[:-1], e.ids[1:], e.mask[1:]
                seg[r, p:p + n], pos[r, p:p + n] = k + 1, np.arange(n)
                p += n
                n_tokens += n
                n_trained += int(e.mask[1:].sum())
                n_examples += 1
        n_positions += ids.size
        out.append((ids, tg, m, seg, pos, sum(len(r) for r in rows)))
    report = {"n_batches": len(out), "n_examples": n_examples, "n_positions": n_positions,
              "n_tokens": n_tokens, "n_trained_tokens": n_trained,
              "padding_waste": (1.0 - n_tokens / n_positions) if n_positions else 0.0, "pack": pack}
    if pack:
        report["packing_efficiency"] = (n_tokens / n_positions) if n_positions else 0.0
        report["n_rows"] = sum(r[0].shape[0] for r in out)
    return out, report


def _same(batch, ref, pack):
    ids, tg, m, seg, pos, n_ex = ref
    assert batch.n_examples == n_ex
    for got, want in ((batch.ids, ids), (batch.targets, tg), (batch.mask, m)):
        assert got.dtype == want.dtype and got.shape == want.shape and np.array_equal(got, want)
    if pack:
        assert np.array_equal(batch.segment_ids, seg) and batch.segment_ids.dtype == np.int32
        assert np.array_equal(batch.positions, pos) and batch.positions.dtype == np.int32
    else:
        assert batch.segment_ids is None and batch.positions is None


@pytest.mark.parametrize("pack", [False, True])
@pytest.mark.parametrize("drop_last", [False, True])
@pytest.mark.parametrize("n,batch_size", [(203, 8), (7, 3), (1, 4), (0, 2), (64, 4)])
def test_each_batch_and_the_report_are_those_of_building_all(pack, drop_last, n, batch_size):
    exs = _examples(n, seed=n)
    batches, rep = make_batches(exs, batch_size, 64, pack=pack, seed=5, epoch=2, pad_id=PAD,
                                drop_last=drop_last)
    ref, ref_rep = _reference(exs, batch_size, 64, pack=pack, seed=5, epoch=2, drop_last=drop_last)
    assert rep == ref_rep
    assert len(batches) == len(ref) == rep["n_batches"]
    for k in range(len(ref)):
        _same(batches[k], ref[k], pack)
    for b, r in zip(batches, ref, strict=True):  # iteration
        _same(b, r, pack)
    for start in range(0, len(ref), 3):  # slices, as the loop takes its accumulation groups
        group = batches[start:start + 3]
        assert len(group) == len(ref[start:start + 3])
        for b, r in zip(group, ref[start:start + 3]):
            _same(b, r, pack)
    if ref:
        _same(batches[-1], ref[-1], pack)
    with pytest.raises(IndexError):
        batches[len(ref)]


@pytest.mark.parametrize("pack", [False, True])
def test_making_an_epoch_of_batches_builds_no_arrays(pack):
    exs = _examples(20_000, seed=1)
    # every batch built: 12 bytes a padded position (ids, targets, mask; 20 when packing)
    built = 20_000 * 64 * 12
    tracemalloc.start()
    try:
        batches, rep = make_batches(exs, 8, 64, pack=pack, seed=0, pad_id=PAD)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert rep["n_examples"] == 20_000 and len(batches) == rep["n_batches"]
    # what stays is the placement (the best-fit rows are lists of ints while they are made)
    assert peak < built / 4, f"making the batches peaked at {peak} bytes"
