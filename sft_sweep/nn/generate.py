"""Autoregressive generation with a key/value cache, batched over prompts of any length.

Each prompt keeps its own positions (0..len-1): the batch is right-padded for the prefill,
where causality already hides the pad slots from real tokens, and every decode step writes
row ``b``'s new key/value at that row's own position and masks keys beyond it. So a row
never attends to padding, and the cached path computes the same function as re-running
the full forward on each row's sequence (``use_cache=False``), which the tests compare.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence

import numpy as np

from . import layers as L
from .gpt import GPT, QUERY_BLOCK

_ROWS_PER_THREAD = 16


class _Cache:
    """K (stored transposed: (B, H, hd, S), contiguous over positions) and V per layer,
    plus a workspace for the decode step's small temporaries."""

    def __init__(self, model: GPT, B: int) -> None:
        cfg = model.config
        S, H, hd = cfg.block_size, cfg.n_head, cfg.head_dim
        self.kt = [np.zeros((B, H, hd, S), dtype=model.dtype) for _ in range(cfg.n_layer)]
        self.v = [np.zeros((B, H, S, hd), dtype=model.dtype) for _ in range(cfg.n_layer)]
        self.ws = L.Workspace(model.dtype)


def _prefill(model: GPT, ws: L.Workspace, ids: np.ndarray, lengths: np.ndarray,
             cache: _Cache, fw) -> np.ndarray:
    """Runs the right-padded prompts through the training forward (so the numerics are
    the full-recompute path's), copies K and V into the cache, returns the logits at
    each prompt's last token."""
    cfg = model.config
    B, T = ids.shape
    model._forward_layers(ws, ids, None, fw, for_backward=False)
    blocks = L.query_blocks(T, QUERY_BLOCK)
    for i in range(cfg.n_layer):
        buf = model._block_buffers(ws, i, B, T, blocks)
        cache.kt[i][..., :T] = buf.kt
        cache.v[i][:, :, :T] = buf.v
    last = ws.get("x", (B * T, cfg.n_embd)).reshape(B, T, -1)[np.arange(B), lengths - 1]
    return _head(model, cache.ws, last, fw)


def _head(model: GPT, ws: L.Workspace, x: np.ndarray, fw) -> np.ndarray:
    B, C = x.shape
    xh, rstd = ws.aug("xhf", B, C), ws.get("rstdf", (B,))
    L.layernorm_forward(x, xh[:, :C], rstd, ws.get("tmpC", (B, C)), _inv_c(ws, C))
    return xh @ fw["head"]


def _inv_c(ws: L.Workspace, C: int) -> np.ndarray:
    inv = ws.get("inv_c", (C,))
    inv.fill(1.0 / C)
    return inv


def _decode(model: GPT, tokens: np.ndarray, pos: np.ndarray, cache: _Cache, fw) -> np.ndarray:
    """One token per row at that row's position ``pos[b]``; returns next-token logits (B, V)."""
    cfg, p, ws = model.config, model.params, cache.ws
    ws.release_if_over_limit()
    B = tokens.shape[0]
    H, hd, C, M = cfg.n_head, cfg.head_dim, cfg.n_embd, cfg.n_mlp
    rows = np.arange(B)
    S = int(pos.max()) + 1
    inv_c = _inv_c(ws, C)
    x = p["wte"][tokens] + p["wpe"][pos]
    tmp = ws.get("tmpC", (B, C))
    xh, rstd = ws.aug("xh", B, C), ws.get("rstd", (B,))
    att = ws.aug("att", B, C)
    g2 = ws.aug("g2", B, M)
    # keys beyond a row's own position are stale or padding
    bias = np.where(np.arange(S)[None, :] <= pos[:, None], 0.0, -np.inf).astype(model.dtype)
    bias = bias[:, None, None, :]

    def add_bias(E):
        E += bias

    for i in range(cfg.n_layer):
        L.layernorm_forward(x, xh[:, :C], rstd, tmp, inv_c)
        qkv = (xh @ fw["qkv", i]).reshape(B, 3, H, hd)      # q arrives scaled
        kt, vc = cache.kt[i], cache.v[i]
        kt[rows, :, :, pos] = qkv[:, 1]
        vc[rows, :, pos, :] = qkv[:, 2]
        q = np.ascontiguousarray(qkv[:, 0])[:, :, None, :]      # (B, H, 1, hd)
        E = np.empty((B, H, 1, S), dtype=model.dtype)
        irs = np.empty((B, H, 1), dtype=model.dtype)
        L.softmax_rows(q, kt[..., :S], E, irs, ws.ones(S), add_bias)
        o = E @ vc[:, :, :S]
        o *= irs[..., None]
        att[:, :C] = o.reshape(B, C)
        x += att @ fw["proj", i]
        L.layernorm_forward(x, xh[:, :C], rstd, tmp, inv_c)
        u = xh @ fw["fc", i]
        L.gelu_forward(u, g2[:, :M], ws.get("Pg", (B, M)), ws.get("Tg", (B, M)))
        x += g2 @ fw["fcproj", i]
    return _head(model, ws, x, fw)


def _pad(seqs: Sequence[Sequence[int]]) -> tuple[np.ndarray, np.ndarray]:
    lengths = np.array([len(s) for s in seqs], dtype=np.intp)
    ids = np.zeros((len(seqs), int(lengths.max())), dtype=np.intp)
    for b, s in enumerate(seqs):
        ids[b, :len(s)] = s
    return ids, lengths


def _choose(logits: np.ndarray, temperature: float, top_k: int, top_p: float,
            rng: np.random.Generator) -> np.ndarray:
    """Next token per row: argmax at temperature 0, else a sample from the filtered softmax."""
    if temperature == 0.0:
        return np.argmax(logits, axis=-1)
    z = logits.astype(np.float64) / temperature
    V = z.shape[-1]
    if 0 < top_k < V:
        kth = np.partition(z, V - top_k, axis=-1)[:, V - top_k][:, None]
        z = np.where(z < kth, -np.inf, z)
    z -= z.max(axis=-1, keepdims=True)
    probs = np.exp(z)
    probs /= probs.sum(axis=-1, keepdims=True)
    if top_p < 1.0:
        order = np.argsort(-probs, axis=-1, kind="stable")
        sorted_p = np.take_along_axis(probs, order, axis=-1)
        before = np.cumsum(sorted_p, axis=-1) - sorted_p        # mass ranked above each token
        drop_sorted = before >= top_p                            # the top token is always kept
        drop = np.zeros_like(drop_sorted)
        np.put_along_axis(drop, order, drop_sorted, axis=-1)
        probs = np.where(drop, 0.0, probs)
        probs /= probs.sum(axis=-1, keepdims=True)
    cdf = np.cumsum(probs, axis=-1)
    u = rng.random(probs.shape[0])[:, None] * cdf[:, -1:]
    return np.minimum((cdf <= u).sum(axis=-1), V - 1)


def restrain_repeats(logits: np.ndarray, generated: Sequence[Sequence[int]], live: np.ndarray,
                     repetition_penalty: float = 1.0, no_repeat_ngram: int = 0) -> np.ndarray:
    """Logits (B, V) adjusted against loops, from each live row's own generated tokens.

    ``repetition_penalty`` p > 1 makes every token the row has already generated less likely:
    its logit is divided by p when positive and multiplied by p when negative (so it always
    drops). ``no_repeat_ngram`` n > 0 forbids any token that would complete an n-gram the row
    has already generated. Only the answer's own tokens count, not the prompt's: an answer may
    quote its instruction. With p == 1 and n == 0 the logits are returned unchanged.
    """
    if repetition_penalty == 1.0 and no_repeat_ngram <= 0:
        return logits
    out = np.array(logits, copy=True)
    for b, gen in enumerate(generated):
        if not live[b] or not gen:
            continue
        if repetition_penalty != 1.0:
            seen = np.unique(np.asarray(gen, dtype=np.intp))
            z = out[b, seen]
            out[b, seen] = np.where(z > 0, z / repetition_penalty, z * repetition_penalty)
        n = no_repeat_ngram
        if n > 0 and len(gen) >= n - 1:
            head = list(gen[len(gen) - n + 1:]) if n > 1 else []
            banned = [gen[i + n - 1] for i in range(len(gen) - n + 1) if list(gen[i:i + n - 1]) == head]
            if banned:
                out[b, banned] = -np.inf
    return out


def _check_restraints(repetition_penalty: float, no_repeat_ngram: int) -> tuple[float, int]:
    p = float(repetition_penalty)
    if not (p > 0.0 and math.isfinite(p)):
        raise ValueError(f"repetition_penalty must be a positive number (1 = off), got {repetition_penalty!r}")
    if isinstance(no_repeat_ngram, bool) or int(no_repeat_ngram) != no_repeat_ngram or no_repeat_ngram < 0:
        raise ValueError(f"no_repeat_ngram must be a non-negative integer (0 = off), got {no_repeat_ngram!r}")
    return p, int(no_repeat_ngram)


def generate(model: GPT, prompts: Sequence[Sequence[int]], max_new_tokens: int, *,
             stop_ids: Iterable[int] = (), temperature: float = 0.0, top_k: int = 0,
             top_p: float = 1.0, rng: np.random.Generator | None = None,
             use_cache: bool = True, repetition_penalty: float = 1.0,
             no_repeat_ngram: int = 0) -> list[list[int]]:
    """New tokens for each prompt (batched together; prompts may differ in length).

    A row stops after producing any id in ``stop_ids`` (the stop id is included in its
    output), after ``max_new_tokens``, or when prompt + generated reaches ``block_size``.
    ``temperature == 0`` is greedy; otherwise tokens are sampled after ``top_k`` (0 = off)
    and nucleus ``top_p`` filtering with ``rng`` (default: a fresh unseeded Generator).
    ``use_cache=False`` recomputes the whole forward every step (reference / tests).
    ``repetition_penalty`` / ``no_repeat_ngram``: decoding controls against loops, off by
    default (see ``restrain_repeats``).
    """
    cfg = model.config
    prompts = [list(map(int, p)) for p in prompts]
    if isinstance(max_new_tokens, bool) or int(max_new_tokens) != max_new_tokens or max_new_tokens < 0:
        raise ValueError(f"max_new_tokens must be a non-negative integer, got {max_new_tokens!r}")
    max_new_tokens = int(max_new_tokens)
    temperature = float(temperature)
    if not (temperature >= 0.0 and math.isfinite(temperature)):
        raise ValueError(f"temperature must be >= 0, got {temperature}")
    if int(top_k) != top_k or top_k < 0:
        raise ValueError(f"top_k must be a non-negative integer, got {top_k!r}")
    top_k = int(top_k)
    top_p = float(top_p)
    if not (0.0 < top_p <= 1.0):
        raise ValueError(f"top_p must lie in (0, 1], got {top_p}")
    repetition_penalty, no_repeat_ngram = _check_restraints(repetition_penalty, no_repeat_ngram)
    stops = {int(s) for s in stop_ids}
    for b, p in enumerate(prompts):
        if not p:
            raise ValueError(f"prompt {b} is empty; generation needs at least one token")
        if len(p) > cfg.block_size:
            raise ValueError(
                f"prompt {b} has {len(p)} tokens, more than the model's block_size {cfg.block_size}")
        if min(p) < 0 or max(p) >= cfg.vocab_size:
            raise ValueError(f"prompt {b} has ids outside the vocabulary 0..{cfg.vocab_size - 1}")
    if rng is None:
        rng = np.random.default_rng()
    B = len(prompts)
    out: list[list[int]] = [[] for _ in range(B)]
    if B == 0 or max_new_tokens == 0:
        return out
    seqs = [list(p) for p in prompts]
    done = np.array([len(s) >= cfg.block_size for s in seqs])
    if done.all():
        return out

    def shards_for(n: int) -> list[slice]:
        # Decode steps are tiny; threads only pay off for many rows each.
        return model.workers.shards(n) if n >= _ROWS_PER_THREAD * model.threads else [slice(0, n)]

    shards = shards_for(B)
    if use_cache:
        caches = [_Cache(model, s.stop - s.start) for s in shards]
        fw: dict = {}

        def first_logits():
            ids, lengths = _pad(seqs)

            def run(i, s):
                ws = model.workers.workspace(i, ids[s].shape)
                return _prefill(model, ws, ids[s], lengths[s], caches[i], fw)

            return np.concatenate(model.workers.run(run, shards, prepare=lambda: fw.update(model._fold())))

        def next_logits(tokens):
            # Finished rows still in the cache run on a clamped position; their output is ignored.
            pos = np.array([min(len(seqs[b]) - 1, cfg.block_size - 1) for b in active], dtype=np.intp)
            res = model.workers.run(lambda i, s: _decode(model, tokens[s], pos[s], caches[i], fw),
                             shards)
            return np.concatenate(res)

        def compact(keep):
            """The cache keeps only the rows in ``keep``, re-split over the shards they need."""
            nonlocal shards
            new_shards = shards_for(int(keep.sum()))
            for i in range(cfg.n_layer):
                kt = np.concatenate([c.kt[i] for c in caches])[keep]
                v = np.concatenate([c.v[i] for c in caches])[keep]
                for c, s in zip(caches, new_shards):
                    c.kt[i], c.v[i] = kt[s], v[s]
            del caches[len(new_shards):]
            shards = new_shards
    else:
        def first_logits():
            ids, lengths = _pad([seqs[b] for b in active])
            return model.logits(ids)[np.arange(len(active)), lengths - 1]

        def next_logits(tokens):
            return first_logits()

        def compact(keep):
            pass

    active = np.arange(B)  # the original row of each row of the logits (and of the cache)
    logits = first_logits()
    for _ in range(max_new_tokens):
        logits = restrain_repeats(logits, [out[b] for b in active], ~done[active], repetition_penalty,
                                  no_repeat_ngram)
        tokens = _choose(logits, temperature, top_k, top_p, rng).astype(np.intp)
        for j, b in enumerate(active):
            if done[b]:
                continue
            t = int(tokens[j])
            out[b].append(t)
            seqs[b].append(t)
            if t in stops or len(out[b]) >= max_new_tokens or len(seqs[b]) >= cfg.block_size:
                done[b] = True
        if done.all():
            break
        keep = ~done[active]
        if keep.sum() <= 0.75 * len(active):
            # Rows that have finished leave once they are a quarter of the batch, so the
            # remaining steps compute only rows still generating (each row's numbers stay its own).
            compact(keep)
            active, tokens = active[keep], tokens[keep]
        logits = next_logits(tokens)
    return out
