"""How the SFT loss weighs its tokens (``train.loss_norm``).

The model's loss is ``sum(ce * w) / normalizer`` for any float weights ``w``; a normalisation
is a choice of ``w`` and ``normalizer`` over one optimiser step's micro-batches (the group):

- ``tokens`` (default): ``w`` is the 0/1 trained-token mask, ``normalizer`` the group's count
  of trained tokens. Every trained token weighs the same; a sequence weighs as much as it has
  trained tokens.
- ``sequence``: each trained token of a sequence weighs ``1 / n_trained(sequence)``,
  ``normalizer`` is the number of sequences with a trained token. Every sequence weighs the
  same, whatever its response length.
- ``length``: each trained token weighs ``1 / length(sequence)`` (every position of the
  sequence, prompt included), ``normalizer`` as for ``sequence``. A sequence with a long
  prompt gives its response tokens less weight: the "divide by the sequence length" recipe.

A sequence is a row of a padded batch (its positions are those not holding the pad id) or a
segment of a packed row. Replay windows are sequences like any other (every position trained).
"""

from __future__ import annotations

from typing import Sequence

import numpy as np

from .batching import Batch

LOSS_NORMS = ("tokens", "sequence", "length")


def _sequence_ids(b: Batch, pad_id: int) -> np.ndarray:
    """(B, T) ints: 0 on padding, a positive id per sequence, unique within the batch."""
    B, T = b.ids.shape
    if b.segment_ids is not None:
        seg = np.asarray(b.segment_ids, dtype=np.int64)
        return np.where(seg > 0, seg + np.arange(B, dtype=np.int64)[:, None] * (T + 1), 0)
    rows = np.broadcast_to(np.arange(1, B + 1, dtype=np.int64)[:, None], (B, T))
    return np.where(np.asarray(b.ids) != pad_id, rows, 0)


def group_weights(group: Sequence[Batch], loss_norm: str, pad_id: int) -> tuple[list[np.ndarray], float]:
    """Per-token weights for each micro-batch of ``group`` and the shared normalizer.

    Feeding ``(weights[i], normalizer)`` to ``loss_and_grads`` of each micro-batch and summing
    gives the loss (and gradient) of the whole group under ``loss_norm``.
    """
    if loss_norm == "tokens":
        return [b.mask for b in group], float(sum(float(b.mask.sum()) for b in group))
    if loss_norm not in LOSS_NORMS:
        raise ValueError(f"unknown loss_norm {loss_norm!r}; known: {list(LOSS_NORMS)}")
    weights, n_sequences = [], 0
    for b in group:
        mask = np.asarray(b.mask, dtype=np.float64)
        sid = _sequence_ids(b, pad_id).reshape(-1)
        flat = mask.reshape(-1)
        n_ids = int(sid.max()) + 1 if sid.size else 1
        trained = np.bincount(sid, weights=flat, minlength=n_ids)
        trained[0] = 0.0  # padding is no sequence
        if loss_norm == "sequence":
            denom = trained
        else:
            denom = np.bincount(sid, minlength=n_ids).astype(np.float64)
        live = trained > 0
        n_sequences += int(live[1:].sum())
        scale = np.zeros(n_ids)
        scale[live] = 1.0 / denom[live]
        weights.append((flat * scale[sid]).reshape(mask.shape))
    return weights, float(n_sequences)
