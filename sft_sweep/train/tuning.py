"""How a job fine-tunes and keeps what the base knew: what trains (``peft``), NEFTune's noise,
the weight change's effective rank, and blends of the tuned weights with the base.

The trainer (``sft.py``) asks a ``Tuning`` (``sft_sweep.nn.peft``) for what the optimiser
updates; everything here is a function of the config and the model.
"""

from __future__ import annotations

import math
from contextlib import contextmanager

import numpy as np

from ..config import Config
from ..nn import GPT
from ..nn.gpt import LINEARS
from ..nn.peft import FreezeTuning, LoraTuning, Tuning, effective_rank, freeze_names

#: The share of a weight change's squared singular values its effective rank holds.
RANK_ENERGY = 0.9
# NEFTune's noise stream: a fixed tag beside (seed, step, micro-batch), so resuming draws the same.
_NOISE_TAG = 0x4E4546


def make_tuning(model: GPT, cfg: Config) -> Tuning:
    """What SFT trains in ``model`` (which must hold the base weights): ``peft.method``."""
    pe = cfg.peft
    if pe.method == "lora":
        return LoraTuning(model, rank=pe.rank, alpha=pe.alpha, targets=tuple(pe.targets), rslora=pe.rslora,
                          seed=cfg.train.seed)
    if pe.method == "freeze":
        return FreezeTuning(model, freeze_names(model, pe.trainable_layers, pe.train_embeddings))
    model.set_trainable(None)
    return Tuning(model)


def neftune_noise(cfg: Config, step: int, micro: int, shape: tuple[int, int], width: int,
                  dtype) -> np.ndarray | None:
    """NEFTune's input-embedding noise for micro-batch ``micro`` of 0-based ``step``:
    uniform(-1, 1) * alpha / sqrt(L * d), L the padded length and d the width; None when off."""
    alpha = cfg.train.neftune_alpha
    if alpha <= 0:
        return None
    B, T = shape
    rng = np.random.default_rng([cfg.train.seed, step, micro, _NOISE_TAG])
    noise = rng.uniform(-1.0, 1.0, size=(B, T, width))
    noise *= alpha / math.sqrt(T * width)
    return noise.astype(dtype, copy=False)


def linear_weights(model: GPT) -> list[str]:
    return [f"h.{i}.{lin}.w" for i in range(model.config.n_layer) for lin in LINEARS]


def weight_change(base: dict[str, np.ndarray], model: GPT, tuning: Tuning) -> dict | None:
    """The effective rank of each linear layer's weight change (tuned - base), for full and LoRA
    fine-tuning: the number of singular values holding ``RANK_ENERGY`` of its squared total."""
    if tuning.method == "freeze":
        return None
    names = tuning.weights if isinstance(tuning, LoraTuning) else linear_weights(model)
    ranks = {n: effective_rank(model.params[n].astype(np.float64) - base[n], RANK_ENERGY) for n in names}
    return {"energy": RANK_ENERGY, "effective_rank": ranks,
            "median_effective_rank": float(np.median(list(ranks.values()))),
            "max_rank": int(min(min(model.params[n].shape) for n in names))}


@contextmanager
def blended(model: GPT, base: dict[str, np.ndarray], t: float):
    """The model holding (1 - t) * base + t * tuned for the ``with`` block; the tuned weights after."""
    tuned = model.flat_params.copy()
    try:
        for name, p in model.params.items():
            p *= t
            p += (1.0 - t) * base[name]
        yield model
    finally:
        model.flat_params[...] = tuned


__all__ = ["make_tuning", "neftune_noise", "weight_change", "blended", "RANK_ENERGY"]
