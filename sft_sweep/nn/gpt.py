"""The GPT: config, parameters in one flat buffer, masked cross-entropy with exact gradients.

Architecture: learned token + position embeddings; ``n_layer`` pre-LayerNorm blocks
(LN -> fused-QKV causal multi-head attention -> projection, residual; LN -> GELU MLP,
residual; GELU is the tanh approximation); final LayerNorm; output head tied to the
token embedding (``logits = h @ wte.T``).

Speed model (2-core machine, see issue 2): the batch is split across ``threads`` Python
worker threads, each running its shard's forward and backward with one BLAS thread
(numpy releases the GIL in BLAS and in ufunc loops, so shards run truly in parallel);
the per-shard gradients are summed at the end in a fixed order, so a fixed ``threads``
setting is bit-reproducible.
"""

from __future__ import annotations

import math
import threading
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, fields

import numpy as np

from ..errors import ConfigError, NonFiniteLossError
from . import layers as L

_DTYPES = {"float32": np.float32, "float64": np.float64}


@dataclass
class GPTConfig:
    n_layer: int = 4
    n_head: int = 4
    n_embd: int = 128
    n_mlp: int = 512
    block_size: int = 128
    vocab_size: int = 260
    init_std: float = 0.02
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
        if self.dtype not in _DTYPES:
            raise ConfigError(
                f"GPTConfig.dtype must be one of {sorted(_DTYPES)}, got {self.dtype!r}")

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


def _param_shapes(cfg: GPTConfig) -> list[tuple[str, tuple[int, ...]]]:
    """(name, shape) in the order of the flat buffer.

    Weight matrices come first, then embeddings, then 1-D tensors (LayerNorm, biases):
    the weight-decayed set is then one contiguous prefix, so AdamW's decay is a single
    slice whether or not embeddings are decayed.
    """
    C, M, V = cfg.n_embd, cfg.n_mlp, cfg.vocab_size
    mats, vecs = [], []
    for i in range(cfg.n_layer):
        h = f"h.{i}."
        mats += [(h + "attn.qkv.w", (C, 3 * C)), (h + "attn.proj.w", (C, C)),
                 (h + "mlp.fc.w", (C, M)), (h + "mlp.proj.w", (M, C))]
        vecs += [(h + "ln1.w", (C,)), (h + "ln1.b", (C,)),
                 (h + "attn.qkv.b", (3 * C,)), (h + "attn.proj.b", (C,)),
                 (h + "ln2.w", (C,)), (h + "ln2.b", (C,)),
                 (h + "mlp.fc.b", (M,)), (h + "mlp.proj.b", (C,))]
    embs = [("wte", (V, C)), ("wpe", (cfg.block_size, C))]
    vecs += [("lnf.w", (C,)), ("lnf.b", (C,))]
    return mats + embs + vecs


def _views(flat: np.ndarray, layout) -> dict[str, np.ndarray]:
    out = {}
    for name, (off, shape) in layout.items():
        n = math.prod(shape)
        out[name] = flat[off:off + n].reshape(shape)
    return out


_BLAS = None
_BLAS_LOCK = threading.Lock()


def _blas_controller():
    global _BLAS
    with _BLAS_LOCK:
        if _BLAS is None:
            from threadpoolctl import ThreadpoolController
            _BLAS = ThreadpoolController()
        return _BLAS


class GPT:
    """A GPT whose parameters are views into one flat buffer (``flat_params``).

    ``threads``: how many Python worker threads split the batch, each with one BLAS
    thread. A setting, not a discovery: a parallel sweep runs one job per core with 1.
    """

    EMBEDDINGS = ("wte", "wpe")

    def __init__(self, config: GPTConfig, seed: int = 0, threads: int = 1) -> None:
        if not isinstance(config, GPTConfig):
            raise ConfigError(f"GPT expects a GPTConfig, got {type(config).__name__}")
        self.config = config
        self.dtype = np.dtype(_DTYPES[config.dtype])
        shapes = _param_shapes(config)
        self._layout: dict[str, tuple[int, tuple[int, ...]]] = {}
        off = 0
        for name, shape in shapes:
            self._layout[name] = (off, shape)
            off += math.prod(shape)
        self.num_params = off
        self.flat_params = np.zeros(off, dtype=self.dtype)
        views = _views(self.flat_params, self._layout)
        # Logical order for readers (and for checkpoints listing), not buffer order.
        order = ["wte", "wpe"]
        for i in range(config.n_layer):
            h = f"h.{i}."
            order += [h + s for s in ("ln1.w", "ln1.b", "attn.qkv.w", "attn.qkv.b",
                                      "attn.proj.w", "attn.proj.b", "ln2.w", "ln2.b",
                                      "mlp.fc.w", "mlp.fc.b", "mlp.proj.w", "mlp.proj.b")]
        order += ["lnf.w", "lnf.b"]
        self.params: dict[str, np.ndarray] = {name: views[name] for name in order}
        self._init_weights(seed)
        self._threads = 1
        self._pool: ThreadPoolExecutor | None = None
        self._shard_grads: dict[int, np.ndarray] = {}
        self._bias_cache: dict[int, np.ndarray] = {}
        self.set_threads(threads)

    # ------------------------------------------------------------------ setup

    def _init_weights(self, seed: int) -> None:
        """Normal(0, init_std) for matrices and embeddings, the residual projections
        scaled by 1/sqrt(2 n_layer) (GPT-2) so the residual stream's variance does not
        grow with depth; LayerNorm weight 1, biases 0."""
        cfg = self.config
        rng = np.random.default_rng(seed)
        std = cfg.init_std
        for name, p in self.params.items():
            if name.endswith("ln1.w") or name.endswith("ln2.w") or name == "lnf.w":
                p[...] = 1.0
            elif p.ndim == 1:
                p[...] = 0.0
            else:
                s = std / math.sqrt(2 * cfg.n_layer) if name.endswith("proj.w") else std
                p[...] = rng.normal(0.0, s, size=p.shape)

    @property
    def threads(self) -> int:
        return self._threads

    def set_threads(self, n: int) -> None:
        if isinstance(n, bool) or not isinstance(n, (int, np.integer)) or n < 1:
            raise ConfigError(f"threads must be a positive integer, got {n!r}")
        n = int(n)
        if n != self._threads or (n > 1 and self._pool is None):
            if self._pool is not None:
                self._pool.shutdown(wait=True)
                self._pool = None
            if n > 1:
                self._pool = ThreadPoolExecutor(max_workers=n, thread_name_prefix="gpt")
            self._threads = n
            self._shard_grads.clear()

    def close(self) -> None:
        if self._pool is not None:
            self._pool.shutdown(wait=True)
            self._pool = None

    def __del__(self):  # pragma: no cover - best effort
        try:
            self.close()
        except Exception:
            pass

    def grad_views(self, flat: np.ndarray) -> dict[str, np.ndarray]:
        """Name -> view into a flat gradient buffer laid out like ``flat_params``."""
        views = _views(flat, self._layout)
        return {name: views[name] for name in self.params}

    @property
    def layout(self) -> dict[str, tuple[int, tuple[int, ...]]]:
        """name -> (offset, shape) in the flat buffer."""
        return dict(self._layout)

    # ------------------------------------------------------------------ input checks

    def _check_ids(self, ids, what: str = "ids") -> np.ndarray:
        a = np.asarray(ids)
        if a.ndim != 2:
            raise ValueError(f"{what} must be a 2-D (batch, time) array, got shape {a.shape}")
        if a.shape[0] == 0 or a.shape[1] == 0:
            raise ValueError(f"{what} must be non-empty, got shape {a.shape}")
        if a.dtype.kind not in "iu":
            if a.dtype.kind == "b" or not np.issubdtype(a.dtype, np.number):
                raise ValueError(f"{what} must be integers, got dtype {a.dtype}")
            if not np.all(np.isfinite(a)) or not np.all(a == np.round(a)):
                raise ValueError(f"{what} must be integers, got dtype {a.dtype} with fractions")
        if a.shape[1] > self.config.block_size:
            raise ValueError(
                f"sequence length {a.shape[1]} exceeds the model's block_size "
                f"{self.config.block_size}")
        return a.astype(np.intp, copy=False)

    def _check_vocab(self, a: np.ndarray, what: str, where: np.ndarray | None = None) -> None:
        V = self.config.vocab_size
        vals = a if where is None else a[where]
        if vals.size and (vals.min() < 0 or vals.max() >= V):
            bad = vals[(vals < 0) | (vals >= V)][0]
            raise ValueError(f"{what} contains id {int(bad)} outside the vocabulary 0..{V - 1}")

    def _check_segments(self, segment_ids, shape) -> np.ndarray | None:
        if segment_ids is None:
            return None
        s = np.asarray(segment_ids)
        if s.shape != shape:
            raise ValueError(f"segment_ids shape {s.shape} does not match ids shape {shape}")
        if s.dtype.kind not in "iu":
            raise ValueError(f"segment_ids must be integers, got dtype {s.dtype}")
        return s

    def _bias(self, T: int, seg: np.ndarray | None) -> np.ndarray:
        if seg is not None:
            return L.causal_bias(T, self.dtype, seg)
        b = self._bias_cache.get(T)
        if b is None:
            b = self._bias_cache[T] = L.causal_bias(T, self.dtype)
        return b

    # ------------------------------------------------------------------ forward / backward

    def _forward(self, ids: np.ndarray, seg: np.ndarray | None, keep: bool):
        """Logits (N, V) for one shard, plus the caches the backward needs when ``keep``."""
        cfg, p = self.config, self.params
        B, T = ids.shape
        H = cfg.n_head
        bias = self._bias(T, seg)
        x = L.embedding_forward(p["wte"], p["wpe"], ids)
        caches = []
        for i in range(cfg.n_layer):
            h = f"h.{i}."
            a, c_ln1 = L.layernorm_forward(x, p[h + "ln1.w"], p[h + "ln1.b"])
            qkv = L.linear_forward(a, p[h + "attn.qkv.w"], p[h + "attn.qkv.b"])
            att, c_att = L.attention_forward(qkv, B, T, H, bias)
            del qkv
            y = L.linear_forward(att, p[h + "attn.proj.w"], p[h + "attn.proj.b"])
            x += y
            m, c_ln2 = L.layernorm_forward(x, p[h + "ln2.w"], p[h + "ln2.b"])
            u = L.linear_forward(m, p[h + "mlp.fc.w"], p[h + "mlp.fc.b"])
            g, c_gelu = L.gelu_forward(u)
            y = L.linear_forward(g, p[h + "mlp.proj.w"], p[h + "mlp.proj.b"])
            x += y
            if keep:
                caches.append((a, c_ln1, att, c_att, m, c_ln2, g, c_gelu))
        xf, c_lnf = L.layernorm_forward(x, p["lnf.w"], p["lnf.b"])
        logits = xf @ p["wte"].T
        return logits, (caches, xf, c_lnf)

    def _backward(self, dlogits: np.ndarray, ids: np.ndarray, state, grads: dict) -> None:
        """Writes every parameter gradient of one shard into ``grads`` (views)."""
        cfg, p = self.config, self.params
        B, T = ids.shape
        H = cfg.n_head
        caches, xf, c_lnf = state
        # Tied head: logits = xf @ wte.T -> dwte = dlogits.T @ xf (the embedding adds later).
        np.matmul(dlogits.T, xf, out=grads["wte"])
        dx = dlogits @ p["wte"]
        dx = L.layernorm_backward(dx, c_lnf, grads["lnf.w"], grads["lnf.b"])
        for i in reversed(range(cfg.n_layer)):
            h = f"h.{i}."
            a, c_ln1, att, c_att, m, c_ln2, g, c_gelu = caches[i]
            dg = L.linear_backward(dx, g, p[h + "mlp.proj.w"], grads[h + "mlp.proj.w"],
                                   grads[h + "mlp.proj.b"])
            du = L.gelu_backward(dg, c_gelu)
            dm = L.linear_backward(du, m, p[h + "mlp.fc.w"], grads[h + "mlp.fc.w"],
                                   grads[h + "mlp.fc.b"])
            dx += L.layernorm_backward(dm, c_ln2, grads[h + "ln2.w"], grads[h + "ln2.b"])
            datt = L.linear_backward(dx, att, p[h + "attn.proj.w"], grads[h + "attn.proj.w"],
                                     grads[h + "attn.proj.b"])
            dqkv = L.attention_backward(datt, c_att, B, T, H)
            da = L.linear_backward(dqkv, a, p[h + "attn.qkv.w"], grads[h + "attn.qkv.w"],
                                   grads[h + "attn.qkv.b"])
            dx += L.layernorm_backward(da, c_ln1, grads[h + "ln1.w"], grads[h + "ln1.b"])
            caches[i] = None
        L.embedding_backward(dx, ids, grads["wte"], grads["wpe"])

    def _shards(self, B: int) -> list[slice]:
        n = min(self._threads, B)
        bounds = [round(i * B / n) for i in range(n + 1)]
        return [slice(bounds[i], bounds[i + 1]) for i in range(n)]

    def _run(self, fn, shards):
        """Runs ``fn(index, shard)`` for every shard with one BLAS thread each."""
        with _blas_controller().limit(limits=1, user_api="blas"):
            if len(shards) == 1 or self._pool is None:
                return [fn(i, s) for i, s in enumerate(shards)]
            futures = [self._pool.submit(fn, i, s) for i, s in enumerate(shards)]
            return [f.result() for f in futures]

    def loss_and_grads(self, ids, targets, mask, segment_ids=None, normalizer=None):
        """Masked mean cross-entropy and its exact gradient for every parameter.

        ``loss = sum(ce * mask) / normalizer`` with ``normalizer = mask.sum()`` by default;
        for gradient accumulation pass the whole accumulated batch's mask count to every
        micro-batch and sum the returned losses and gradients.

        Targets at positions whose mask is 0 are ignored entirely (they may hold any
        integer, e.g. -100 or the pad id).

        Returns ``(loss: float, grads: dict name -> ndarray)``. The gradients are views
        into a freshly allocated flat buffer laid out like ``flat_params`` (reachable as
        ``grads[name].base``); the caller owns them and may keep or modify them.
        """
        ids = self._check_ids(ids, "ids")
        shape = ids.shape
        targets = np.asarray(targets)
        if targets.shape != shape:
            raise ValueError(f"targets shape {targets.shape} does not match ids shape {shape}")
        targets = self._check_ids(targets, "targets")
        mask = np.asarray(mask)
        if mask.shape != shape:
            raise ValueError(f"mask shape {mask.shape} does not match ids shape {shape}")
        if not (mask.dtype.kind in "biuf"):
            raise ValueError(f"mask must be numeric (0/1), got dtype {mask.dtype}")
        mask = mask.astype(self.dtype)
        if not np.all(np.isfinite(mask)):
            raise ValueError("mask contains non-finite values")
        self._check_vocab(ids, "ids")
        live = mask != 0
        self._check_vocab(targets, "targets", live)
        targets = np.where(live, targets, 0)
        seg = self._check_segments(segment_ids, shape)
        if normalizer is None:
            total = float(mask.sum(dtype=np.float64))
            if total == 0.0:
                raise ValueError(
                    "mask is all zeros: no position contributes to the loss (the mean "
                    "would be 0/0); drop this batch or pass an explicit normalizer")
        else:
            total = float(normalizer)
            if not (math.isfinite(total) and total > 0):
                raise ValueError(f"normalizer must be positive and finite, got {normalizer!r}")
        weight = mask * (1.0 / total)

        out = np.empty(self.num_params, dtype=self.dtype)
        shards = self._shards(shape[0])

        def work(i, s):
            buf = out if i == 0 else self._shard_grads.get(i)
            if buf is None:
                buf = self._shard_grads[i] = np.empty(self.num_params, dtype=self.dtype)
            sid = ids[s]
            logits, state = self._forward(sid, None if seg is None else seg[s], keep=True)
            tg = targets[s].reshape(-1)
            w = weight[s].reshape(-1)
            ce, probs = L.softmax_xent_forward(logits, tg)
            loss = float(np.dot(ce, w))
            if not math.isfinite(loss):
                return loss
            dlogits = L.softmax_xent_backward(probs, tg, w)
            self._backward(dlogits, sid, state, _views(buf, self._layout))
            return loss

        losses = self._run(work, shards)
        loss = 0.0
        for v in losses:
            loss += v
        if not math.isfinite(loss):
            raise NonFiniteLossError(
                f"loss is {loss} (non-finite): the model or its inputs diverged; lower the "
                f"learning rate or check the data")
        for i in range(1, len(shards)):
            out += self._shard_grads[i]
        return loss, self.grad_views(out)

    def logits(self, ids, segment_ids=None) -> np.ndarray:
        """Logits (B, T, V) in the model dtype."""
        ids = self._check_ids(ids, "ids")
        self._check_vocab(ids, "ids")
        seg = self._check_segments(segment_ids, ids.shape)
        B, T = ids.shape
        out = np.empty((B, T, self.config.vocab_size), dtype=self.dtype)

        def work(i, s):
            lg, _ = self._forward(ids[s], None if seg is None else seg[s], keep=False)
            out[s] = lg.reshape(-1, T, self.config.vocab_size)

        self._run(work, self._shards(B))
        return out

    def token_nll(self, ids, targets, segment_ids=None) -> np.ndarray:
        """Per-position cross-entropy (B, T) of ``targets`` given ``ids``; no gradients."""
        ids = self._check_ids(ids, "ids")
        targets = np.asarray(targets)
        if targets.shape != ids.shape:
            raise ValueError(f"targets shape {targets.shape} does not match ids shape {ids.shape}")
        targets = self._check_ids(targets, "targets")
        self._check_vocab(ids, "ids")
        self._check_vocab(targets, "targets")
        seg = self._check_segments(segment_ids, ids.shape)
        B, T = ids.shape
        out = np.empty((B, T), dtype=self.dtype)

        def work(i, s):
            lg, _ = self._forward(ids[s], None if seg is None else seg[s], keep=False)
            ce, _ = L.softmax_xent_forward(lg, targets[s].reshape(-1))
            out[s] = ce.reshape(-1, T)

        self._run(work, self._shards(B))
        return out
