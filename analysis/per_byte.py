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

from analysis.roles import key_of
from sft_sweep.config import SETTINGS

# The settings read here, by the role their schema description gives them.
NAME, VOCAB, STEPS, STEP_COST = (key_of(r) for r in ("tokenizer", "vocab", "pretrain_steps", "step_cost"))
#: The tokenizer every job used before the group existed (its described "off" value).
BYTES = SETTINGS.settings[NAME].off

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
    name = config.get(NAME) or BYTES
    if name == BYTES:
        return BYTES
    vocab = _num(config.get(VOCAB))
    return f"{name} {int(vocab)}" if vocab is not None else str(name)


def _vocab(config: dict[str, Any]) -> int | None:
    if (config.get(NAME) or BYTES) == BYTES:
        return BYTE_VOCAB
    v = _num(config.get(VOCAB))
    return int(v) if v is not None else None


def pretrain_steps(config: dict[str, Any]) -> int | None:
    """The steps a job's base pre-trained: ``pretrain.steps``, or with ``pretrain.step_cost`` that
    many reference steps' time at the cost of the job's vocabulary (``sft_sweep.config.pretrain_steps``
    on the flat config the job recorded)."""
    steps = _num(config.get(STEPS))
    if steps is None:
        return None
    cost = _num(config.get(f"{STEP_COST}.{_vocab(config)}"))
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
    if VOCAB in jobs and NAME in jobs:
        # a byte job never reads the vocabulary size: its row shows the model's vocabulary
        jobs = jobs.copy()
        jobs.loc[jobs[NAME] == BYTES, VOCAB] = BYTE_VOCAB
    curves = runs.curves
    if not curves.empty:
        curves = curves[~((curves["kind"] == "eval") & curves["metric"].isin(PER_TOKEN_LOSSES))]
    return dataclasses.replace(runs, jobs=jobs, curves=curves.reset_index(drop=True))




def tokenizer_labels(runs: Any) -> dict[str, str]:
    """Each job's tokenizer label (``bytes``, ``bpe 1024``), by job id."""
    return _labels(runs)
