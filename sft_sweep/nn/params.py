"""The model's parameters: their names and shapes in reading order, the flat buffer's layout, and their initial values."""

from __future__ import annotations

import math

import numpy as np

from .config import GPTConfig


def _block_params(C: int, M: int) -> list[tuple[str, tuple[int, ...]]]:
    """One block's parameters (name after ``h.<i>.``, shape), in reading order."""
    return [("ln1.w", (C,)), ("ln1.b", (C,)), ("attn.qkv.w", (C, 3 * C)), ("attn.qkv.b", (3 * C,)),
            ("attn.proj.w", (C, C)), ("attn.proj.b", (C,)), ("ln2.w", (C,)), ("ln2.b", (C,)),
            ("mlp.fc.w", (C, M)), ("mlp.fc.b", (M,)), ("mlp.proj.w", (M, C)), ("mlp.proj.b", (C,))]


def param_table(cfg: GPTConfig) -> list[tuple[str, tuple[int, ...]]]:
    """Every parameter (name, shape) in reading order: embeddings, blocks, final LayerNorm.

    ``GPT.params`` and checkpoints list parameters in this order; the flat buffer's order is
    derived from it (``buffer_order``)."""
    C = cfg.n_embd
    table = [("wte", (cfg.vocab_size, C)), ("wpe", (cfg.block_size, C))]
    for i in range(cfg.n_layer):
        table += [(f"h.{i}.{name}", shape) for name, shape in _block_params(C, cfg.n_mlp)]
    return table + [("lnf.w", (C,)), ("lnf.b", (C,))]


LINEARS = ("attn.qkv", "attn.proj", "mlp.fc", "mlp.proj")


def buffer_order(table: list[tuple[str, tuple[int, ...]]]) -> list[tuple[str, tuple[int, ...]]]:
    """The flat buffer's order: every linear layer's parameters first, then the rest.

    Each linear layer's weight (C_in, C_out) is immediately followed by its bias (the reading
    order has them so), so together they form one (C_in + 1, C_out) block: the model multiplies
    inputs that carry a ones column by that block (bias for free) and gets both gradients from
    one product. Embeddings and LayerNorm parameters follow.
    """
    def is_linear(name: str) -> bool:
        return any(f".{lin}." in name for lin in LINEARS)

    return [e for e in table if is_linear(e[0])] + [e for e in table if not is_linear(e[0])]


def param_views(flat: np.ndarray, layout) -> dict[str, np.ndarray]:
    out = {}
    for name, (off, shape) in layout.items():
        n = math.prod(shape)
        out[name] = flat[off:off + n].reshape(shape)
    return out


def init_weights(params: dict[str, np.ndarray], cfg: GPTConfig, seed: int) -> None:
    """Normal(0, init_std) for matrices and embeddings, the residual projections
    scaled by 1/sqrt(2 n_layer) (GPT-2) so the residual stream's variance does not
    grow with depth; LayerNorm weight 1, biases 0."""
    rng = np.random.default_rng(seed)
    std = cfg.init_std
    for name, p in params.items():
        if name.endswith("ln1.w") or name.endswith("ln2.w") or name == "lnf.w":
            p[...] = 1.0
        elif p.ndim == 1:
            p[...] = 0.0
        else:
            s = std / math.sqrt(2 * cfg.n_layer) if name.endswith("proj.w") else std
            p[...] = rng.normal(0.0, s, size=p.shape)
