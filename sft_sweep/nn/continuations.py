"""Log-probabilities of several continuations of one prompt, the prompt computed once.

Multiple-choice scoring asks, for each item, how likely each candidate answer is after the
item's prompt. Scoring ``prompt + candidate`` as separate sequences runs the prompt through
the model once per candidate; here each prompt is prefilled once (the generation cache's
prefill, which is the training forward), and every candidate of the item then runs as a
short extension whose queries attend to that item's cached keys and values and, causally, to
the candidate's own. The function computed is the one of the full sequences: positions
continue from the prompt's length, and a candidate never sees padding or another candidate.
Only the float summation order differs from the full forward (the tests compare both).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from . import layers as L
from .generate import _Cache, _head, _inv_c, _pad, _prefill
from .gpt import CHUNK_ROWS, GPT

CHUNK_TOKENS = CHUNK_ROWS


def _log_softmax_at(logits: np.ndarray, targets: np.ndarray) -> np.ndarray:
    """log p(target) per row of (R, V) logits, in float64."""
    z = logits.astype(np.float64)
    z -= z.max(axis=-1, keepdims=True)
    lse = np.log(np.exp(z).sum(axis=-1))
    return z[np.arange(len(targets)), targets] - lse


def _extend(model: GPT, tokens: np.ndarray, pos: np.ndarray, owner: np.ndarray,
            prefix_len: np.ndarray, cache: _Cache, fw, ws: L.Workspace) -> np.ndarray:
    """Logits (R, A, V) after each of the rows' tokens (R, A) at positions ``pos``; row r
    attends to keys [0, prefix_len[owner[r]]) of its prompt's cache and to its own tokens
    up to the query's."""
    cfg, p = model.config, model.params
    R, A = tokens.shape
    H, hd, C, M = cfg.n_head, cfg.head_dim, cfg.n_embd, cfg.n_mlp
    N, P = R * A, int(prefix_len.max())
    ws.release_if_over_limit()
    inv_c = _inv_c(ws, C)
    x = (p["wte"][tokens] + p["wpe"][pos]).reshape(N, C)
    tmp = ws.get("ext_tmp", (N, C))
    xh, rstd = ws.aug("ext_xh", N, C), ws.get("ext_rstd", (N,))
    att, g2 = ws.aug("ext_att", N, C), ws.aug("ext_g2", N, M)
    allowed = np.concatenate([
        np.broadcast_to((np.arange(P)[None, :] < prefix_len[owner][:, None])[:, None, :], (R, A, P)),
        np.broadcast_to(np.tril(np.ones((A, A), dtype=bool)), (R, A, A))], axis=-1)
    bias = np.where(allowed, 0.0, -np.inf).astype(model.dtype)[:, None]    # (R, 1, A, P + A)
    for i in range(cfg.n_layer):
        L.layernorm_forward(x, xh[:, :C], rstd, tmp, inv_c)
        qkv = (xh @ fw["qkv", i]).reshape(R, A, 3, H, hd)                    # q arrives scaled
        q = qkv[:, :, 0].transpose(0, 2, 1, 3)                               # (R, H, A, hd)
        kt = np.concatenate([cache.kt[i][owner, :, :, :P], qkv[:, :, 1].transpose(0, 2, 3, 1)], axis=-1)
        v = np.concatenate([cache.v[i][owner, :, :P], qkv[:, :, 2].transpose(0, 2, 1, 3)], axis=2)
        E = q @ kt
        E += bias
        E -= E.max(axis=-1, keepdims=True)
        np.exp(E, out=E)
        o = E @ v
        o /= E.sum(axis=-1)[..., None]
        att[:, :C] = o.transpose(0, 2, 1, 3).reshape(N, C)
        x += att @ fw["proj", i]
        L.layernorm_forward(x, xh[:, :C], rstd, tmp, inv_c)
        u = xh @ fw["fc", i]
        L.gelu_forward(u, g2[:, :M], ws.get("ext_Pg", (N, M)), ws.get("ext_Tg", (N, M)))
        x += g2 @ fw["fcproj", i]
    return _head(model, ws, x, fw).reshape(R, A, -1)


def _chunks(n_inputs: list[int]) -> list[np.ndarray]:
    """Rows with extension inputs, similar lengths together, ~CHUNK_TOKENS padded tokens per chunk
    (small enough for the temporaries to stay in cache)."""
    order = [r for r in np.argsort(n_inputs, kind="stable") if n_inputs[r] > 0]
    chunks, cur = [], []
    for r in order:
        if cur and (len(cur) + 1) * n_inputs[r] > CHUNK_TOKENS:
            chunks.append(np.array(cur, dtype=np.intp))
            cur = []
        cur.append(r)
    if cur:
        chunks.append(np.array(cur, dtype=np.intp))
    return chunks


def _extension_logprob(model: GPT, conts: list[list[int]], owner: np.ndarray, lengths: np.ndarray,
                       cache: _Cache, fw, ws: L.Workspace) -> np.ndarray:
    """Sum of log p over each continuation's tokens after its first (the first is scored from
    the prefill)."""
    A = max(len(c) for c in conts) - 1
    tokens = np.zeros((len(conts), A), dtype=np.intp)       # inputs: all but the last token
    targets = np.zeros((len(conts), A), dtype=np.intp)      # targets: all but the first
    live = np.zeros((len(conts), A), dtype=bool)
    for r, c in enumerate(conts):
        n = len(c) - 1
        tokens[r, :n], targets[r, :n], live[r, :n] = c[:-1], c[1:], True
    # pad slots come after a row's live tokens, so no live query sees them; their position is clamped
    pos = np.minimum(lengths[owner][:, None] + np.arange(A)[None, :], model.config.block_size - 1)
    logits = _extend(model, tokens, pos, owner, lengths, cache, fw, ws)
    lp = _log_softmax_at(logits.reshape(-1, logits.shape[-1]), targets.reshape(-1)).reshape(targets.shape)
    return np.where(live, lp, 0.0).sum(axis=1)


def continuation_logprobs(model: GPT, prompts: Sequence[Sequence[int]],
                          continuations: Sequence[Sequence[Sequence[int]]]) -> list[np.ndarray]:
    """For prompt j and each of its continuations c: sum over c's tokens of log p(token | prompt
    and c's tokens before it), as a float64 array per prompt. Prompt + continuation must fit the
    block; every continuation has at least one token."""
    cfg = model.config
    prompts = [list(map(int, q)) for q in prompts]
    if not prompts:
        return []
    for j, (q, cs) in enumerate(zip(prompts, continuations, strict=True)):
        if not q:
            raise ValueError(f"prompt {j} is empty")
        for c in cs:
            if not c or len(q) + len(c) - 1 > cfg.block_size:
                raise ValueError(f"a continuation of prompt {j} is empty or does not fit block_size "
                                 f"{cfg.block_size} after its {len(q)}-token prompt")
    owner = np.array([j for j, cs in enumerate(continuations) for _ in cs], dtype=np.intp)
    conts = [list(map(int, c)) for cs in continuations for c in cs]
    ids, lengths = _pad(prompts)
    fw: dict = {}

    def work(i, s):
        cache, ws = _Cache(model, len(prompts)), L.Workspace(model.dtype)
        first = _prefill(model, ws, ids, lengths, cache, fw)
        scores = _log_softmax_at(first[owner], np.array([c[0] for c in conts], dtype=np.intp))
        for rows in _chunks([len(c) - 1 for c in conts]):
            scores[rows] += _extension_logprob(model, [conts[r] for r in rows], owner[rows], lengths,
                                               cache, fw, ws)
        return scores

    scores = model.workers.run(work, [slice(0, len(prompts))], prepare=lambda: fw.update(model._fold()))[0]
    out, start = [], 0
    for cs in continuations:
        out.append(scores[start:start + len(cs)])
        start += len(cs)
    return out
