"""Layers of the GPT as forward/backward pairs, side by side.

Every ``*_forward`` returns its output and a small ``cache`` tuple; the matching
``*_backward`` takes the upstream gradient and that cache and returns the input gradient,
writing parameter gradients into caller-provided arrays (views into one flat gradient
buffer), so nothing is allocated per parameter and nothing is accumulated by accident.

Conventions that keep float32 mode float32 end to end:

* scalars that multiply arrays are Python floats (under numpy 2 a numpy float64 scalar
  would promote a float32 array to float64);
* row sums are matrix-vector products with a ones vector (BLAS beats ``sum(axis=-1)``);
* temporaries are reused through ``out=`` where the array is large.

Activations are 2-D ``(N, C)`` with ``N = B * T`` rows except inside attention.
"""

from __future__ import annotations

import math

import numpy as np

# GELU, tanh approximation (GPT-2's): gelu(x) = 0.5 x (1 + tanh(k (x + 0.044715 x^3))),
# k = sqrt(2/pi). Computed as x * sigmoid(2u) with u = k (x + 0.044715 x^3), which is the
# same function (0.5 (1 + tanh u) == sigmoid(2u)) and needs one exp instead of a tanh.
_GELU_K = math.sqrt(2.0 / math.pi)
_GELU_C = 0.044715


def ones(n: int, dtype) -> np.ndarray:
    return np.ones(n, dtype=dtype)


# --------------------------------------------------------------------------- embedding

def embedding_forward(wte: np.ndarray, wpe: np.ndarray, ids: np.ndarray) -> np.ndarray:
    """``x[b, t] = wte[ids[b, t]] + wpe[t]`` as (B*T, C)."""
    B, T = ids.shape
    x = wte[ids.reshape(-1)]                      # gather copies: (N, C), C-contiguous
    x.reshape(B, T, -1)[...] += wpe[:T]
    return x


def embedding_backward(dx: np.ndarray, ids: np.ndarray, dwte: np.ndarray, dwpe: np.ndarray) -> None:
    """Adds the token-embedding gradient into ``dwte`` and writes ``dwpe``.

    ``dwte`` already holds the tied output head's gradient, hence ``add.at`` (which
    handles repeated ids) rather than assignment.
    """
    B, T = ids.shape
    C = dx.shape[1]
    np.add.at(dwte, ids.reshape(-1), dx)
    dwpe[T:] = 0.0
    # Sum over the batch as a vector-matrix product: (B,) @ (B, T*C).
    np.matmul(ones(B, dx.dtype), dx.reshape(B, T * C), out=dwpe[:T].reshape(T * C))


# --------------------------------------------------------------------------- layernorm

LN_EPS = 1e-5


def layernorm_forward(x: np.ndarray, w: np.ndarray, b: np.ndarray):
    """LayerNorm over the last axis of ``x`` (N, C); biased variance, eps 1e-5."""
    N, C = x.shape
    inv_c = ones(C, x.dtype) * (1.0 / C)
    mean = x @ inv_c                               # (N,)
    xhat = x - mean[:, None]
    var = np.square(xhat) @ inv_c
    var += LN_EPS
    rstd = np.sqrt(var, out=var)
    np.divide(1.0, rstd, out=rstd)
    xhat *= rstd[:, None]
    y = xhat * w
    y += b
    return y, (xhat, rstd, w)


def layernorm_backward(dy: np.ndarray, cache, dw: np.ndarray, db: np.ndarray) -> np.ndarray:
    xhat, rstd, w = cache
    N, C = dy.shape
    one_n = ones(N, dy.dtype)
    np.matmul(one_n, dy, out=db)
    g = dy * xhat
    np.matmul(one_n, g, out=dw)
    # dx = rstd * (dxhat - mean(dxhat) - xhat * mean(dxhat * xhat)), dxhat = dy * w
    dxhat = np.multiply(dy, w, out=g)
    inv_c = ones(C, dy.dtype) * (1.0 / C)
    m1 = dxhat @ inv_c
    m2 = (dxhat * xhat) @ inv_c
    dx = xhat * m2[:, None]
    dx += m1[:, None]
    np.subtract(dxhat, dx, out=dx)
    dx *= rstd[:, None]
    return dx


# --------------------------------------------------------------------------- linear

def linear_forward(x: np.ndarray, w: np.ndarray, b: np.ndarray) -> np.ndarray:
    """``y = x @ w + b`` with ``w`` stored (C_in, C_out)."""
    y = x @ w
    y += b
    return y


def linear_backward(dy: np.ndarray, x: np.ndarray, w: np.ndarray, dw: np.ndarray,
                    db: np.ndarray, need_dx: bool = True):
    np.matmul(x.T, dy, out=dw)
    np.matmul(ones(dy.shape[0], dy.dtype), dy, out=db)
    return dy @ w.T if need_dx else None


# --------------------------------------------------------------------------- GELU

def gelu_forward(x: np.ndarray):
    """GELU, tanh approximation. Returns (y, cache) with cache = (x, s), s = sigmoid(2u)."""
    x2 = np.square(x)
    # t = -2u = -2k x (1 + c x^2)
    t = np.multiply(x2, -2.0 * _GELU_K * _GELU_C)
    t += -2.0 * _GELU_K
    t *= x
    np.exp(t, out=t)
    t += 1.0
    s = np.divide(1.0, t, out=t)                   # sigmoid(2u)
    y = x * s
    return y, (x, s, x2)


def gelu_backward(dy: np.ndarray, cache) -> np.ndarray:
    """d gelu/dx = s + x s (1 - s) * 2k (1 + 3c x^2)."""
    x, s, x2 = cache
    # a = 2k (1 + 3c x^2) * x  (reuse x2 in place: the cache is used once)
    a = np.multiply(x2, 2.0 * _GELU_K * 3.0 * _GELU_C, out=x2)
    a += 2.0 * _GELU_K
    a *= x
    one_minus_s = np.subtract(1.0, s)
    a *= one_minus_s
    a += 1.0
    a *= s
    a *= dy
    return a


# --------------------------------------------------------------------------- attention

def causal_bias(T: int, dtype, segment_ids: np.ndarray | None = None) -> np.ndarray:
    """Additive attention bias: 0 where query t may see key s, -inf elsewhere.

    Shape (T, T) without segments, (B, 1, T, T) with them. Every query sees at least
    itself, so no softmax row is all -inf.
    """
    allowed = np.tril(np.ones((T, T), dtype=bool))
    if segment_ids is not None:
        same = segment_ids[:, :, None] == segment_ids[:, None, :]
        allowed = (same & allowed)[:, None, :, :]
    bias = np.zeros(allowed.shape, dtype=dtype)
    bias[~allowed] = -np.inf
    return bias


def attention_forward(qkv: np.ndarray, B: int, T: int, n_head: int, bias: np.ndarray):
    """Causal multi-head self-attention from fused ``qkv`` (N, 3C) to (N, C).

    q is pre-scaled by 1/sqrt(hd) (cheaper on (T, hd) than on (T, T)); K is stored
    transposed and contiguous, (B, H, hd, T), because a strided K makes the score
    product slow.
    """
    C = qkv.shape[1] // 3
    hd = C // n_head
    dt = qkv.dtype
    v5 = qkv.reshape(B, T, 3, n_head, hd)
    q = np.empty((B, n_head, T, hd), dtype=dt)
    np.multiply(v5[:, :, 0].transpose(0, 2, 1, 3), 1.0 / math.sqrt(hd), out=q)
    kt = np.empty((B, n_head, hd, T), dtype=dt)
    kt[...] = v5[:, :, 1].transpose(0, 2, 3, 1)
    v = np.empty((B, n_head, T, hd), dtype=dt)
    v[...] = v5[:, :, 2].transpose(0, 2, 1, 3)

    p = q @ kt                                     # (B, H, T, T)
    p += bias
    m = p.max(axis=-1, keepdims=True)
    p -= m
    np.exp(p, out=p)
    rs = p @ ones(T, dt)                           # row sums
    np.divide(1.0, rs, out=rs)
    p *= rs[..., None]
    o = p @ v                                      # (B, H, T, hd)
    out = np.empty((B, T, n_head, hd), dtype=dt)
    out[...] = o.transpose(0, 2, 1, 3)
    return out.reshape(B * T, C), (q, kt, v, p)


def attention_backward(dout: np.ndarray, cache, B: int, T: int, n_head: int) -> np.ndarray:
    q, kt, v, p = cache
    hd = q.shape[-1]
    C = n_head * hd
    dt = dout.dtype
    do = np.empty((B, n_head, T, hd), dtype=dt)
    do[...] = dout.reshape(B, T, n_head, hd).transpose(0, 2, 1, 3)

    dqkv = np.empty((B, T, 3, n_head, hd), dtype=dt)
    # dV = P^T dO
    dqkv[:, :, 2] = (p.transpose(0, 1, 3, 2) @ do).transpose(0, 2, 1, 3)
    dp = do @ v.transpose(0, 1, 3, 2)              # (B, H, T, T)
    # softmax backward: dS = P * (dP - rowsum(dP * P))
    dp *= p
    r = dp @ ones(T, dt)
    np.multiply(p, r[..., None], out=p)            # p is dead after this layer's backward
    dp -= p
    # S = q_scaled @ K^T: dq = scale * dS K, dK = dS^T q_scaled
    dq = dp @ kt.transpose(0, 1, 3, 2)
    np.multiply(dq.transpose(0, 2, 1, 3), 1.0 / math.sqrt(hd), out=dqkv[:, :, 0])
    dqkv[:, :, 1] = (dp.transpose(0, 1, 3, 2) @ q).transpose(0, 2, 1, 3)
    return dqkv.reshape(B * T, 3 * C)


# --------------------------------------------------------------------------- softmax + cross-entropy

def softmax_xent_forward(logits: np.ndarray, targets: np.ndarray):
    """Per-row cross-entropy of ``logits`` (N, V) against ``targets`` (N,).

    Returns (ce, probs); ``probs`` is computed in place over ``logits`` to save a
    (N, V) buffer, so the logits are gone afterwards.
    """
    N, V = logits.shape
    m = logits.max(axis=1)
    logits -= m[:, None]
    picked = logits[np.arange(N), targets]         # shifted logit of the target
    np.exp(logits, out=logits)
    z = logits @ ones(V, logits.dtype)
    ce = np.log(z) - picked
    np.divide(1.0, z, out=z)
    logits *= z[:, None]
    return ce, logits


def softmax_xent_backward(probs: np.ndarray, targets: np.ndarray, weight: np.ndarray) -> np.ndarray:
    """d(sum(weight * ce))/d logits = weight * (probs - onehot), in place over ``probs``."""
    N = probs.shape[0]
    probs[np.arange(N), targets] -= 1.0
    probs *= weight[:, None]
    return probs
