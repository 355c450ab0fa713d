"""Mixing: pre-training replay windows into SFT data, and several datasets by weight.

Both report what they achieved; proportions are exact up to rounding to whole examples.
"""

from __future__ import annotations

from typing import Protocol, Sequence

import numpy as np

from ..errors import ConfigError
from ..tokenizer import ByteTokenizer
from .examples import Example

_EOT = ByteTokenizer().eot_id


def replay_stream(raw_docs_ids) -> np.ndarray:
    """One token stream from raw documents: a list of per-document id arrays is joined with
    ``<|endoftext|>`` after each document; a single 1-D array is used as it is."""
    if isinstance(raw_docs_ids, np.ndarray) and raw_docs_ids.ndim == 1:
        return raw_docs_ids.astype(np.int32, copy=False)
    parts = []
    for d in raw_docs_ids:
        parts.append(np.asarray(d, dtype=np.int32).ravel())
        parts.append(np.array([_EOT], dtype=np.int32))
    if not parts:
        return np.zeros(0, dtype=np.int32)
    return np.concatenate(parts)


def replay_count(n_sft: int, ratio: float) -> int:
    """Number of raw windows so that they are a fraction ``ratio`` of all sequences."""
    if not 0.0 <= ratio < 1.0:
        raise ConfigError(f"replay ratio must be in [0, 1), got {ratio}")
    return int(round(ratio * n_sft / (1.0 - ratio)))


def mix_replay(examples: list[Example], raw_docs_ids, ratio: float, window: int,
               seed: int = 0, epoch: int = 0) -> tuple[list[Example], dict]:
    """Add pre-training windows so they are a fraction ``ratio`` of all training sequences.

    The ratio counts sequences (rows before packing), not tokens: ``n_replay = round(ratio * n /
    (1 - ratio))`` windows of ``window`` ids (pass the model's block size + 1 to fill a row)
    start at uniformly random offsets of the replay stream (see :func:`replay_stream`) and are
    trained on every token but the first (source ``"replay"``). Because an SFT example trains
    only its response tokens, replay's share of the *trained tokens* is much larger than
    ``ratio``; the report gives both.

    The windows are a pure function of ``(seed, epoch)``: call once per epoch for fresh windows
    (reusing one draw every epoch lets SFT memorise those few windows, and forgetting on the rest
    of the text comes back). Returns the SFT examples followed by the windows (batching
    shuffles) and ``{"epoch", "n_sft", "n_replay", "target_ratio", "achieved_ratio",
    "replay_tokens", "sft_trained_tokens", "replay_token_fraction"}``.
    """
    n_sft = len(examples)
    n_raw = replay_count(n_sft, ratio)
    if window < 2:
        raise ConfigError(f"replay window must be >= 2 tokens, got {window}")
    stream = replay_stream(raw_docs_ids) if n_raw else np.zeros(0, dtype=np.int32)
    if n_raw and len(stream) < 2:
        raise ConfigError("replay ratio > 0 but the replay text is empty")
    rng = np.random.default_rng([int(seed), int(epoch), 0x5EED])
    out = list(examples)
    w = min(window, len(stream))
    starts = rng.integers(0, len(stream) - w + 1, size=n_raw) if n_raw else []
    for s in starts:
        ids = stream[s:s + w].copy()
        mask = np.ones(w, dtype=np.uint8)
        mask[0] = 0
        out.append(Example(ids, mask, "replay"))
    total = n_sft + n_raw
    sft_tokens = int(sum(int(np.count_nonzero(e.mask[1:])) for e in examples))
    replay_tokens = int(n_raw * (w - 1)) if n_raw else 0
    report = {"epoch": int(epoch), "n_sft": n_sft, "n_replay": n_raw, "target_ratio": float(ratio),
              "achieved_ratio": (n_raw / total) if total else 0.0,
              "replay_tokens": replay_tokens, "sft_trained_tokens": sft_tokens,
              "replay_token_fraction": (replay_tokens / (replay_tokens + sft_tokens))
              if replay_tokens + sft_tokens else 0.0}
    return out, report


def _largest_remainder(weights: np.ndarray, total: int) -> np.ndarray:
    exact = weights / weights.sum() * total
    counts = np.floor(exact).astype(np.int64)
    rest = total - int(counts.sum())
    if rest > 0:
        order = np.argsort(-(exact - counts), kind="stable")
        counts[order[:rest]] += 1
    return counts


def mix_datasets(datasets: dict[str, list[Example]], weights: dict[str, float], seed: int = 0,
                 total: int | None = None) -> tuple[list[Example], dict]:
    """Mix several datasets so dataset ``k`` makes up ``weights[k] / sum(weights)`` of the result.

    ``total`` defaults to the combined size of the datasets with a positive weight. Counts are
    allotted by largest remainder (exact up to rounding). A dataset asked for more examples
    than it has is repeated whole as often as needed plus a random subset (upsampling);
    otherwise a random subset without repetition is taken. Examples get ``source`` = the
    dataset's name. Report: ``{"total", "datasets": {name: {"available", "n", "repeats",
    "target_fraction", "achieved_fraction"}}}``.
    """
    unknown = set(weights) - set(datasets)
    if unknown:
        raise ConfigError(f"weights given for unknown datasets: {sorted(unknown)}")
    names = [n for n in datasets if weights.get(n, 0.0) > 0]
    for n, w in weights.items():
        if w < 0 or not np.isfinite(w):
            raise ConfigError(f"dataset weight for {n!r} must be a finite number >= 0, got {w}")
    if not names:
        raise ConfigError("mix_datasets: no dataset has a positive weight")
    for n in names:
        if not datasets[n]:
            raise ConfigError(f"dataset {n!r} has weight {weights[n]} but no examples")
    if total is None:
        total = sum(len(datasets[n]) for n in names)
    w = np.array([float(weights[n]) for n in names])
    counts = _largest_remainder(w, int(total))
    rng = np.random.default_rng([int(seed), 0x313])
    out: list[Example] = []
    rep = {"total": int(total), "datasets": {}}
    for n, c, wi in zip(names, counts, w):
        data = datasets[n]
        full, part = divmod(int(c), len(data))
        idx = list(range(len(data))) * full
        idx += sorted(rng.choice(len(data), size=part, replace=False).tolist())
        out.extend(Example(data[i].ids, data[i].mask, n) for i in idx)
        rep["datasets"][n] = {"available": len(data), "n": int(c),
                              "repeats": round(c / len(data), 4),
                              "target_fraction": float(wi / w.sum()),
                              "achieved_fraction": (int(c) / total) if total else 0.0}
    return out, rep


class ReplaySource(Protocol):
    """What replay mixes: the SFT examples and the pre-training token stream (``PreparedData``)."""

    train_examples: Sequence[Example]
    pretrain_tokens: np.ndarray


class ReplayMix:
    """The training examples of each epoch: the SFT examples plus fresh pre-training windows.

    ``mix.replay_ratio`` = r is the fraction of training *sequences* that are raw pre-training
    windows (rows of ``window`` tokens, every token trained), in every epoch: n_replay =
    round(r * n_sft / (1 - r)). The windows of epoch e are drawn with the seed (train.seed, e),
    so each epoch sees different pre-training text, and a resumed job draws the same ones.
    """

    def __init__(self, data: ReplaySource, ratio: float, window: int, seed: int) -> None:
        self.sft = list(data.train_examples)
        self.stream = data.pretrain_tokens
        self.ratio, self.window, self.seed = float(ratio), int(window), int(seed)
        self._reports: dict[int, dict] = {}
        # drawn examples: epoch 0's (a job plans its steps and counts its examples with them) and
        # the latest epoch's
        self._drawn: dict[int, list[Example]] = {}

    def __call__(self, epoch: int) -> list[Example]:
        """The examples of ``epoch``; the windows of an epoch are drawn once, however often asked."""
        if self.ratio <= 0:
            self._reports[epoch] = {"epoch": epoch, "n_sft": len(self.sft), "n_replay": 0,
                                    "target_ratio": 0.0, "achieved_ratio": 0.0}
            return list(self.sft)
        if epoch not in self._drawn:
            out, rep = mix_replay(self.sft, self.stream, self.ratio, self.window, self.seed, epoch)
            self._reports[epoch] = rep
            self._drawn = {e: v for e, v in self._drawn.items() if e == 0}
            self._drawn[epoch] = out
        return list(self._drawn[epoch])

    def report(self, epochs: int) -> dict:
        """Target and achieved ratio (overall and per epoch) for ``epochs`` epochs."""
        for e in range(epochs):
            if e not in self._reports:
                self(e)
        per = [self._reports[e] for e in range(epochs)]
        n_sft = sum(p["n_sft"] for p in per)
        n_rep = sum(p["n_replay"] for p in per)
        out = {"target_ratio": self.ratio, "n_sft": per[0]["n_sft"], "n_replay": per[0]["n_replay"],
               "achieved_ratio": n_rep / (n_sft + n_rep) if n_sft + n_rep else 0.0,
               "fresh_per_epoch": True, "per_epoch": per}
        if "replay_token_fraction" in per[0]:
            out["replay_token_fraction"] = per[0]["replay_token_fraction"]
        return out


def with_replay(data: ReplaySource, ratio: float, window: int, seed: int) -> ReplayMix:
    """The per-epoch training examples (see ``ReplayMix``); ``mix(epoch)`` gives an epoch's."""
    return ReplayMix(data, ratio, window, seed)
