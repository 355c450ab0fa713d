"""AdamW with decoupled weight decay and global-norm clipping; learning-rate schedules.

The optimizer works on one flat vector: when the parameters are views into one buffer
(as ``GPT.params`` are) it updates that buffer in place with a few vectorized passes;
otherwise it gathers and scatters around the same flat update. Moments ``m`` and ``v``
are flat arrays in that layout, which is also what ``state_dict`` stores.
"""

from __future__ import annotations

import math

import numpy as np

from ..errors import ConfigError, NonFiniteLossError

EMBEDDING_NAMES = ("wte", "wpe")
_BLOCK = 1 << 15          # elements per update block (5 arrays x 128 KB stay in L2)


def _is_decayed(name: str, p: np.ndarray, decay_embeddings: bool) -> bool:
    """Matrices are decayed; biases and LayerNorm (1-D) never; embeddings on request."""
    if p.ndim < 2:
        return False
    if name.split(".")[-1] in EMBEDDING_NAMES:
        return decay_embeddings
    return True


def _offset_in(base: np.ndarray, a: np.ndarray) -> int | None:
    """Element offset of ``a`` inside the 1-D contiguous ``base``, or None if not a view."""
    if a.base is not base or not a.flags.c_contiguous or a.dtype != base.dtype:
        return None
    delta = a.__array_interface__["data"][0] - base.__array_interface__["data"][0]
    if delta % base.itemsize:
        return None
    return delta // base.itemsize


def _flat_base(arrays: dict[str, np.ndarray]) -> tuple[np.ndarray, dict[str, int]] | None:
    """The one flat buffer every array is a contiguous view of, tiling it exactly."""
    first = next(iter(arrays.values()))
    base = first.base
    if base is None or base.ndim != 1 or not base.flags.c_contiguous:
        return None
    offs = {}
    for name, a in arrays.items():
        o = _offset_in(base, a)
        if o is None:
            return None
        offs[name] = o
    spans = sorted((o, arrays[n].size) for n, o in offs.items())
    pos = 0
    for o, n in spans:
        if o != pos:
            return None
        pos += n
    if pos != base.size:
        return None
    return base, offs


class AdamW:
    """AdamW (Loshchilov & Hutter): ``p -= lr * (wd * p + m_hat / (sqrt(v_hat) + eps))``.

    The decay is applied first as ``p *= 1 - lr * wd`` (PyTorch's order). Gradients are
    clipped to a global L2 norm of ``grad_clip`` (<= 0 disables) before the moments see
    them; ``step`` returns the norm before clipping.
    """

    def __init__(self, params: dict[str, np.ndarray], betas=(0.9, 0.95), eps: float = 1e-8,
                 weight_decay: float = 0.0, decay_embeddings: bool = False,
                 grad_clip: float = 1.0) -> None:
        if not params:
            raise ConfigError("AdamW needs at least one parameter")
        b1, b2 = (float(b) for b in betas)
        if not (0.0 <= b1 < 1.0 and 0.0 <= b2 < 1.0):
            raise ConfigError(f"AdamW betas must lie in [0, 1), got {betas!r}")
        if not (float(eps) > 0):
            raise ConfigError(f"AdamW eps must be positive, got {eps!r}")
        if not (float(weight_decay) >= 0):
            raise ConfigError(f"AdamW weight_decay must be >= 0, got {weight_decay!r}")
        self.params = params
        self.betas = (b1, b2)
        self.eps = float(eps)
        self.weight_decay = float(weight_decay)
        self.decay_embeddings = bool(decay_embeddings)
        self.grad_clip = float(grad_clip)
        self.t = 0

        dtypes = {p.dtype for p in params.values()}
        if len(dtypes) != 1:
            raise ConfigError(f"AdamW needs parameters of one dtype, got {sorted(map(str, dtypes))}")
        self.dtype = dtypes.pop()
        found = _flat_base(params)
        if found is not None:
            self._flat, offs = found
        else:
            self._flat = None
            offs, pos = {}, 0
            for name, p in params.items():
                offs[name] = pos
                pos += p.size
        self._offs = offs
        self.size = sum(p.size for p in params.values())
        # Runs of decayed elements, merged when adjacent (one slice for GPT's layout).
        runs: list[list[int]] = []
        for name in sorted(offs, key=offs.get):
            p = params[name]
            if _is_decayed(name, p, self.decay_embeddings):
                o = offs[name]
                if runs and runs[-1][1] == o:
                    runs[-1][1] = o + p.size
                else:
                    runs.append([o, o + p.size])
        self._decay_runs = [slice(a, b) for a, b in runs]
        self._blocks = []
        for lo in range(0, self.size, _BLOCK):
            hi = min(lo + _BLOCK, self.size)
            local = [slice(max(a, lo) - lo, min(b, hi) - lo) for a, b in runs if a < hi and b > lo]
            self._blocks.append((lo, hi, local))
        self.m = np.zeros(self.size, dtype=self.dtype)
        self.v = np.zeros(self.size, dtype=self.dtype)
        self._tmp = np.empty(min(self.size, _BLOCK), dtype=self.dtype)
        self._gbuf: np.ndarray | None = None

    # ------------------------------------------------------------------ helpers

    def _flat_grads(self, grads: dict[str, np.ndarray]) -> np.ndarray:
        missing = set(self.params) - set(grads)
        if missing:
            raise ValueError(f"grads lack entries for {sorted(missing)[:5]}")
        for name, p in self.params.items():
            if grads[name].shape != p.shape:
                raise ValueError(
                    f"grad {name!r} has shape {grads[name].shape}, parameter has {p.shape}")
        sub = {n: grads[n] for n in self.params}
        found = _flat_base(sub)
        if found is not None:
            base, offs = found
            if offs == self._offs and base.dtype == self.dtype:
                return base
        if self._gbuf is None:
            self._gbuf = np.empty(self.size, dtype=self.dtype)
        for name, g in sub.items():
            o = self._offs[name]
            self._gbuf[o:o + g.size] = g.reshape(-1)
        return self._gbuf

    def _gather_params(self) -> np.ndarray:
        if self._flat is not None:
            return self._flat
        flat = np.empty(self.size, dtype=self.dtype)
        for name, p in self.params.items():
            o = self._offs[name]
            flat[o:o + p.size] = p.reshape(-1)
        return flat

    def _scatter_params(self, flat: np.ndarray) -> None:
        if self._flat is not None:
            return
        for name, p in self.params.items():
            o = self._offs[name]
            p[...] = flat[o:o + p.size].reshape(p.shape)

    # ------------------------------------------------------------------ step

    def step(self, grads: dict[str, np.ndarray], lr: float) -> float:
        """One update in place; returns the global gradient norm before clipping."""
        lr = float(lr)
        g = self._flat_grads(grads)
        norm = math.sqrt(float(np.dot(g, g)))
        if not math.isfinite(norm):
            raise NonFiniteLossError(f"gradient norm is {norm}; refusing to update the parameters")
        scale = 1.0
        if self.grad_clip > 0 and norm > self.grad_clip:
            scale = self.grad_clip / (norm + 1e-6)
        self.t += 1
        b1, b2 = self.betas
        bc1 = 1.0 - b1 ** self.t
        bc2 = 1.0 - b2 ** self.t
        # Python floats throughout: a numpy float64 scalar would upcast float32 arrays.
        c1 = (1.0 - b1) * scale                     # m = b1 m + (1 - b1) s g
        c2 = (1.0 - b2) * scale * scale             # v = b2 v + (1 - b2) (s g)^2
        inv_sqrt_bc2 = 1.0 / math.sqrt(bc2)
        step = lr / bc1                             # p -= lr m_hat / (sqrt(v_hat) + eps)
        decay = 1.0 - lr * self.weight_decay if self.weight_decay > 0.0 else None
        p = self._gather_params()
        tmp = self._tmp
        # Block by block, so the ~10 passes over a block run in cache rather than
        # streaming the whole 4-array state through memory ten times.
        for lo, hi, decay_runs in self._blocks:
            t = tmp[:hi - lo]
            gb, m, v, pb = g[lo:hi], self.m[lo:hi], self.v[lo:hi], p[lo:hi]
            m *= b1
            np.multiply(gb, c1, out=t)
            m += t
            v *= b2
            np.multiply(gb, gb, out=t)
            t *= c2
            v += t
            np.sqrt(v, out=t)
            t *= inv_sqrt_bc2
            t += self.eps
            np.divide(m, t, out=t)
            t *= step
            if decay is not None:
                for run in decay_runs:
                    pb[run] *= decay
            pb -= t
        self._scatter_params(p)
        return norm

    # ------------------------------------------------------------------ state

    def state_dict(self) -> dict[str, np.ndarray]:
        """Moments per parameter name (``m:<name>``, ``v:<name>``) and the step ``t``:
        independent of the flat layout, so a checkpoint survives a layout change."""
        d: dict[str, np.ndarray] = {"t": np.array(self.t, dtype=np.int64)}
        for name, p in self.params.items():
            o = self._offs[name]
            d["m:" + name] = self.m[o:o + p.size].reshape(p.shape).copy()
            d["v:" + name] = self.v[o:o + p.size].reshape(p.shape).copy()
        return d

    def load_state_dict(self, d: dict[str, np.ndarray]) -> None:
        self.check_state_dict(d)
        for name, p in self.params.items():
            o = self._offs[name]
            self.m[o:o + p.size] = np.asarray(d["m:" + name]).reshape(-1)
            self.v[o:o + p.size] = np.asarray(d["v:" + name]).reshape(-1)
        self.t = int(np.asarray(d["t"]))

    def check_state_dict(self, d: dict[str, np.ndarray]) -> None:
        """Raises ValueError naming the first entry that does not fit this optimizer."""
        if "t" not in d:
            raise ValueError("optimizer state lacks the step count 't'")
        for name, p in self.params.items():
            for key in ("m:" + name, "v:" + name):
                if key not in d:
                    raise ValueError(f"optimizer state lacks {key!r}")
                if np.shape(d[key]) != p.shape:
                    raise ValueError(f"optimizer state {key!r} has shape {np.shape(d[key])}, "
                                     f"parameter has {p.shape}")


SCHEDULES = ("cosine", "linear", "constant")


def lr_at(step: int, total_steps: int, peak_lr: float, schedule: str = "cosine",
          warmup_steps: int = 0, min_lr: float = 0.0) -> float:
    """Learning rate for 0-based ``step``.

    Warmup: ``peak * (step + 1) / warmup_steps`` for ``step < warmup_steps`` (so the first
    step already moves, and step ``warmup_steps - 1`` reaches the peak). Then ``cosine`` and
    ``linear`` decay from ``peak_lr`` at ``warmup_steps`` to ``min_lr`` at ``total_steps``
    (and stay there after); ``constant`` stays at ``peak_lr``.
    """
    if schedule not in SCHEDULES:
        raise ConfigError(f"unknown lr schedule {schedule!r}; choose one of {', '.join(SCHEDULES)}")
    if total_steps <= 0:
        raise ConfigError(f"total_steps must be positive, got {total_steps}")
    if warmup_steps < 0:
        raise ConfigError(f"warmup_steps must be >= 0, got {warmup_steps}")
    peak, floor = float(peak_lr), float(min_lr)
    if step < warmup_steps:
        return peak * (step + 1) / warmup_steps
    if schedule == "constant":
        return peak
    span = total_steps - warmup_steps
    progress = 1.0 if span <= 0 else min(1.0, max(0.0, (step - warmup_steps) / span))
    if schedule == "linear":
        return peak + (floor - peak) * progress
    return floor + (peak - floor) * 0.5 * (1.0 + math.cos(math.pi * progress))
