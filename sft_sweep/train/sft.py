"""The SFT loop: epochs over shuffled batches, accumulation, lr schedule, clipping, periodic eval.

Resuming is exact: batches are a pure function of (examples, seed, epoch), the optimiser state
and step come from the checkpoint, and steps before the checkpoint are skipped without compute.

Divergence: a model that predicts no better than a uniform guess has loss ln(vocab_size); a
training or evaluation loss above ``train.diverge_factor`` times that (or a NaN / inf loss or
gradient norm) means the run has blown up, so the job stops with :class:`DivergedError`
(reported as ``failed`` with reason ``diverged``) instead of finishing with meaningless metrics.
"""

from __future__ import annotations

import math
import sys
import time
from dataclasses import dataclass
from typing import Callable

import numpy as np
from tqdm import tqdm

from ..config import Config
from ..data import Batch, Batches, Example, make_batches
from ..errors import ConfigError, DivergedError, NonFiniteLossError
from ..nn import GPT, AdamW, lr_at
from ..nn.peft import Tuning
from ..tokenizer import model_vocab_size, special_ids
from ..data.loss_weights import group_weights
from .tuning import neftune_noise


@dataclass
class Plan:
    steps_per_epoch: int
    total_steps: int
    batch_report: dict


def _pad_id(cfg: Config) -> int:
    return special_ids(model_vocab_size(cfg.tokenizer))["<|pad|>"]


def epoch_batches(examples: list[Example], cfg: Config, epoch: int) -> tuple[Batches, dict]:
    """The epoch's batches, each built when the loop reaches it (see ``Batches``)."""
    return make_batches(examples, cfg.train.batch_size, cfg.model.block_size, pack=cfg.train.pack,
                        seed=cfg.train.seed, epoch=epoch, pad_id=_pad_id(cfg))


# More optimiser steps than a job plans: a numpy model takes days for a million steps, so a plan
# beyond is a slip (train.epochs=1e9), refused before any work.
MAX_PLAN_STEPS = 1_000_000


def plan(examples: list[Example], cfg: Config) -> Plan:
    batches, report = epoch_batches(examples, cfg, 0)
    per_epoch = math.ceil(len(batches) / cfg.train.grad_accum)
    total = per_epoch * cfg.train.epochs
    if cfg.train.max_steps:
        total = min(total, cfg.train.max_steps)
    if total > MAX_PLAN_STEPS:
        t = cfg.train
        setting = f"train.max_steps={t.max_steps}" if t.max_steps else f"train.epochs={t.epochs}"
        raise ConfigError(f"{setting} plans {total} optimiser steps ({per_epoch} per epoch), more than "
                          f"{MAX_PLAN_STEPS} (the most a job plans): lower train.epochs, or cap the steps "
                          "with train.max_steps")
    return Plan(steps_per_epoch=per_epoch, total_steps=total, batch_report=report)


def planned_epochs(pl: Plan, cfg: Config) -> int:
    """The epochs a plan reaches (fewer than ``train.epochs`` when ``train.max_steps`` cuts it)."""
    return min(cfg.train.epochs, max(1, math.ceil(pl.total_steps / max(pl.steps_per_epoch, 1))))


def make_optimizer(model: GPT, cfg: Config, tuning: Tuning | None = None) -> AdamW:
    """AdamW over what trains: the model's parameters, or the tuning's (adapters, unfrozen blocks)."""
    o = cfg.optim
    return AdamW(model.params if tuning is None else tuning.params, betas=(o.beta1, o.beta2), eps=o.eps,
                 weight_decay=o.weight_decay, grad_clip=o.grad_clip)


def learning_rate(step: int, total: int, cfg: Config) -> float:
    o = cfg.optim
    return lr_at(step, total_steps=total, peak_lr=o.lr, schedule=o.schedule,
                 warmup_steps=min(o.warmup_steps, max(total - 1, 0)), min_lr=o.lr * o.min_lr_ratio)


def divergence_bound(cfg: Config) -> float | None:
    """The loss above which a job has diverged, or None when the bound is disabled."""
    if cfg.train.diverge_factor <= 0:
        return None
    return cfg.train.diverge_factor * math.log(model_vocab_size(cfg.tokenizer))


def check_divergence(metric: str, value: float | None, step: int, bound: float | None) -> None:
    """Raise DivergedError when ``value`` is non-finite or above ``bound``."""
    if value is None:
        return
    if not math.isfinite(value) or (bound is not None and value > bound):
        raise DivergedError(metric, float(value), step, bound)


def accumulate(model: GPT, group: list[Batch], loss_norm: str = "tokens", noise=None
               ) -> tuple[float, dict[str, np.ndarray], int]:
    """Loss and gradients of a group of micro-batches, normalised as one big batch.

    Each micro-batch shares the whole group's normalizer (for ``tokens``, its trained-token
    count), so the sum equals the big batch's loss: dividing each by its own count would
    over-weight short responses. ``loss_norm``: see :mod:`sft_sweep.data.loss_weights`. ``noise(j, shape)``:
    the input-embedding noise of micro-batch j (or None).
    """
    weights, norm = group_weights(group, loss_norm, special_ids(model.config.vocab_size)["<|pad|>"])
    total_loss, acc = 0.0, None
    for j, (b, w) in enumerate(zip(group, weights)):
        loss, grads = model.loss_and_grads(b.ids, b.targets, w, b.segment_ids, normalizer=norm,
                                           positions=getattr(b, "positions", None),
                                           embed_noise=None if noise is None else noise(j, b.ids.shape))
        total_loss += loss
        if acc is None:
            acc = {k: g.copy() for k, g in grads.items()}
        else:
            for k, g in grads.items():
                acc[k] += g
    tokens = int(sum(b.ids.size for b in group))
    return total_loss, acc, tokens


def train(model: GPT, opt: AdamW, examples: list[Example] | Callable[[int], list[Example]], cfg: Config,
          pl: Plan, *, start_step: int,
          on_log: Callable[[dict], None], on_step_end: Callable[[int], None],
          progress: bool | None = None, desc: str = "SFT", tuning: Tuning | None = None) -> int:
    """Run SFT from ``start_step`` to ``pl.total_steps``; returns the last step.

    ``tuning``: what trains (``opt`` updates its parameters); None: every weight of ``model``.
    After each update the pull toward the start (``optim.l2_to_base``) applies, then the tuning
    writes the weights it implies into the model.

    ``on_step_end(step)`` runs after every optimiser step (evaluation, checkpoints).
    ``examples`` may be a function of the epoch (fresh replay windows each epoch).
    """
    if progress is None:
        progress = sys.stderr.isatty()
    step = 0
    bound = divergence_bound(cfg)
    if tuning is None:  # every weight trains; the pull (if any) draws toward the weights given here
        tuning = Tuning(model)
        if cfg.optim.l2_to_base > 0:
            tuning.mark_start()
    width = model.config.n_embd
    bar = tqdm(total=pl.total_steps, initial=start_step, desc=desc, disable=not progress, leave=False)
    window_loss, window_n, window_tokens, window_s = 0.0, 0, 0, 0.0
    for epoch in range(cfg.train.epochs):
        if step >= pl.total_steps:
            break
        if step + pl.steps_per_epoch <= start_step:  # whole epoch done before the checkpoint
            step += pl.steps_per_epoch
            continue
        batches, _ = epoch_batches(examples(epoch) if callable(examples) else examples, cfg, epoch)
        ga = cfg.train.grad_accum
        for g in range(0, len(batches), ga):
            if step >= pl.total_steps:
                break
            if step < start_step:
                step += 1
                continue
            t0 = time.perf_counter()
            noise = None
            if cfg.train.neftune_alpha > 0:
                noise = (lambda j, shape, s=step: neftune_noise(cfg, s, j, shape, width, model.dtype))
            try:
                loss, grads, tokens = accumulate(model, batches[g : g + ga], cfg.train.loss_norm, noise)
                grads = tuning.grads(grads)
            except NonFiniteLossError:
                raise DivergedError("loss", float("nan"), step + 1, bound) from None
            check_divergence("loss", loss, step + 1, bound)
            lr = learning_rate(step, pl.total_steps, cfg)
            try:
                gnorm = opt.step(grads, lr)
            except NonFiniteLossError:
                raise DivergedError("grad_norm", float("nan"), step + 1, None) from None
            check_divergence("grad_norm", gnorm, step + 1, None)
            tuning.pull(lr, cfg.optim.l2_to_base)
            tuning.apply()
            window_s += time.perf_counter() - t0  # compute only: evaluation time is not training speed
            step += 1
            window_loss += loss
            window_n += 1
            window_tokens += tokens
            bar.update(1)
            if step % cfg.train.log_interval == 0 or step == pl.total_steps:
                on_log({"kind": "train", "step": step,
                        "epoch": round(epoch + (g + ga) / max(len(batches), 1), 4),
                        "lr": lr, "loss": window_loss / window_n, "grad_norm": float(gnorm),
                        "tokens_per_s": window_tokens / window_s if window_s > 0 else None})
                bar.set_postfix(loss=f"{window_loss / window_n:.3f}")
                window_loss, window_n, window_tokens, window_s = 0.0, 0, 0, 0.0
            on_step_end(step)
    bar.close()
    return step
