"""Training examples (ids + loss mask) and the length policy."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

import numpy as np

from ..errors import ConfigError
from .conversation import Conversation
from .templates import Template, render


#: What ``fit_length`` does with an example longer than the block (``train.truncation``).
LENGTH_POLICIES: tuple[str, ...] = ("truncate", "drop")


@dataclass(slots=True)
class Example:
    """One training sequence. ``mask[i] == 1`` iff ``ids[i]`` is a trained target (predicted
    from ``ids[:i]``); ``mask[0]`` is never used. ``source``: "sft", "replay" or a dataset name."""

    ids: np.ndarray   # int32, shape (L,)
    mask: np.ndarray  # uint8, shape (L,)
    source: str = "sft"

    def __post_init__(self) -> None:
        self.ids = np.asarray(self.ids, dtype=np.int32)
        self.mask = np.asarray(self.mask, dtype=np.uint8)
        if self.ids.ndim != 1 or self.ids.shape != self.mask.shape:
            raise ValueError(f"Example ids {self.ids.shape} and mask {self.mask.shape} must be "
                             "1-D and of equal length")

    def __len__(self) -> int:
        return int(self.ids.shape[0])

    @property
    def n_trained(self) -> int:
        """Number of trained prediction targets (positions 1.. with mask 1)."""
        return int(self.mask[1:].sum())


def to_examples(conversations: list[Conversation], template: str | Template,
                mask: str = "assistant", source: str = "sft") -> list[Example]:
    """Render conversations into Examples."""
    out = []
    for conv in conversations:
        ids, m = render(conv, template, mask)
        out.append(Example(np.array(ids, dtype=np.int32), np.array(m, dtype=np.uint8), source))
    return out


def fit_length(examples: Iterable[Example], max_tokens: int,
               policy: str = "truncate") -> tuple[list[Example], dict]:
    """Make every example at most ``max_tokens`` ids long.

    ``max_tokens`` counts ids, and an example of L ids gives L-1 training positions, so to
    fill a model block of T positions pass ``max_tokens = T + 1``.
    ``policy="truncate"`` keeps the first ``max_tokens`` ids; ``"drop"`` drops longer examples.
    Examples with no trained target left (``mask[1:]`` all zero, before or after truncation)
    are dropped. Report: ``{"n_in", "n_kept", "truncated", "dropped_too_long",
    "dropped_no_trained_tokens"}``.
    """
    if policy not in LENGTH_POLICIES:
        raise ConfigError(f"unknown length policy {policy!r}; choose 'truncate' or 'drop'")
    if max_tokens < 2:
        raise ConfigError(f"max_tokens must be >= 2 (one input and one target), got {max_tokens}")
    kept: list[Example] = []
    report = {"n_in": 0, "n_kept": 0, "truncated": 0, "dropped_too_long": 0,
              "dropped_no_trained_tokens": 0}
    for ex in examples:
        report["n_in"] += 1
        if len(ex) > max_tokens:
            if policy == "drop":
                report["dropped_too_long"] += 1
                continue
            ex = Example(ex.ids[:max_tokens].copy(), ex.mask[:max_tokens].copy(), ex.source)
            if ex.n_trained == 0:
                report["dropped_no_trained_tokens"] += 1
                continue
            report["truncated"] += 1
        elif ex.n_trained == 0:
            report["dropped_no_trained_tokens"] += 1
            continue
        kept.append(ex)
    report["n_kept"] = len(kept)
    return kept, report
