"""Layers of the GPT as forward/backward pairs, side by side.

Each ``*_forward`` writes into buffers the caller hands it (views into a reusable
workspace) and each ``*_backward`` reads what its forward stored. The model runs them
on *chunks* of a few whole sequences (~512 rows) at a time, so the temporaries of one
chunk stay in the core's L2 cache while they are reused.

Conventions that keep float32 mode float32 end to end and fast:

* scalars that multiply arrays are Python floats (under numpy 2 a numpy float64 scalar
  would promote a float32 array to float64);
* row sums are matrix-vector products with a ones vector (BLAS beats ``sum(axis=-1)``);
* every matrix operand of a small batched product is contiguous or a plain transpose of
  the *left* operand: a transposed right operand is about twice as slow in OpenBLAS
  here, which is why attention stores both K^T and K (and V and V^T);
* a linear layer's bias is the last row of its weight block ``wb`` (C_in + 1, C_out),
  and its input carries a trailing column of ones, so one product computes ``x W + b``
  and one product gives both gradients;
* a LayerNorm that feeds a linear layer is folded into it (``fold_ln_linear``): the
  product consumes the normalized ``xhat`` directly, and the LayerNorm's own gradients
  are recovered from the folded weight's gradient (``unfold_ln_linear``).
"""

from __future__ import annotations

import math

import numpy as np

LN_EPS = 1e-5

# GELU, tanh approximation (GPT-2's, PyTorch's approximate="tanh"):
#   gelu(u) = 0.5 u (1 + tanh(z)),  z = A u + B u^3 = u * (A + B u^2)
_GELU_A = math.sqrt(2.0 / math.pi)
_GELU_B = _GELU_A * 0.044715

# Attention's softmax skips the per-row max subtraction (a slow reduction along short
# rows in numpy) when every score of a block is below _SOFTMAX_SAFE_MAX and no row sum
# falls below _SOFTMAX_MIN_ROWSUM; otherwise it takes the classic shifted form. Either
# way it is the softmax to working precision. The bounds keep E = exp(S) and
# 1 / rowsum(E) within about 1e-10..1e10, so nothing in the backward (which scales the
# incoming gradient by 1 / rowsum) comes near float32's denormal range.
_SOFTMAX_SAFE_MAX = 20.0
_SOFTMAX_MIN_ROWSUM = 1e-10


class Workspace:
    """Named buffers reused across calls, so a training step allocates (and page-faults)
    almost nothing. One per worker thread; not shared between threads.

    Buffers are keyed by name and shape and live until ``release_if_over_limit``, which the
    owner calls between calls: a call's forward fills buffers its backward reads, so nothing
    is dropped in the middle of one, however large it grows. Between calls, a workspace
    that holds more than ``limit_bytes`` (many different shapes) drops the buffers the last
    call did not use; those it used stay for the next call, which most likely has its shape.
    """

    def __init__(self, dtype, limit_bytes: int = 1 << 30) -> None:
        self.dtype = np.dtype(dtype)
        self.limit = limit_bytes
        self._bufs: dict = {}
        self._used: set = set()
        self.nbytes = 0
        self._consts: dict = {}

    def get(self, name, shape: tuple[int, ...]) -> np.ndarray:
        key = (name, shape)
        a = self._bufs.get(key)
        if a is None:
            a = self._bufs[key] = np.empty(shape, dtype=self.dtype)
            self.nbytes += a.nbytes
        self._used.add(key)
        return a

    def release_if_over_limit(self) -> None:
        """Between calls: when the buffers hold more than the limit, drops those the last call
        did not use. Starts the next call's count of what it uses."""
        if self.nbytes > self.limit:
            for key in [k for k in self._bufs if k not in self._used]:
                self.nbytes -= self._bufs.pop(key).nbytes
        self._used.clear()

    def aug(self, name, rows: int, cols: int) -> np.ndarray:
        """A (rows, cols + 1) buffer whose last column is ones (the bias input)."""
        key = (name, (rows, cols + 1))
        a = self._bufs.get(key)
        if a is None:
            a = self.get(name, (rows, cols + 1))
            a[:, cols] = 1.0
        self._used.add(key)
        return a

    def ones(self, n: int) -> np.ndarray:
        o = self._consts.get(n)
        if o is None:
            o = self._consts[n] = np.ones(n, dtype=self.dtype)
        return o

    def diag_bias(self, n: int) -> np.ndarray:
        """(n, n) additive causal mask: 0 on and below the diagonal, -inf above."""
        key = ("causal", n)
        b = self._consts.get(key)
        if b is None:
            b = self._consts[key] = np.triu(np.full((n, n), -np.inf, dtype=self.dtype), k=1)
        return b


# --------------------------------------------------------------------------- embedding

def embedding_forward(wte, wpe, ids, out, positions=None, tmp=None) -> None:
    """``out[b*T + t] = wte[ids[b, t]] + wpe[t]``; out is (B*T, C).

    With ``positions`` (B, T) (packed rows: each document restarts at 0) the position
    row is ``wpe[positions[b, t]]`` instead; ``tmp`` is an optional (B*T, C) scratch.
    """
    B, T = ids.shape
    np.take(wte, ids.reshape(-1), axis=0, out=out)
    if positions is None:
        out.reshape(B, T, -1)[...] += wpe[:T]
    else:
        out += np.take(wpe, positions.reshape(-1), axis=0, out=tmp)


def _add_rows_by_index(dst, index, rows) -> None:
    """``dst[index[n]] += rows[n]`` for every n (repeated indices summed).

    Rows are grouped by index (stable sort) and summed per group with ``add.reduceat``:
    twice as fast as ``add.at`` and as deterministic.
    """
    order = np.argsort(index, kind="stable")
    sorted_idx = index[order]
    starts = np.flatnonzero(np.r_[True, sorted_idx[1:] != sorted_idx[:-1]])
    dst[sorted_idx[starts]] += np.add.reduceat(rows[order], starts, axis=0)


def embedding_backward(dx, ids, dwte, dwpe, ones_b, positions=None) -> None:
    """Adds the token-embedding gradient into ``dwte`` (which already holds the tied
    head's gradient) and writes ``dwpe``.

    Without ``positions`` row t of every sequence used ``wpe[t]``, so ``dwpe[:T]`` is one
    product with a ones vector; with ``positions`` (B, T) the rows of dx are scattered
    (summed) into ``dwpe[positions]`` the same way as the token ids into ``dwte``.
    """
    B, T = ids.shape
    C = dx.shape[1]
    _add_rows_by_index(dwte, ids.reshape(-1), dx)
    if positions is None:
        dwpe[T:] = 0.0
        np.matmul(ones_b, dx.reshape(B, T * C), out=dwpe[:T].reshape(T * C))
    else:
        dwpe[...] = 0.0
        _add_rows_by_index(dwpe, positions.reshape(-1), dx)


# --------------------------------------------------------------------------- layernorm
# The affine part (w, b) lives in the following linear layer's folded weights, so these
# two functions only normalize: xhat = (x - mean) * rstd.

def layernorm_forward(x, xhat, rstd, tmp, inv_c, work=None) -> None:
    """x (R, C) -> xhat (R, C), rstd (R,). ``inv_c`` = ones/C.

    ``xhat`` is usually a strided view (the data part of a ones-augmented buffer), on
    which row-broadcast passes are slow; with a contiguous ``work`` buffer the passes run
    there and one copy fills ``xhat``.
    """
    out = xhat if work is None else work
    mean = x @ inv_c
    np.subtract(x, mean[:, None], out=out)
    np.multiply(out, out, out=tmp)
    var = tmp @ inv_c
    var += LN_EPS
    np.sqrt(var, out=var)
    np.divide(1.0, var, out=rstd)
    out *= rstd[:, None]
    if work is not None:
        np.copyto(xhat, work)


def layernorm_backward(dxhat, xhat, rstd, tmp, inv_c, dx, accumulate: bool, work=None) -> None:
    """dx (+)= rstd * (dxhat - mean(dxhat) - xhat * mean(dxhat * xhat)); clobbers dxhat.
    ``work``: contiguous scratch to copy a strided ``xhat`` into first (faster passes)."""
    if work is not None:
        np.copyto(work, xhat)
        xhat = work
    m1 = dxhat @ inv_c
    np.multiply(dxhat, xhat, out=tmp)
    m2 = tmp @ inv_c
    np.multiply(xhat, m2[:, None], out=tmp)
    tmp += m1[:, None]
    dxhat -= tmp
    if accumulate:
        dxhat *= rstd[:, None]
        dx += dxhat
    else:
        np.multiply(dxhat, rstd[:, None], out=dx)


# --------------------------------------------------------------------------- LayerNorm folded into a linear layer
#   LN(x) @ W + bias = (xhat * w + b) @ W + bias = xhat @ (w[:, None] * W) + (b @ W + bias)
# so with F = [w[:, None] * W ; b @ W + bias] (C + 1, K) and xhat carrying a ones column,
# the product is one GEMM and the gradient of F gives back all four gradients:
#   dW = w[:, None] * dF[:C] + b[:, None] * dF[C],  dbias = dF[C],
#   dw = rowsum(W * dF[:C]),                        db = W @ dF[C].
# ``col_scale`` additionally scales output columns (attention's 1/sqrt(head_dim) on q):
# F = G * col_scale, so dG = dF * col_scale, and the formulas above apply to dG.

def fold_ln_linear(lnw, lnb, W, bias, out, col_scale=None) -> None:
    np.multiply(W, lnw[:, None], out=out[:-1])
    np.matmul(lnb, W, out=out[-1])
    if bias is not None:
        out[-1] += bias
    if col_scale is not None:
        out *= col_scale


def unfold_ln_linear(dF, lnw, lnb, W, dW, dbias, dlnw, dlnb, col_scale=None) -> None:
    """Gradients of (W, bias, LN w, LN b) from dF, the gradient of the folded weights.
    ``dW`` may be a transposed view (the tied head writes into dwte.T); clobbers dF."""
    if col_scale is not None:
        dF *= col_scale
    dc = dF[-1]
    np.matmul(W, dc, out=dlnb)
    np.einsum("ij,ij->i", W, dF[:-1], out=dlnw)
    np.multiply(dF[:-1], lnw[:, None], out=dW)
    dW += np.multiply.outer(lnb, dc)
    if dbias is not None:
        dbias[...] = dc


# --------------------------------------------------------------------------- GELU
# Works on one chunk; ``u`` is the stored pre-activation. The forward produces
# g2 = 2 * gelu(u) = u * (1 + tanh z): the factor 0.5 lives in the next layer's weights
# (one pass fewer). T1 = 1 + tanh z is stored for the backward (the tanh is the costly
# pass); P and g2 are recomputed from u (cheaper than a round trip through memory).
# The backward multiplies by d(g2)/du:
#   d g2/du = T1 + u (1 - th^2) dz/du,  T1 = 1 + th,  1 - th^2 = (2 - T1) T1,
#   dz/du = A + 3B u^2 = 3P - 2A with P = A + B u^2
#   => d g2/du = T1 * (1 + u (2 - T1)(3P - 2A)).

def gelu_forward(u, g2, P, T1) -> None:
    """g2 (R, M) view <- u (1 + tanh(u (A + B u^2))); T1 <- 1 + tanh(...); P scratch."""
    np.multiply(u, u, out=P)
    P *= _GELU_B
    P += _GELU_A
    np.multiply(P, u, out=T1)
    np.tanh(T1, out=T1)
    T1 += 1.0
    np.multiply(T1, u, out=g2)


def gelu_recompute(u, T1, g2, P) -> None:
    """From u and the stored T1: P = A + B u^2 and g2 = T1 u (what the backward needs)."""
    np.multiply(u, u, out=P)
    P *= _GELU_B
    P += _GELU_A
    np.multiply(T1, u, out=g2)


def gelu_backward(dg2, u, P, T1, w) -> None:
    """dg2 *= d g2/du in place (P, T1 as left by ``gelu_forward`` on the same u; w temp)."""
    np.subtract(2.0, T1, out=w)
    w *= u
    P *= 3.0
    P -= 2.0 * _GELU_A
    w *= P
    w += 1.0
    w *= T1
    dg2 *= w


# --------------------------------------------------------------------------- attention
# One chunk of Bc whole sequences, heads split: q, k, v (Bc, H, T, hd), kt = k^T and
# vt = v^T (Bc, H, hd, T), q already scaled by 1/sqrt(hd) (folded into the weights).
# Causality is exploited by query blocks: block [r0, r1) only meets keys [0, r1), and
# without segments only its diagonal sub-block needs the -inf mask.
# The softmax is kept unnormalized, E = exp(S - shift), with inv_rs = 1 / rowsum(E):
# o = (E v) * inv_rs scales (T, hd) rather than (T, T), and the backward works from E:
#   do' = do * inv_rs, dV = E^T do', dP' = do' v^T, r = rowsum(dP' * E),
#   dS = E * dP' - E * (r * inv_rs)       (== P * (dP - rowsum(dP * P)), P = E * inv_rs)

def query_blocks(T: int, block: int) -> list[tuple[int, int]]:
    return [(r0, min(r0 + block, T)) for r0 in range(0, T, block)]


def causal_bias(T: int, dtype, segment_ids=None) -> np.ndarray:
    """Additive bias: 0 where query t may see key s, -inf elsewhere; (T, T), or
    (B, 1, T, T) with segments (attention only within equal segment ids)."""
    allowed = np.tril(np.ones((T, T), dtype=bool))
    if segment_ids is not None:
        same = segment_ids[:, :, None] == segment_ids[:, None, :]
        allowed = (same & allowed)[:, None, :, :]
    bias = np.zeros(allowed.shape, dtype=dtype)
    bias[~allowed] = -np.inf
    return bias


def softmax_rows(q_blk, kt_blk, E, inv_rs, ones_k, add_bias) -> None:
    """E <- exp(q kt + bias - shift) (unnormalized), inv_rs <- 1 / rowsum(E)."""
    np.matmul(q_blk, kt_blk, out=E)
    add_bias(E)
    if E.max() < _SOFTMAX_SAFE_MAX:
        np.exp(E, out=E)
        np.matmul(E, ones_k, out=inv_rs)
        if inv_rs.min() >= _SOFTMAX_MIN_ROWSUM:
            np.divide(1.0, inv_rs, out=inv_rs)
            return
        np.matmul(q_blk, kt_blk, out=E)               # rows underflowed: redo, shifted
        add_bias(E)
    E -= E.max(axis=-1, keepdims=True)
    np.exp(E, out=E)
    np.matmul(E, ones_k, out=inv_rs)
    np.divide(1.0, inv_rs, out=inv_rs)


def attention_forward(q, kt, v, E_blocks, inv_rs, out, blocks, bias, ws) -> None:
    """out (Bc, H, T, hd) view <- softmax(q k^T + mask) v, storing E blocks and inv_rs.

    ``bias``: None (causal only; the diagonal sub-block mask comes from ``ws``) or the
    (Bc, 1, T, T) additive bias of packed segments.
    """
    for (r0, r1), E in zip(blocks, E_blocks):
        if bias is None:
            tri = ws.diag_bias(r1 - r0)

            def add_bias(S, r0=r0, tri=tri):
                S[..., r0:] += tri
        else:
            def add_bias(S, r0=r0, r1=r1):
                S += bias[:, :, r0:r1, :r1]
        irs = inv_rs[:, :, r0:r1]
        softmax_rows(q[:, :, r0:r1], kt[..., :r1], E, irs, ws.ones(r1), add_bias)
        o = out[:, :, r0:r1]
        np.matmul(E, v[:, :, :r1], out=o)
        o *= irs[..., None]


def attention_backward(do, q, k, vt, E_blocks, inv_rs, dq, dk, dv, blocks, ws) -> None:
    """From do (Bc, H, T, hd) (clobbered: becomes do * inv_rs) write dq, dk, dv.
    Clobbers the E blocks (dead after this)."""
    do *= inv_rs[..., None]
    last = len(blocks) - 1
    for i in range(last, -1, -1):              # the widest block first writes dk, dv whole
        (r0, r1), E = blocks[i], E_blocks[i]
        do_b = do[:, :, r0:r1]
        Et = E.transpose(0, 1, 3, 2)
        if i == last:
            np.matmul(Et, do_b, out=dv[:, :, :r1])
        else:
            dv[:, :, :r1] += Et @ do_b
        dP = ws.get(("dP", i), E.shape)
        np.matmul(do_b, vt[..., :r1], out=dP)
        dP *= E
        r = dP @ ws.ones(r1)
        r *= inv_rs[:, :, r0:r1]
        E *= r[..., None]
        dP -= E                                 # dS
        np.matmul(dP, k[:, :, :r1], out=dq[:, :, r0:r1])
        dPt = dP.transpose(0, 1, 3, 2)
        if i == last:
            np.matmul(dPt, q[:, :, r0:r1], out=dk[:, :, :r1])
        else:
            dk[:, :, :r1] += dPt @ q[:, :, r0:r1]


# --------------------------------------------------------------------------- softmax + cross-entropy

def softmax_xent_forward(logits, targets, ones_v, probs: bool = True):
    """Per-row cross-entropy of ``logits`` (R, V) against ``targets`` (R,).

    Turns ``logits`` into probabilities in place (the backward wants them; with
    ``probs=False``, for a loss without gradients, they are left unnormalized) and returns
    the cross-entropy (R,).
    """
    R = logits.shape[0]
    m = logits.max(axis=1)
    logits -= m[:, None]
    picked = logits[np.arange(R), targets]            # shifted logit of the target
    np.exp(logits, out=logits)
    z = logits @ ones_v
    ce = np.log(z)
    ce -= picked
    if not probs:
        return ce
    np.divide(1.0, z, out=z)
    logits *= z[:, None]
    return ce


def softmax_xent_backward(probs, targets, weight) -> None:
    """probs <- d(sum(weight * ce))/d logits = weight * (probs - onehot), in place."""
    probs[np.arange(probs.shape[0]), targets] -= 1.0
    probs *= weight[:, None]
