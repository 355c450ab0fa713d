"""Checks of the arrays a caller hands the GPT: shapes, integer ids, vocabulary and position
ranges. Each raises ``ValueError`` naming the argument and what is wrong with it."""

from __future__ import annotations

import numpy as np


def check_ids(ids, block_size: int, what: str = "ids") -> np.ndarray:
    a = np.asarray(ids)
    if a.ndim != 2:
        raise ValueError(f"{what} must be a 2-D (batch, time) array, got shape {a.shape}")
    if a.shape[0] == 0 or a.shape[1] == 0:
        raise ValueError(f"{what} must be non-empty, got shape {a.shape}")
    if a.dtype.kind not in "iu":
        if a.dtype.kind == "b" or not np.issubdtype(a.dtype, np.number):
            raise ValueError(f"{what} must be integers, got dtype {a.dtype}")
        if not np.all(np.isfinite(a)) or not np.all(a == np.round(a)):
            raise ValueError(f"{what} must be integers, got dtype {a.dtype} with fractions")
    if a.shape[1] > block_size:
        raise ValueError(
            f"sequence length {a.shape[1]} exceeds the model's block_size {block_size}")
    return a.astype(np.intp, copy=False)


def check_vocab(a: np.ndarray, vocab_size: int, what: str, where: np.ndarray | None = None) -> None:
    V = vocab_size
    vals = a if where is None else a[where]
    if vals.size and (vals.min() < 0 or vals.max() >= V):
        bad = vals[(vals < 0) | (vals >= V)][0]
        raise ValueError(f"{what} contains id {int(bad)} outside the vocabulary 0..{V - 1}")


def _integers_like_ids(values, shape, what: str) -> np.ndarray:
    a = np.asarray(values)
    if a.shape != shape:
        raise ValueError(f"{what} shape {a.shape} does not match ids shape {shape}")
    if a.dtype.kind not in "iu":
        raise ValueError(f"{what} must be integers, got dtype {a.dtype}")
    return a


def check_segments(segment_ids, shape) -> np.ndarray | None:
    if segment_ids is None:
        return None
    return _integers_like_ids(segment_ids, shape, "segment_ids")


def check_positions(positions, shape, block_size: int) -> np.ndarray | None:
    """Per-token position ids (packed rows restart at 0 per document), or None for
    the absolute positions 0..T-1."""
    if positions is None:
        return None
    a = _integers_like_ids(positions, shape, "positions")
    n = block_size
    if a.size and (a.min() < 0 or a.max() >= n):
        bad = a[(a < 0) | (a >= n)][0]
        raise ValueError(
            f"positions contains {int(bad)} outside the model's positions 0..{n - 1} "
            f"(block_size {n})")
    return a.astype(np.intp, copy=False)


def checked_inputs(config, dtype, ids, targets, mask, segment_ids, positions):
    """The caller's arrays, checked and converted (``ValueError`` naming the argument)
    for a model of ``config`` computing in ``dtype``:
    (ids, targets, mask, segment_ids, positions); ``targets`` / ``mask`` None when not given.
    Targets are checked against the vocabulary only where the mask (when given) is not 0."""
    n, V = config.block_size, config.vocab_size
    ids = check_ids(ids, n, "ids")
    shape = ids.shape
    if targets is not None:
        targets = np.asarray(targets)
        if targets.shape != shape:
            raise ValueError(f"targets shape {targets.shape} does not match ids shape {shape}")
        targets = check_ids(targets, n, "targets")
    if mask is not None:
        mask = np.asarray(mask)
        if mask.shape != shape:
            raise ValueError(f"mask shape {mask.shape} does not match ids shape {shape}")
        if not (mask.dtype.kind in "biuf"):
            raise ValueError(f"mask must be numeric (0/1), got dtype {mask.dtype}")
        mask = mask.astype(dtype)
        if not np.all(np.isfinite(mask)):
            raise ValueError("mask contains non-finite values")
    check_vocab(ids, V, "ids")
    if targets is not None:
        check_vocab(targets, V, "targets", None if mask is None else mask != 0)
    return ids, targets, mask, check_segments(segment_ids, shape), check_positions(positions, shape, n)
