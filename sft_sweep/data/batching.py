"""Batches for the trainer: shuffled per (seed, epoch), padded or packed.

An example of L ids gives L-1 positions: inputs ``ids[:-1]``, targets ``ids[1:]``, mask
``mask[1:]``. So a target is never the first id of another example, and packing needs no
extra masking at boundaries: attention must stay inside a segment (``segment_ids``) and
positions restart at 0 in each segment (``positions``).
"""

from __future__ import annotations

import bisect
from dataclasses import dataclass

import numpy as np

from ..errors import ConfigError
from ..tokenizer import ByteTokenizer
from .examples import Example

PAD_ID = ByteTokenizer().pad_id


@dataclass
class Batch:
    ids: np.ndarray                 # (B, T) int32 inputs
    targets: np.ndarray             # (B, T) int32
    mask: np.ndarray                # (B, T) float32; 0 on padding and on untrained targets
    segment_ids: np.ndarray | None  # (B, T) int32 when packing: 1, 2, ... per example, 0 on padding
    n_examples: int
    positions: np.ndarray | None = None  # (B, T) int32 when packing: position within the example

    @property
    def shape(self) -> tuple[int, int]:
        return self.ids.shape  # type: ignore[return-value]


def _check(examples: list[Example], seq_len: int) -> None:
    if seq_len < 1:
        raise ConfigError(f"seq_len must be >= 1, got {seq_len}")
    for i, ex in enumerate(examples):
        if len(ex) < 2:
            raise ConfigError(f"example {i} has {len(ex)} ids; an example needs at least 2")
        if len(ex) - 1 > seq_len:
            raise ConfigError(
                f"example {i} has {len(ex)} ids = {len(ex) - 1} positions > seq_len {seq_len}; "
                f"apply fit_length(examples, max_tokens=seq_len + 1) first")


def make_batches(examples: list[Example], batch_size: int, seq_len: int, *, pack: bool = False,
                 seed: int = 0, epoch: int = 0, pad_id: int = PAD_ID,
                 drop_last: bool = False) -> tuple[list[Batch], dict]:
    """Shuffle (deterministically per ``(seed, epoch)``) and batch.

    Padded (``pack=False``): ``batch_size`` examples per batch, padded to the longest in the
    batch with ``pad_id`` (mask 0). Packed (``pack=True``): examples are placed, in shuffled
    order, into rows of ``seq_len`` positions by best fit (the fullest row that still has
    room), rows are padded to ``seq_len``, and ``batch_size`` rows make a batch.
    The last batch may be smaller unless ``drop_last``.

    Report: ``n_batches``, ``n_examples``, ``n_positions`` (B*T summed), ``n_tokens``
    (real positions), ``n_trained_tokens`` (mask sum), ``padding_waste`` (1 - tokens /
    positions) and, when packing, ``packing_efficiency`` (tokens / positions) and ``n_rows``.
    """
    if batch_size < 1:
        raise ConfigError(f"batch_size must be >= 1, got {batch_size}")
    _check(examples, seq_len)
    rng = np.random.default_rng([int(seed), int(epoch), 0xBA7C])
    order = rng.permutation(len(examples))
    batches: list[Batch] = []
    if not pack:
        for start in range(0, len(order), batch_size):
            idx = order[start:start + batch_size]
            if drop_last and len(idx) < batch_size:
                break
            T = max(len(examples[i]) - 1 for i in idx)
            ids = np.full((len(idx), T), pad_id, dtype=np.int32)
            tg = np.full((len(idx), T), pad_id, dtype=np.int32)
            m = np.zeros((len(idx), T), dtype=np.float32)
            for r, i in enumerate(idx):
                ex = examples[i]
                n = len(ex) - 1
                ids[r, :n] = ex.ids[:-1]
                tg[r, :n] = ex.ids[1:]
                m[r, :n] = ex.mask[1:]
            batches.append(Batch(ids, tg, m, None, len(idx)))
    else:
        rows = _best_fit([len(examples[i]) - 1 for i in order], seq_len)
        rows = [[int(order[j]) for j in row] for row in rows]
        for start in range(0, len(rows), batch_size):
            chunk = rows[start:start + batch_size]
            if drop_last and len(chunk) < batch_size:
                break
            B, T = len(chunk), seq_len
            ids = np.full((B, T), pad_id, dtype=np.int32)
            tg = np.full((B, T), pad_id, dtype=np.int32)
            m = np.zeros((B, T), dtype=np.float32)
            seg = np.zeros((B, T), dtype=np.int32)
            pos = np.zeros((B, T), dtype=np.int32)
            n_ex = 0
            for r, row in enumerate(chunk):
                p = 0
                for k, i in enumerate(row):
                    ex = examples[i]
                    n = len(ex) - 1
                    ids[r, p:p + n] = ex.ids[:-1]
                    tg[r, p:p + n] = ex.ids[1:]
                    m[r, p:p + n] = ex.mask[1:]
                    seg[r, p:p + n] = k + 1
                    pos[r, p:p + n] = np.arange(n)
                    p += n
                    n_ex += 1
            batches.append(Batch(ids, tg, m, seg, n_ex, pos))
    n_positions = sum(b.ids.size for b in batches)
    if pack:
        n_tokens = sum(int((b.segment_ids > 0).sum()) for b in batches)
    else:
        used = order[: sum(b.n_examples for b in batches)]
        n_tokens = int(sum(len(examples[i]) - 1 for i in used))
    report = {
        "n_batches": len(batches),
        "n_examples": int(sum(b.n_examples for b in batches)),
        "n_positions": int(n_positions),
        "n_tokens": int(n_tokens),
        "n_trained_tokens": int(sum(float(b.mask.sum()) for b in batches)),
        "padding_waste": (1.0 - n_tokens / n_positions) if n_positions else 0.0,
        "pack": bool(pack),
    }
    if pack:
        report["packing_efficiency"] = (n_tokens / n_positions) if n_positions else 0.0
        report["n_rows"] = int(sum(b.ids.shape[0] for b in batches))
    return batches, report


def _best_fit(lengths: list[int], capacity: int) -> list[list[int]]:
    """Best-fit bin packing in the given order: each item goes to the open row with the least
    room that still fits it, else to a new row. Returns rows as lists of item positions."""
    rows: list[list[int]] = []
    free: list[tuple[int, int]] = []  # sorted (room left, row index)
    for j, n in enumerate(lengths):
        k = bisect.bisect_left(free, (n, -1))
        if k < len(free):
            room, r = free.pop(k)
            rows[r].append(j)
            room -= n
        else:
            r = len(rows)
            rows.append([j])
            room = capacity - n
        if room > 0:
            bisect.insort(free, (room, r))
    return rows
