"""Batches for the trainer: shuffled per (seed, epoch), padded or packed.

An example of L ids gives L-1 positions: inputs ``ids[:-1]``, targets ``ids[1:]``, mask
``mask[1:]``. So a target is never the first id of another example, and packing needs no
extra masking at boundaries: attention must stay inside a segment (``segment_ids``) and
positions restart at 0 in each segment (``positions``).
"""

from __future__ import annotations

import bisect
import operator
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import overload

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
                 drop_last: bool = False) -> tuple[Batches, dict]:
    """Shuffle (deterministically per ``(seed, epoch)``) and batch.

    Padded (``pack=False``): ``batch_size`` examples per batch, padded to the longest in the
    batch with ``pad_id`` (mask 0). Packed (``pack=True``): examples are placed, in shuffled
    order, into rows of ``seq_len`` positions by best fit (the fullest row that still has
    room), rows are padded to ``seq_len``, and ``batch_size`` rows make a batch.
    The last batch may be smaller unless ``drop_last``.

    The batches come as :class:`Batches`, each built when asked for. Report (from the examples'
    lengths and masks, no batch built): ``n_batches``, ``n_examples``, ``n_positions`` (B*T
    summed), ``n_tokens`` (real positions), ``n_trained_tokens`` (mask sum), ``padding_waste``
    (1 - tokens / positions) and, when packing, ``packing_efficiency`` (tokens / positions) and
    ``n_rows``.
    """
    if batch_size < 1:
        raise ConfigError(f"batch_size must be >= 1, got {batch_size}")
    _check(examples, seq_len)
    rng = np.random.default_rng([int(seed), int(epoch), 0xBA7C])
    order = rng.permutation(len(examples))
    if pack:
        rows = _best_fit([len(examples[i]) - 1 for i in order], seq_len)
        # the rows as one array of example indices and where each row starts in it
        placed = order[np.fromiter((j for row in rows for j in row), dtype=np.int64, count=len(order))]
        bounds = np.cumsum([0] + [len(row) for row in rows], dtype=np.int64)
    else:
        placed, bounds = order, np.arange(len(order) + 1, dtype=np.int64)  # a row per example
    n_rows = len(bounds) - 1
    n_batches = n_rows // batch_size if drop_last else -(-n_rows // batch_size)
    batches = Batches(examples, placed, bounds, n_batches, batch_size, seq_len if pack else None, pad_id)

    used_rows = min(n_batches * batch_size, n_rows)
    used = placed[: bounds[used_rows]]
    lengths = np.array([len(examples[i]) - 1 for i in used], dtype=np.int64)
    n_tokens = int(lengths.sum())
    if pack:
        n_positions = used_rows * seq_len
    elif len(lengths):  # each batch is as wide as its longest example
        starts = np.arange(0, len(lengths), batch_size)
        rows_per_batch = np.minimum(batch_size, len(lengths) - starts)
        n_positions = int((np.maximum.reduceat(lengths, starts) * rows_per_batch).sum())
    else:
        n_positions = 0
    report = {
        "n_batches": n_batches,
        "n_examples": len(used),
        "n_positions": int(n_positions),
        "n_tokens": n_tokens,
        "n_trained_tokens": int(sum(int(examples[i].mask[1:].sum()) for i in used)),
        "padding_waste": (1.0 - n_tokens / n_positions) if n_positions else 0.0,
        "pack": bool(pack),
    }
    if pack:
        report["packing_efficiency"] = (n_tokens / n_positions) if n_positions else 0.0
        report["n_rows"] = used_rows
    return batches, report


class Batches(Sequence[Batch]):
    """An epoch's batches, each built when asked for (by index, slice or iteration).

    The arrays of a whole epoch take 12 bytes a position (20 packed), several times the
    examples themselves, while the trainer uses one accumulation group at a time; so only the
    placement is held: ``placed`` lists example indices row after row, row r being
    ``placed[bounds[r]:bounds[r + 1]]`` (one example a row when padding), ``batch_size`` rows a
    batch. ``seq_len`` is the packed row width; None: padded to the batch's longest example.
    """

    def __init__(self, examples: list[Example], placed: np.ndarray, bounds: np.ndarray, n_batches: int,
                 batch_size: int, seq_len: int | None, pad_id: int) -> None:
        self.examples, self.placed, self.bounds = examples, placed, bounds
        self.n_batches, self.batch_size, self.seq_len, self.pad_id = n_batches, batch_size, seq_len, pad_id

    def __len__(self) -> int:
        return self.n_batches

    @overload
    def __getitem__(self, k: int) -> Batch: ...

    @overload
    def __getitem__(self, k: slice) -> list[Batch]: ...

    def __getitem__(self, k):
        if isinstance(k, slice):
            return [self._build(j) for j in range(*k.indices(self.n_batches))]
        k = operator.index(k)
        if k < 0:
            k += self.n_batches
        if not 0 <= k < self.n_batches:
            raise IndexError(f"batch {k} of {self.n_batches}")
        return self._build(k)

    def __iter__(self) -> Iterator[Batch]:
        return (self._build(k) for k in range(self.n_batches))

    def _build(self, k: int) -> Batch:
        first = k * self.batch_size
        last = min(first + self.batch_size, len(self.bounds) - 1)
        rows = [self.placed[self.bounds[r]:self.bounds[r + 1]] for r in range(first, last)]
        examples = self.examples
        if self.seq_len is None:
            idx = [row[0] for row in rows]
            T = max(len(examples[i]) - 1 for i in idx)
            ids = np.full((len(idx), T), self.pad_id, dtype=np.int32)
            tg = np.full((len(idx), T), self.pad_id, dtype=np.int32)
            m = np.zeros((len(idx), T), dtype=np.float32)
            for r, i in enumerate(idx):
                ex = examples[i]
                n = len(ex) - 1
                ids[r, :n] = ex.ids[:-1]
                tg[r, :n] = ex.ids[1:]
                m[r, :n] = ex.mask[1:]
            return Batch(ids, tg, m, None, len(idx))
        B, T = len(rows), self.seq_len
        ids = np.full((B, T), self.pad_id, dtype=np.int32)
        tg = np.full((B, T), self.pad_id, dtype=np.int32)
        m = np.zeros((B, T), dtype=np.float32)
        seg = np.zeros((B, T), dtype=np.int32)
        pos = np.zeros((B, T), dtype=np.int32)
        n_ex = 0
        for r, row in enumerate(rows):
            p = 0
            for j, i in enumerate(row):
                ex = examples[i]
                n = len(ex) - 1
                ids[r, p:p + n] = ex.ids[:-1]
                tg[r, p:p + n] = ex.ids[1:]
                m[r, p:p + n] = ex.mask[1:]
                seg[r, p:p + n] = j + 1
                pos[r, p:p + n] = np.arange(n)
                p += n
                n_ex += 1
        return Batch(ids, tg, m, seg, n_ex, pos)


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
