"""Numpy GPT: layers as forward/backward pairs, the model, AdamW + schedules, generation,
checkpoints."""

from .checkpoint import load_checkpoint, read_checkpoint_config, save_checkpoint
from .generate import generate
from .gpt import GPT, GPTConfig
from .optim import AdamW, lr_at

__all__ = [
    "GPT", "GPTConfig", "AdamW", "lr_at", "generate", "save_checkpoint", "load_checkpoint",
    "read_checkpoint_config",
]
