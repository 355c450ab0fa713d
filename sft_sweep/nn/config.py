"""The GPT's configuration: its shape (shared with the job config's ``model`` group) and dtype."""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, fields

import numpy as np

from ..errors import ConfigError

DTYPES = {"float32": np.float32, "float64": np.float64}


@dataclass
class ModelShape:
    """The architecture's sizes: "mini" by default, 4 layers, 4 heads, width 128, MLP 512,
    128 positions (~0.84M parameters with the byte vocabulary)."""

    n_layer: int = 4
    n_head: int = 4
    n_embd: int = 128
    n_mlp: int = 512
    block_size: int = 128
    init_std: float = 0.02  # std of the initial weights (the residual projections get less)


@dataclass
class GPTConfig(ModelShape):
    """The shape plus what the numpy model needs besides: vocabulary size and float type."""

    vocab_size: int = 260
    dtype: str = "float32"

    def __post_init__(self) -> None:
        for name in ("n_layer", "n_head", "n_embd", "n_mlp", "block_size", "vocab_size"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value <= 0:
                raise ConfigError(f"GPTConfig.{name} must be a positive integer, got {value!r}")
            setattr(self, name, int(value))
        if self.n_embd % self.n_head != 0:
            raise ConfigError(
                f"GPTConfig.n_head ({self.n_head}) must divide n_embd ({self.n_embd})")
        try:
            std = float(self.init_std)
        except (TypeError, ValueError):
            raise ConfigError(f"GPTConfig.init_std must be a number, got {self.init_std!r}") from None
        if not (math.isfinite(std) and std > 0):
            raise ConfigError(f"GPTConfig.init_std must be positive and finite, got {self.init_std!r}")
        self.init_std = std
        if self.dtype not in DTYPES:
            raise ConfigError(
                f"GPTConfig.dtype must be one of {sorted(DTYPES)}, got {self.dtype!r}")

    @property
    def head_dim(self) -> int:
        return self.n_embd // self.n_head

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> "GPTConfig":
        known = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in d.items() if k in known})

    def flops_per_token(self, seq_len: int | None = None) -> float:
        """Training FLOPs per token (forward + backward, matmuls only), full attention.

        6 * (matmul weights incl. the tied head) + 12 * n_layer * T * C for the attention
        score and value products; the usual MFU convention (about 5.7 MFLOP for "mini").
        """
        T = self.block_size if seq_len is None else seq_len
        C, M = self.n_embd, self.n_mlp
        per_layer = C * 3 * C + C * C + 2 * C * M
        n = self.n_layer * per_layer + self.vocab_size * C
        return 6.0 * n + 12.0 * self.n_layer * T * C
