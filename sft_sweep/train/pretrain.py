"""Pre-training the base model on raw text, and the shared cache that makes it happen once.

The base model learns the synthetic world's facts (or the given raw text) by next-token
prediction on random windows of the document stream, every token trained. Every job of a sweep
then starts from these identical weights, so differences between jobs come from the swept
settings alone.
"""

from __future__ import annotations

import hashlib
import logging
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
from tqdm import tqdm

from ..config import Config, base_settings, pretrain_steps, stable_hash
from ..errors import CheckpointError, ConfigError, file_system_problem
from ..nn import GPT, AdamW, GPTConfig, load_checkpoint, lr_at, read_checkpoint_config, save_checkpoint
from ..tokenizer import model_vocab_size
from .cache import BaseCache, file_lock
from .resources import Threads

log = logging.getLogger(__name__)


def gpt_config(cfg: Config) -> GPTConfig:
    return GPTConfig(**_base_settings(cfg)["model"], vocab_size=model_vocab_size(cfg.tokenizer))


def _base_settings(cfg: Config) -> dict:
    """What determines the base weights besides the text (``config.base_settings``). The steps are
    those the base trains (``pretrain_steps``): a step-cost table decides them and is not itself a
    setting of the base, so a base of the same steps is the same base with or without it."""
    settings = base_settings(cfg)
    settings["pretrain"]["steps"] = pretrain_steps(cfg)
    return settings


def base_key(cfg: Config, source: dict) -> str:
    """Everything that determines the base weights, hashed."""
    return stable_hash({**_base_settings(cfg), "source": source, "format": 1})


def random_windows(tokens: np.ndarray, batch: int, length: int, rng: np.random.Generator) -> np.ndarray:
    """``batch`` windows of ``length`` tokens at uniform random offsets."""
    if len(tokens) < length + 1:
        raise ValueError(f"pre-training text has {len(tokens)} tokens; need more than {length}")
    starts = rng.integers(0, len(tokens) - length + 1, size=batch)
    return tokens[starts[:, None] + np.arange(length)[None, :]]


def check_pretraining_text(tokens: np.ndarray, cfg: Config) -> None:
    """Pre-training reads windows of ``model.block_size + 1`` tokens at random offsets: the text
    must be longer than one window."""
    need = cfg.model.block_size + 1
    if len(tokens) < need + 1:
        raise ConfigError(f"model.block_size={cfg.model.block_size} needs pre-training text of more than "
                          f"{need} tokens; the pre-training text has {len(tokens)} tokens: lower "
                          "model.block_size or give more pre-training text")


def pretrain(model: GPT, tokens: np.ndarray, cfg: Config, *, progress: bool | None = None) -> list[dict]:
    """Train ``model`` in place on ``tokens``; returns the loss curve (a row per 50 steps)."""
    p = cfg.pretrain
    steps = pretrain_steps(cfg)
    T = cfg.model.block_size
    rng = np.random.default_rng(p.seed)
    opt = AdamW(model.params, weight_decay=p.weight_decay, grad_clip=p.grad_clip)
    mask = np.ones((p.batch_size, T), dtype=np.float32)
    if progress is None:
        progress = sys.stderr.isatty()
    curve: list[dict] = []
    t0 = time.perf_counter()
    bar = tqdm(range(steps), desc="pre-training base", disable=not progress, leave=False)
    running = None
    for step in bar:
        w = random_windows(tokens, p.batch_size, T + 1, rng)
        loss, grads = model.loss_and_grads(w[:, :-1], w[:, 1:], mask)
        lr = lr_at(step, total_steps=steps, peak_lr=p.lr, schedule=p.schedule,
                   warmup_steps=p.warmup_steps, min_lr=p.lr * p.min_lr_ratio)
        gnorm = opt.step(grads, lr)
        running = loss if running is None else 0.95 * running + 0.05 * loss
        if (step + 1) % 50 == 0 or step + 1 == steps:
            curve.append({"step": step + 1, "loss": float(loss), "lr": lr, "grad_norm": float(gnorm),
                          "elapsed_s": time.perf_counter() - t0})
            bar.set_postfix(loss=f"{running:.3f}")
    return curve


def load_given_base(cfg: Config, path: str, cache_root: str, threads: Threads) -> tuple[GPT, BaseCache, dict]:
    """The user's own base checkpoint (``pretrain.init_from``) instead of pre-training one.

    Its evaluation is cached like a pre-trained base's, under a key made from the file's content.
    A checkpoint of another shape is refused with both shapes named.
    """
    if not Path(path).is_file():
        raise CheckpointError(f"pretrain.init_from: no such checkpoint {path}")
    try:
        saved = read_checkpoint_config(path)
    except CheckpointError as e:
        raise CheckpointError(f"pretrain.init_from: {e}") from None
    wanted = gpt_config(cfg)
    shape_fields = ("n_layer", "n_head", "n_embd", "n_mlp", "block_size", "vocab_size")
    if any(getattr(saved, f) != getattr(wanted, f) for f in shape_fields):
        def shape(c: GPTConfig) -> str:
            return " ".join(f"{f}={getattr(c, f)}" for f in shape_fields)

        raise CheckpointError(f"pretrain.init_from={path} is a model of shape {shape(saved)}, but the config asks "
                              f"for {shape(wanted)} (set model=... or model.* to match the checkpoint)")
    h = hashlib.sha256(Path(path).read_bytes()).hexdigest()[:16]
    cache = BaseCache(cache_root, f"init-{h}")
    cache.dir.mkdir(parents=True, exist_ok=True)
    model = GPT(wanted, seed=cfg.pretrain.seed, threads=threads.sft)
    load_checkpoint(path, model)
    return model, cache, {"key": cache.key, "built": False, "wait_s": 0.0, "pretrain_s": 0.0, "init_from": path}


def load_or_build_base(cfg: Config, tokens: np.ndarray, source: dict, cache_root: str,
                       threads: Threads, progress: bool | None = None) -> tuple[GPT, BaseCache, dict]:
    """The cached base model, pre-training it first if no job has yet.

    Returns (model, cache, info) where info has ``built`` (this call trained it), ``wait_s``
    (time spent waiting on another job's lock), ``pretrain_s`` and ``warnings`` (a corrupt cache
    entry that was moved aside and rebuilt). The model computes with ``threads.sft`` threads;
    pre-training uses ``threads.pretrain``.
    """
    if cfg.pretrain.init_from:
        return load_given_base(cfg, cfg.pretrain.init_from, cache_root, threads)
    check_pretraining_text(tokens, cfg)
    cache = BaseCache(cache_root, base_key(cfg, source))
    model = GPT(gpt_config(cfg), seed=cfg.pretrain.seed, threads=threads.sft)
    info: dict[str, Any] = {"key": cache.key, "built": False, "wait_s": 0.0, "pretrain_s": 0.0, "warnings": []}
    if not cache.exists() or cache.load_into(model) is not None:
        try:
            _build_base(cfg, tokens, source, cache, model, info, threads, progress)
        except OSError as e:  # a cache others share, read-only to this user
            problem = file_system_problem(e)
            if problem is None:
                raise
            raise ConfigError(f"the base model {cache.key} is not in pretrain.cache_dir={cache_root} and cannot "
                              f"be built there: {problem}; point pretrain.cache_dir at a writable directory, "
                              "or build the base there first") from None
    return model, cache, info


def _build_base(cfg: Config, tokens: np.ndarray, source: dict, cache: BaseCache, model: GPT, info: dict,
                threads: Threads, progress: bool | None) -> None:
    """Under the entry's lock: loads the base another job built meanwhile, or moves a corrupt entry
    aside and pre-trains ``model`` into the cache (``info`` updated)."""
    def waiting() -> None:
        log.info("waiting for another job to finish pre-training base %s", cache.key)

    with file_lock(cache.lock_path, on_wait=waiting) as waited:
        info["wait_s"] = waited
        if cache.exists():  # built meanwhile, or there from the start but unusable
            problem = cache.load_into(model)
            if problem is None:
                return
            try:
                aside = cache.move_aside()
            except OSError as e:
                raise CheckpointError(f"the cached base model {cache.dir} is corrupt ({problem}) and could "
                                      f"not be moved aside ({e.strerror or e}); delete that folder and run "
                                      "again") from None
            info["warnings"].append(f"the cached base model {cache.dir} was corrupt ({problem}); "
                                    f"moved it aside to {aside} and pre-trained it again")
        if not cache.exists():
            log.info("pre-training base model %s (%d steps)", cache.key, pretrain_steps(cfg))
            t0 = time.perf_counter()
            model.set_threads(threads.pretrain)
            curve = pretrain(model, tokens, cfg, progress=progress)
            model.set_threads(threads.sft)
            info["pretrain_s"] = time.perf_counter() - t0
            info["pretrain_threads"] = threads.pretrain
            save_checkpoint(cache.model_path, model, step=pretrain_steps(cfg),
                            extra={"kind": "base", "key": cache.key})
            settings = _base_settings(cfg)
            cache.write_meta({"key": cache.key, "model": cfg.model.__dict__, "pretrain": settings["pretrain"],
                              "source": source, "pretrain_s": info["pretrain_s"], "curve": curve,
                              "n_tokens": int(len(tokens))})
            info["built"] = True
