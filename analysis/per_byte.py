"""Losses meet per byte where tokenizers differ: a loss per token means something else under every
tokenizer (a BPE token holds several bytes), so when a sweep's jobs use more than one tokenizer,
:func:`per_byte_only` (applied by ``collect_runs``) takes the per-token losses (``raw_loss``,
``response_loss`` of the base and the tuned model, and their evaluation curves) out of the tables:
no table, plot or finding compares them. The per-byte losses (``raw_nats_per_byte``,
``response_nats_per_byte``) and forgetting (a ratio of two losses of one tokenizer) stay, and a
byte job's ``tokenizer.vocab_size`` (a setting bytes never reads) shows its model's 260 ids.
"""

from __future__ import annotations

import dataclasses
import math
from typing import Any

#: Losses per token: never compared across tokenizers.
PER_TOKEN_LOSSES = ("raw_loss", "response_loss")
#: The byte tokenizer's ids (256 bytes + 4 special tokens), as sft_sweep.tokenizer counts them.
BYTE_VOCAB = 260


def _num(v: Any) -> float | None:
    try:
        f = float(v)
    except (TypeError, ValueError):
        return None
    return f if math.isfinite(f) else None


def tokenizer_label(config: dict[str, Any]) -> str:
    """``bytes`` or ``bpe <vocab>`` from a job's flat config (jobs from before the tokenizer
    group used bytes)."""
    name = config.get("tokenizer.name") or "bytes"
    if name == "bytes":
        return "bytes"
    vocab = _num(config.get("tokenizer.vocab_size"))
    return f"{name} {int(vocab)}" if vocab is not None else str(name)


def _vocab(config: dict[str, Any]) -> int | None:
    if (config.get("tokenizer.name") or "bytes") == "bytes":
        return BYTE_VOCAB
    v = _num(config.get("tokenizer.vocab_size"))
    return int(v) if v is not None else None


def pretrain_steps(config: dict[str, Any]) -> int | None:
    """The steps a job's base pre-trained: ``pretrain.steps``, or with ``pretrain.step_cost`` that
    many reference steps' time at the cost of the job's vocabulary (``sft_sweep.config.pretrain_steps``
    on the flat config the job recorded)."""
    steps = _num(config.get("pretrain.steps"))
    if steps is None:
        return None
    cost = _num(config.get(f"pretrain.step_cost.{_vocab(config)}"))
    if cost is None or steps == 0:
        return int(steps)
    return max(1, round(steps / cost))


def _labels(runs: Any) -> dict[str, str]:
    return {job: tokenizer_label(cfg) for job, cfg in runs.configs.items()}


def per_byte_only(runs: Any) -> Any:
    """``runs`` without its per-token losses when its jobs use more than one tokenizer."""
    if len(set(_labels(runs).values())) <= 1:
        return runs
    cols = {f"{side}_{m}" for side in ("base", "final") for m in PER_TOKEN_LOSSES} | {"last_eval_response_loss"}
    jobs = runs.jobs.drop(columns=[c for c in runs.jobs.columns if c in cols])
    if "tokenizer.vocab_size" in jobs and "tokenizer.name" in jobs:
        # a byte job never reads tokenizer.vocab_size: its row shows the model's vocabulary
        jobs = jobs.copy()
        jobs.loc[jobs["tokenizer.name"] == "bytes", "tokenizer.vocab_size"] = BYTE_VOCAB
    curves = runs.curves
    if not curves.empty:
        curves = curves[~((curves["kind"] == "eval") & curves["metric"].isin(PER_TOKEN_LOSSES))]
    return dataclasses.replace(runs, jobs=jobs, curves=curves.reset_index(drop=True))




def tokenizer_labels(runs: Any) -> dict[str, str]:
    """Each job's tokenizer label (``bytes``, ``bpe 1024``), by job id."""
    return _labels(runs)
