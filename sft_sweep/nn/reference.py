"""The GPT written plainly: read this to learn the model, then check the fast path against it.

This is the same network as ``gpt.GPT`` (same parameter names, same numbers up to rounding),
written the way one would write it first: whole arrays, one line per operation, no folded
weights, no chunks, no threads, forward only. ``GPT`` computes exactly this, faster; its tests
compare the two in float64.

The architecture (GPT-2 style, pre-LayerNorm):

    x = wte[ids] + wpe[positions]                      token + position embeddings
    for each block h.i:
        x = x + proj(attention(ln1(x)))                causal multi-head self-attention
        x = x + mlp.proj(gelu(mlp.fc(ln2(x))))         a two-layer MLP
    logits = lnf(x) @ wte.T                             the output head shares wte

Attention: one matrix ``attn.qkv`` makes queries, keys and values (columns [q | k | v], each
``n_embd`` wide, split into ``n_head`` heads of ``head_dim``); a token attends to itself and the
tokens before it, and, in packed rows, only to tokens of its own segment. GELU is the tanh
approximation. LayerNorm uses eps 1e-5.
"""

from __future__ import annotations

import math
from typing import Mapping

import numpy as np

from .config import GPTConfig

LN_EPS = 1e-5


def layernorm(x: np.ndarray, w: np.ndarray, b: np.ndarray) -> np.ndarray:
    mu = x.mean(-1, keepdims=True)
    var = ((x - mu) ** 2).mean(-1, keepdims=True)
    return (x - mu) / np.sqrt(var + LN_EPS) * w + b


def gelu(x: np.ndarray) -> np.ndarray:
    return 0.5 * x * (1 + np.tanh(math.sqrt(2 / math.pi) * (x + 0.044715 * x ** 3)))


def softmax(s: np.ndarray) -> np.ndarray:
    e = np.exp(s - s.max(-1, keepdims=True))
    return e / e.sum(-1, keepdims=True)


def attention(x: np.ndarray, w_qkv: np.ndarray, b_qkv: np.ndarray, allowed: np.ndarray,
              n_head: int) -> np.ndarray:
    """Multi-head attention of (B, T, C) inputs; ``allowed`` (B, T, T) says who sees whom."""
    B, T, C = x.shape
    hd = C // n_head
    qkv = x @ w_qkv + b_qkv
    q, k, v = (qkv[..., j * C:(j + 1) * C].reshape(B, T, n_head, hd).transpose(0, 2, 1, 3)
               for j in range(3))
    scores = q @ k.transpose(0, 1, 3, 2) / math.sqrt(hd)
    scores = np.where(allowed[:, None], scores, -np.inf)
    out = softmax(scores) @ v                                        # (B, H, T, hd)
    return out.transpose(0, 2, 1, 3).reshape(B, T, C)


def logits(params: Mapping[str, np.ndarray], config: GPTConfig, ids: np.ndarray,
           segment_ids: np.ndarray | None = None, positions: np.ndarray | None = None) -> np.ndarray:
    """Logits (B, T, vocab) of ``ids`` (B, T), in float64.

    ``segment_ids`` (B, T): tokens attend only within their segment (packed rows);
    ``positions`` (B, T): each token's position row (packed rows restart at 0), else 0..T-1.
    """
    p = {name: np.asarray(v, dtype=np.float64) for name, v in params.items()}
    ids = np.asarray(ids)
    B, T = ids.shape
    allowed = np.broadcast_to(np.tril(np.ones((T, T), bool)), (B, T, T))
    if segment_ids is not None:
        allowed = allowed & (segment_ids[:, :, None] == segment_ids[:, None, :])
    pos = np.arange(T)[None, :] if positions is None else np.asarray(positions)
    x = p["wte"][ids] + p["wpe"][pos]
    for i in range(config.n_layer):
        h = f"h.{i}."
        a = attention(layernorm(x, p[h + "ln1.w"], p[h + "ln1.b"]), p[h + "attn.qkv.w"],
                      p[h + "attn.qkv.b"], allowed, config.n_head)
        x = x + a @ p[h + "attn.proj.w"] + p[h + "attn.proj.b"]
        m = layernorm(x, p[h + "ln2.w"], p[h + "ln2.b"]) @ p[h + "mlp.fc.w"] + p[h + "mlp.fc.b"]
        x = x + gelu(m) @ p[h + "mlp.proj.w"] + p[h + "mlp.proj.b"]
    return layernorm(x, p["lnf.w"], p["lnf.b"]) @ p["wte"].T


def token_nll(params: Mapping[str, np.ndarray], config: GPTConfig, ids: np.ndarray,
              targets: np.ndarray, segment_ids: np.ndarray | None = None,
              positions: np.ndarray | None = None) -> np.ndarray:
    """Cross-entropy (B, T) of ``targets`` under the model, in float64."""
    lg = logits(params, config, ids, segment_ids, positions)
    lg = lg - lg.max(-1, keepdims=True)
    logp = lg - np.log(np.exp(lg).sum(-1, keepdims=True))
    return -np.take_along_axis(logp, np.asarray(targets)[..., None], -1)[..., 0]
