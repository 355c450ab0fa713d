"""The fast GPT: parameters in one flat buffer, masked cross-entropy with exact gradients.

To learn the model, read ``reference.py``: the same network written plainly, forward only. This
file computes exactly that, faster, and adds the backward pass; its tests check it against the
reference (float64) and against finite differences. What makes it fast:

- LayerNorm weights, the attention's 1/sqrt(head_dim) and GELU's 0.5 are folded into the next
  weight matrix once per call (``_fold``); each linear layer's weight and bias sit together in
  the flat buffer so a product with a ones column applies both;
- rows are processed in chunks that keep temporaries in cache, attention in query blocks;
- every buffer lives in a reused per-thread ``Workspace``; each block's buffers are named once,
  in ``_block_buffers``, for the forward and the backward alike;
- the batch is split over worker threads (``workers.py``), and a training step's over worker
  processes (``shardprocs.py``).
"""

from __future__ import annotations

import math
from typing import NamedTuple

import numpy as np

from ..errors import ConfigError, NonFiniteLossError
from . import layers as L
from .config import DTYPES, GPTConfig
from .inputs import checked_inputs
from .params import LINEARS, buffer_order, init_weights, param_views, param_table  # noqa: F401 - LINEARS re-exported
from .shardprocs import ShardProcesses
from .trainable import BackwardPlan, LoraAdapters, plan_for, backward_plan  # noqa: F401 - re-exported
from .workers import ShardWorkers

# Rows per chunk (whole sequences). Smaller chunks keep temporaries in L2; larger ones
# make fewer numpy calls, and with two worker threads every call that releases and
# re-takes the GIL can cost a thread handoff: 512 measured best for both batch 16 and 64.
CHUNK_ROWS = 512
# Query-block height for causal attention.
QUERY_BLOCK = 64


class _BlockBuffers(NamedTuple):
    """What a block's forward keeps in the workspace for its backward (and for generation)."""

    xh1: np.ndarray     # LayerNorm-1 output with a ones column (N, C + 1)
    rstd1: np.ndarray   # its 1/std per row (N,)
    q: np.ndarray       # queries, keys, values (B, H, T, hd); kt, vt transposed (B, H, hd, T)
    k: np.ndarray
    v: np.ndarray
    kt: np.ndarray
    vt: np.ndarray
    Es: list            # unnormalised attention weights per query block
    irs: np.ndarray     # 1 / row sums of the attention weights (B, H, T)
    att: np.ndarray     # attention output with a ones column (N, C + 1)
    xh2: np.ndarray     # LayerNorm-2 output with a ones column, and its 1/std
    rstd2: np.ndarray
    u: np.ndarray       # MLP pre-activation (N, M)
    T1: np.ndarray      # tanh term of the GELU (N, M)


class GPT:
    """A GPT whose parameters are views into one flat buffer (``flat_params``).

    ``threads``: how many workers split the batch, each with one BLAS thread: threads for
    evaluation, and for a training step (``loss_and_grads``) worker processes
    (``shardprocs.py``) unless ``shard_processes`` is False. A setting, not a discovery: a
    parallel sweep runs one job per core with 1.
    """

    def __init__(self, config: GPTConfig, seed: int = 0, threads: int = 1, shard_processes: bool = True) -> None:
        if not isinstance(config, GPTConfig):
            raise ConfigError(f"GPT expects a GPTConfig, got {type(config).__name__}")
        self.config = config
        self.dtype = np.dtype(DTYPES[config.dtype])
        table = param_table(config)
        self._layout: dict[str, tuple[int, tuple[int, ...]]] = {}
        off = 0
        for name, shape in buffer_order(table):
            self._layout[name] = (off, shape)
            off += math.prod(shape)
        self.num_params = off
        self.flat_params = np.zeros(off, dtype=self.dtype)
        views = param_views(self.flat_params, self._layout)
        self.params: dict[str, np.ndarray] = {name: views[name] for name, _ in table}
        init_weights(self.params, config, seed)
        self._fw: dict | None = None
        C, hd = config.n_embd, config.head_dim
        self._qscale = np.ones(3 * C, dtype=self.dtype)
        self._qscale[:C] = 1.0 / math.sqrt(hd)
        self.trainable: frozenset | None = None
        self.lora: LoraAdapters | None = None
        self.workers = ShardWorkers(self.dtype, threads,
                                    spawn=(lambda n: ShardProcesses(config, self.num_params, n))
                                    if shard_processes else None)

    # ------------------------------------------------------------------ setup

    def bind_params(self, flat: np.ndarray) -> None:
        """Makes ``flat`` (laid out like ``flat_params``) this model's parameter buffer, in place
        of its own: a shard worker reads its caller's parameters without copying them."""
        if flat.shape != self.flat_params.shape or flat.dtype != self.dtype:
            raise ValueError(f"a parameter buffer of {self.num_params} {self.dtype} values is needed, "
                             f"got {flat.shape} {flat.dtype}")
        self.flat_params = flat
        views = param_views(flat, self._layout)
        self.params = {name: views[name] for name in self.params}
        self._fw = None

    def set_trainable(self, names=None) -> None:
        """Which parameters ``loss_and_grads`` differentiates (None: all). The others are frozen:
        their weight-gradient products are skipped and they are absent from the returned grads."""
        self.trainable = None if names is None else frozenset(names)
        self.lora = None
        backward_plan(self.config, self.trainable)  # refuses unknown names now, not mid-step

    def set_lora(self, adapters: dict, scale: float) -> None:
        """Trains only low-rank adapters: ``adapters`` maps a linear weight's name
        (``h.0.attn.qkv.w``) to its (A, B), arrays the caller updates in place; the model's own
        weights are frozen and must already hold W_base + scale * A @ B. ``loss_and_grads``
        then returns ``h.<i>.<linear>.lora_A`` / ``lora_B`` gradients and nothing else."""
        ab = {}
        for name, (a, b) in adapters.items():
            parts = name.split(".")
            i, lin = int(parts[1]), ".".join(parts[2:4])
            cin, cout = self.params[name].shape
            if a.shape[0] != cin or b.shape[1] != cout or a.shape[1] != b.shape[0]:
                raise ValueError(f"adapter of {name}: A {a.shape} and B {b.shape} do not fit {cin}x{cout}")
            if not LoraAdapters.fits(cin, cout, a.shape[1]):
                raise ValueError(f"adapter of {name}: rank {a.shape[1]} is too large for the low-rank backward")
            ab[(i, lin)] = (a, b)
        self.trainable = frozenset()
        self.lora = LoraAdapters(float(scale), ab)

    @property
    def threads(self) -> int:
        return self.workers.threads

    def set_threads(self, n: int) -> None:
        self.workers.set_threads(n)

    def close(self) -> None:
        self.workers.close()

    def __del__(self):  # pragma: no cover - best effort
        try:
            self.close()
        except Exception:
            pass

    def grad_views(self, flat: np.ndarray) -> dict[str, np.ndarray]:
        """Name -> view into a flat gradient buffer laid out like ``flat_params``."""
        views = param_views(flat, self._layout)
        return {name: views[name] for name in self.params}

    @property
    def layout(self) -> dict[str, tuple[int, tuple[int, ...]]]:
        """name -> (offset, shape) in the flat buffer."""
        return dict(self._layout)

    # ------------------------------------------------------------------ folded weights

    def _wb(self, flat: np.ndarray, prefix: str) -> np.ndarray:
        """The (C_in + 1, C_out) [weight; bias] block of a linear layer inside ``flat``."""
        off, (cin, cout) = self._layout[prefix + ".w"]
        return flat[off:off + (cin + 1) * cout].reshape(cin + 1, cout)

    def _fold(self) -> dict:
        """Per-call effective weights: LayerNorms folded into the next product, q's
        1/sqrt(head_dim) folded into the qkv columns, GELU's 0.5 folded into the MLP
        projection. Computed once per call from the current parameters (cheap: weight
        sized) and shared read-only by the worker threads."""
        cfg, p = self.config, self.params
        C, M, V = cfg.n_embd, cfg.n_mlp, cfg.vocab_size
        fw = self._fw
        if fw is None:
            fw = self._fw = {"head": np.empty((C + 1, V), dtype=self.dtype)}
            for i in range(cfg.n_layer):
                fw["qkv", i] = np.empty((C + 1, 3 * C), dtype=self.dtype)
                fw["fc", i] = np.empty((C + 1, M), dtype=self.dtype)
                fw["fcproj", i] = np.empty((M + 1, C), dtype=self.dtype)
        for i in range(cfg.n_layer):
            h = f"h.{i}."
            L.fold_ln_linear(p[h + "ln1.w"], p[h + "ln1.b"], p[h + "attn.qkv.w"],
                             p[h + "attn.qkv.b"], fw["qkv", i], self._qscale)
            L.fold_ln_linear(p[h + "ln2.w"], p[h + "ln2.b"], p[h + "mlp.fc.w"],
                             p[h + "mlp.fc.b"], fw["fc", i])
            fp = fw["fcproj", i]
            np.multiply(p[h + "mlp.proj.w"], 0.5, out=fp[:M])
            fp[M] = p[h + "mlp.proj.b"]
            fw["proj", i] = self._wb(self.flat_params, h + "attn.proj")
        L.fold_ln_linear(p["lnf.w"], p["lnf.b"], p["wte"].T, None, fw["head"])
        return fw

    # ------------------------------------------------------------------ one shard

    def _chunks(self, B: int, T: int) -> list[tuple[int, int]]:
        cs = max(1, CHUNK_ROWS // T)
        return [(b0, min(b0 + cs, B)) for b0 in range(0, B, cs)]

    def _block_buffers(self, ws: L.Workspace, i: int, B: int, T: int, blocks) -> _BlockBuffers:
        """Block ``i``'s activations in ``ws``: declared here once for forward and backward."""
        cfg = self.config
        N, C, M, H, hd = B * T, cfg.n_embd, cfg.n_mlp, cfg.n_head, cfg.head_dim
        return _BlockBuffers(
            xh1=ws.aug(("xh1", i), N, C), rstd1=ws.get(("rstd1", i), (N,)),
            q=ws.get(("q", i), (B, H, T, hd)), k=ws.get(("k", i), (B, H, T, hd)),
            v=ws.get(("v", i), (B, H, T, hd)),
            kt=ws.get(("kt", i), (B, H, hd, T)), vt=ws.get(("vt", i), (B, H, hd, T)),
            Es=[ws.get(("E", i, j), (B, H, r1 - r0, r1)) for j, (r0, r1) in enumerate(blocks)],
            irs=ws.get(("irs", i), (B, H, T)), att=ws.aug(("att", i), N, C),
            xh2=ws.aug(("xh2", i), N, C), rstd2=ws.get(("rstd2", i), (N,)),
            u=ws.get(("u", i), (N, M)), T1=ws.get(("T1", i), (N, M)))

    def _forward_layers(self, ws: L.Workspace, ids: np.ndarray, seg, fw, pos=None,
                        for_backward: bool = True, noise=None) -> None:
        """Runs embeddings and all blocks for one shard, keeping in ``ws`` what the
        backward (or the generation cache) needs; leaves the final residual in ws "x".
        ``pos``: the shard's (B, T) position ids, or None for 0..T-1. ``for_backward=False``
        (evaluation, prefill) skips the copies only the backward reads (k and v^T); every
        number computed is the same. ``noise`` (B, T, C) is added to the input embeddings
        (NEFTune; a constant, so no gradient flows to it)."""
        cfg, p = self.config, self.params
        B, T = ids.shape
        N, C, M, H, hd = B * T, cfg.n_embd, cfg.n_mlp, cfg.n_head, cfg.head_dim
        blocks = L.query_blocks(T, QUERY_BLOCK)
        chunks = self._chunks(B, T)
        bias = None if seg is None else L.causal_bias(T, self.dtype, seg)
        inv_c = ws.get("inv_c", (C,))
        inv_c.fill(1.0 / C)
        x = ws.get("x", (N, C))
        if pos is None:
            L.embedding_forward(p["wte"], p["wpe"], ids, x)
        else:
            L.embedding_forward(p["wte"], p["wpe"], ids, x, pos, ws.get("wpe_rows", (N, C)))
        if noise is not None:
            x += noise.reshape(N, C)
        for i in range(cfg.n_layer):
            xh1, rstd1, q, k, v, kt, vt, Es, irs, att, xh2, rstd2, u, T1s = \
                self._block_buffers(ws, i, B, T, blocks)
            for b0, b1 in chunks:
                Bc, r = b1 - b0, slice(b0 * T, b1 * T)
                R = Bc * T
                tmp, y = ws.get("tmpC", (R, C)), ws.get("y", (R, C))
                work = ws.get("lnwork", (R, C))
                L.layernorm_forward(x[r], xh1[r, :C], rstd1[r], tmp, inv_c, work)
                qkv = ws.get("qkv", (R, 3 * C))
                np.matmul(xh1[r], fw["qkv", i], out=qkv)
                q5 = qkv.reshape(Bc, T, 3, H, hd)
                np.copyto(q[b0:b1], q5[:, :, 0].transpose(0, 2, 1, 3))
                np.copyto(v[b0:b1], q5[:, :, 2].transpose(0, 2, 1, 3))
                if for_backward:
                    np.copyto(k[b0:b1], q5[:, :, 1].transpose(0, 2, 1, 3))
                    np.copyto(kt[b0:b1], k[b0:b1].transpose(0, 1, 3, 2))
                    np.copyto(vt[b0:b1], v[b0:b1].transpose(0, 1, 3, 2))
                else:
                    np.copyto(kt[b0:b1], q5[:, :, 1].transpose(0, 2, 3, 1))
                o = att[r, :C].reshape(Bc, T, H, hd).transpose(0, 2, 1, 3)
                L.attention_forward(q[b0:b1], kt[b0:b1], v[b0:b1], [E[b0:b1] for E in Es],
                                    irs[b0:b1], o, blocks,
                                    None if bias is None else bias[b0:b1], ws)
                np.matmul(att[r], fw["proj", i], out=y)
                x[r] += y
                L.layernorm_forward(x[r], xh2[r, :C], rstd2[r], tmp, inv_c, work)
                np.matmul(xh2[r], fw["fc", i], out=u[r])
                g2 = ws.aug("g2", R, M)
                L.gelu_forward(u[r], g2[:, :M], ws.get("Pg", (R, M)), T1s[r])
                np.matmul(g2, fw["fcproj", i], out=y)
                x[r] += y

    def _head(self, ws: L.Workspace, B: int, T: int, fw, fn) -> None:
        """Final LayerNorm and tied head, chunk by chunk: ``fn(rows, xhat_aug_rows,
        logits_chunk)`` consumes each (R, V) logits chunk while it is hot in cache."""
        cfg = self.config
        N, C, V = B * T, cfg.n_embd, cfg.vocab_size
        x, inv_c = ws.get("x", (N, C)), ws.get("inv_c", (C,))
        xhf, rstdf = ws.aug("xhf", N, C), ws.get("rstdf", (N,))
        for b0, b1 in self._chunks(B, T):
            r = slice(b0 * T, b1 * T)
            R = (b1 - b0) * T
            L.layernorm_forward(x[r], xhf[r, :C], rstdf[r], ws.get("tmpC", (R, C)), inv_c,
                                ws.get("lnwork", (R, C)))
            lg = ws.get("logits", (R, V))
            np.matmul(xhf[r], fw["head"], out=lg)
            fn(r, lg)

    def _backward_layers(self, ws: L.Workspace, ids: np.ndarray, fw, g: dict,
                         gflat: np.ndarray, pos=None, plan: BackwardPlan | None = None,
                         lora: LoraAdapters | None = None) -> None:
        """Backward through the blocks from ws "dx" (gradient at the final residual) down to
        ``plan.stop``; writes the gradients the plan forms into ``g``."""
        plan = plan or backward_plan(self.config, None)
        cfg, p = self.config, self.params
        B, T = ids.shape
        N, C, M, H, hd = B * T, cfg.n_embd, cfg.n_mlp, cfg.n_head, cfg.head_dim
        blocks = L.query_blocks(T, QUERY_BLOCK)
        chunks = self._chunks(B, T)
        inv_c, dx = ws.get("inv_c", (C,)), ws.get("dx", (N, C))

        def acc(first, out, a, b):
            if first:
                np.matmul(a, b, out=out)
            else:
                t = ws.get("acc", out.shape)
                np.matmul(a, b, out=t)
                out += t

        def lora_acc(first, i, lin, x, dy):
            """dA += s X^T (dY B^T), dB += s (X A)^T dY for one chunk (x, dy: its rows)."""
            a, b = lora.ab[(i, lin)]
            ga, gb = lora.grad_slots(gflat, self._layout, i, lin)
            rk = a.shape[1]
            t = ws.get(("lora_t", rk), (x.shape[0], rk))
            np.matmul(dy, b.T, out=t)
            t *= lora.scale
            acc(first, ga, x.T, t)
            np.matmul(x, a, out=t)
            t *= lora.scale
            acc(first, gb, t.T, dy)

        def ln_out(xh, lnw, lnb):
            """The LayerNorm's output (its affine part lives folded in the next weights)."""
            x = ws.get("lora_x", (xh.shape[0], C))
            np.multiply(xh, lnw, out=x)
            x += lnb
            return x

        for i in reversed(range(plan.stop, cfg.n_layer)):
            h = f"h.{i}."
            w_qkv, w_proj, w_fc, w_fcproj = ((i, lin) in plan.linears for lin in LINEARS)
            l_qkv, l_proj, l_fc, l_fcproj = ((i, lin) in plan.lora for lin in LINEARS)
            xh1, rstd1, q, k, _, _, vt, Es, irs, att, xh2, rstd2, u, T1s = \
                self._block_buffers(ws, i, B, T, blocks)
            dF_qkv, dF_fc = ws.get("dF_qkv", (C + 1, 3 * C)), ws.get("dF_fc", (C + 1, M))
            g_proj = self._wb(gflat, h + "attn.proj")
            g_fcproj = self._wb(gflat, h + "mlp.proj")
            for ci, (b0, b1) in enumerate(chunks):
                first = ci == 0
                Bc, r = b1 - b0, slice(b0 * T, b1 * T)
                R = Bc * T
                dy = dx[r]
                tmp, dxh = ws.get("tmpC", (R, C)), ws.get("dxh", (R, C))
                # MLP: tanh was stored; the cheap parts of the GELU are recomputed
                g2, Pg, Tg = ws.aug("g2", R, M), ws.get("Pg", (R, M)), T1s[r]
                L.gelu_recompute(u[r], Tg, g2[:, :M], Pg)
                if w_fcproj:
                    acc(first, g_fcproj, g2.T, dy)
                if l_fcproj:  # the layer's input is gelu(u) = g2 / 2
                    gh = ws.get("lora_gelu", (R, M))
                    np.multiply(g2[:, :M], 0.5, out=gh)
                    lora_acc(first, i, "mlp.proj", gh, dy)
                dg = ws.get("dg", (R, M))
                np.matmul(dy, fw["fcproj", i][:M].T, out=dg)
                L.gelu_backward(dg, u[r], Pg, Tg, ws.get("Wg", (R, M)))
                if w_fc:
                    acc(first, dF_fc, xh2[r].T, dg)
                if l_fc:
                    lora_acc(first, i, "mlp.fc", ln_out(xh2[r, :C], p[h + "ln2.w"], p[h + "ln2.b"]), dg)
                np.matmul(dg, fw["fc", i][:C].T, out=dxh)
                work = ws.get("lnwork", (R, C))
                L.layernorm_backward(dxh, xh2[r, :C], rstd2[r], tmp, inv_c, dy, True, work)
                # attention
                if w_proj:
                    acc(first, g_proj, att[r].T, dy)
                if l_proj:
                    lora_acc(first, i, "attn.proj", att[r, :C], dy)
                np.matmul(dy, fw["proj", i][:C].T, out=dxh)
                do = ws.get("do", (Bc, H, T, hd))
                np.copyto(do, dxh.reshape(Bc, T, H, hd).transpose(0, 2, 1, 3))
                dq, dk, dv = (ws.get(n, (Bc, H, T, hd)) for n in ("dq", "dk", "dv"))
                L.attention_backward(do, q[b0:b1], k[b0:b1], vt[b0:b1],
                                     [E[b0:b1] for E in Es], irs[b0:b1], dq, dk, dv, blocks, ws)
                dqkv = ws.get("dqkv", (R, 3 * C))
                d5 = dqkv.reshape(Bc, T, 3, H, hd)
                np.copyto(d5[:, :, 0], dq.transpose(0, 2, 1, 3))
                np.copyto(d5[:, :, 1], dk.transpose(0, 2, 1, 3))
                np.copyto(d5[:, :, 2], dv.transpose(0, 2, 1, 3))
                if w_qkv:
                    acc(first, dF_qkv, xh1[r].T, dqkv)
                if l_qkv:  # the q columns were scaled by 1/sqrt(head_dim) in the fold
                    dys = ws.get("lora_dqkv", (R, 3 * C))
                    np.multiply(dqkv, self._qscale, out=dys)
                    lora_acc(first, i, "attn.qkv", ln_out(xh1[r, :C], p[h + "ln1.w"], p[h + "ln1.b"]), dys)
                if i == plan.stop and not plan.embed:
                    continue  # nothing below trains: the gradient need not go further
                np.matmul(dqkv, fw["qkv", i][:C].T, out=dxh)
                L.layernorm_backward(dxh, xh1[r, :C], rstd1[r], tmp, inv_c, dy, True, work)
            if w_qkv:
                L.unfold_ln_linear(dF_qkv, p[h + "ln1.w"], p[h + "ln1.b"], p[h + "attn.qkv.w"],
                                   g[h + "attn.qkv.w"], g[h + "attn.qkv.b"], g[h + "ln1.w"],
                                   g[h + "ln1.b"], self._qscale)
            if w_fc:
                L.unfold_ln_linear(dF_fc, p[h + "ln2.w"], p[h + "ln2.b"], p[h + "mlp.fc.w"],
                                   g[h + "mlp.fc.w"], g[h + "mlp.fc.b"], g[h + "ln2.w"],
                                   g[h + "ln2.b"])
            if w_fcproj:
                g_fcproj[:M] *= 0.5
        if plan.embed:
            L.embedding_backward(dx, ids, g["wte"], g["wpe"], ws.ones(B), pos)

    # ------------------------------------------------------------------ public API

    def loss_and_grads(self, ids, targets, mask, segment_ids=None, normalizer=None,
                       positions=None, embed_noise=None):
        """Masked mean cross-entropy and its exact gradient for every parameter that trains.

        ``loss = sum(ce * mask) / normalizer`` with ``normalizer = mask.sum()`` by default;
        for gradient accumulation pass the whole accumulated batch's mask count to every
        micro-batch and sum the returned losses and gradients.

        Targets at positions whose mask is 0 are ignored entirely (they may hold any
        integer, e.g. -100 or the pad id).

        ``positions`` (B, T) ints in [0, block_size): the position embedding row of each
        token (packed rows restart at 0 per document, so a packed example sees the same
        positions as unpacked); None uses 0..T-1 in every row.

        ``embed_noise`` (B, T, n_embd): added to the input embeddings (NEFTune), no gradient.

        Returns ``(loss: float, grads: dict name -> ndarray)``, for the parameters that train
        (``set_trainable``; all by default). The gradients are views
        into a freshly allocated flat buffer laid out like ``flat_params`` (reachable as
        ``grads[name].base``); the caller owns them and may keep or modify them.
        A GPT is not re-entrant: call it from one thread at a time.
        """
        ids, targets, mask, seg, pos = checked_inputs(self.config, self.dtype, ids, targets, mask, segment_ids, positions)
        shape = ids.shape
        targets = np.where(mask != 0, targets, 0)
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
        weight = (mask * (1.0 / total)).reshape(-1)
        if embed_noise is not None:
            embed_noise = np.asarray(embed_noise, dtype=self.dtype)
            want = (*shape, self.config.n_embd)
            if embed_noise.shape != want:
                raise ValueError(f"embed_noise shape {embed_noise.shape} does not match {want}")
        tflat = targets.reshape(-1)

        out = np.empty(self.num_params, dtype=self.dtype)
        shards = self.workers.shards(shape[0])
        fw: dict = {}
        T = shape[1]

        def inputs(s: slice) -> tuple:
            return (ids[s], tflat[s.start * T: s.stop * T], weight[s.start * T: s.stop * T],
                    None if seg is None else seg[s], None if pos is None else pos[s],
                    None if embed_noise is None else embed_noise[s], self.trainable, self.lora)

        procs = self.workers.processes
        if procs is not None and len(shards) > 1:
            # Shards 1.. in the worker processes, shard 0 here meanwhile; the sum below is the
            # threads' sum, in the same order, of the same per-shard numbers.
            with self.workers.blas_limit():
                fw.update(self._fold())
                procs.submit(self.flat_params, [inputs(s) for s in shards[1:]])
                losses = [self.shard_loss_and_grads(0, *inputs(shards[0]), fw, out)]
                losses += procs.results()
            grad_bufs = {i: procs.grads(i - 1) for i in range(1, len(shards))}
        else:
            def work(i, s):
                buf = out if i == 0 else self.workers.grad_buffers.get(i)
                if buf is None:
                    buf = self.workers.grad_buffers[i] = np.empty(self.num_params, dtype=self.dtype)
                return self.shard_loss_and_grads(i, *inputs(s), fw, buf)

            losses = self.workers.run(work, shards, prepare=lambda: fw.update(self._fold()))
            grad_bufs = self.workers.grad_buffers
        loss = 0.0
        for v in losses:
            loss += v
        if not math.isfinite(loss):
            raise NonFiniteLossError(
                f"loss is {loss} (non-finite): the model or its inputs diverged; lower the "
                f"learning rate or check the data")
        for i in range(1, len(shards)):
            out += grad_bufs[i]
        grads = self.grad_views(out)
        if self.trainable is not None:
            grads = {n: g for n, g in grads.items() if n in self.trainable}
        if self.lora is not None:
            grads.update(self._lora_grads(out))
        return loss, grads

    def _lora_grads(self, flat: np.ndarray) -> dict[str, np.ndarray]:
        """Views of the adapters' gradients in a gradient buffer (see ``LoraAdapters``)."""
        out = {}
        for i, lin in self.lora.ab:
            na, nb = LoraAdapters.grad_names(i, lin)
            out[na], out[nb] = self.lora.grad_slots(flat, self._layout, i, lin)
        return out

    def shard_loss_and_grads(self, i: int, sid, tf, w, sseg, spos, snoise, trainable, lora, fw, buf) -> float:
        """One shard's share of ``loss_and_grads``: its summed weighted loss, and its gradient
        written into the flat buffer ``buf``. ``sid`` (B, T) ids, ``tf`` / ``w`` the flat targets
        and weights of its rows, ``sseg`` / ``spos`` its segment and position ids (or None), ``fw``
        the folded weights; ``i`` names the shard's workspace. ``snoise``: its rows of the
        embedding noise (or None); ``trainable``: the names that train (None: all); ``lora``: the
        trained adapters (``LoraAdapters``) or None."""
        C, V = self.config.n_embd, self.config.vocab_size
        B, T = sid.shape
        plan = plan_for(self.config, trainable, lora)
        ws = self.workers.workspace(i, sid.shape)
        self._forward_layers(ws, sid, sseg, fw, spos, noise=snoise)
        g = param_views(buf, self._layout)
        for name in plan.zero:
            g[name][...] = 0.0
        below = plan.stop < self.config.n_layer or plan.embed  # anything below the head trains
        dF_head = ws.get("dF_head", (C + 1, V))
        dx = ws.get("dx", (B * T, C))
        inv_c = ws.get("inv_c", (C,))
        xhf, rstdf = ws.aug("xhf", B * T, C), ws.get("rstdf", (B * T,))
        losses = []

        def head_fn(r, lg):
            tg = tf[r.start: r.stop]
            wr = w[r.start: r.stop]
            ce = L.softmax_xent_forward(lg, tg, ws.ones(V))
            losses.append(float(np.dot(ce, wr)))
            L.softmax_xent_backward(lg, tg, wr)
            if plan.head and r.start == 0:
                np.matmul(xhf[r].T, lg, out=dF_head)
            elif plan.head:
                t = ws.get("acc", dF_head.shape)
                np.matmul(xhf[r].T, lg, out=t)
                np.add(dF_head, t, out=dF_head)
            if not below:
                return
            dxh = ws.get("dxh", (r.stop - r.start, C))
            np.matmul(lg, fw["head"][:C].T, out=dxh)
            L.layernorm_backward(dxh, xhf[r, :C], rstdf[r], ws.get("tmpC", dxh.shape),
                                 inv_c, dx[r], False, ws.get("lnwork", dxh.shape))

        self._head(ws, B, T, fw, head_fn)
        loss = math.fsum(losses)
        if not math.isfinite(loss):
            return loss
        p = self.params
        if plan.head:
            L.unfold_ln_linear(dF_head, p["lnf.w"], p["lnf.b"], p["wte"].T, g["wte"].T, None,
                               g["lnf.w"], g["lnf.b"])
        if below:
            self._backward_layers(ws, sid, fw, g, buf, spos, plan, lora)
        return loss

    def _eval(self, ids, seg, fn, pos=None) -> None:
        B, T = ids.shape
        fw = {}

        def work(i, s):
            ws = self.workers.workspace(i, ids[s].shape)
            self._forward_layers(ws, ids[s], None if seg is None else seg[s], fw,
                                 None if pos is None else pos[s], for_backward=False)
            self._head(ws, s.stop - s.start, T, fw, lambda r, lg: fn(s, r, lg, ws))

        self.workers.run(work, self.workers.shards(B), prepare=lambda: fw.update(self._fold()))

    def logits(self, ids, segment_ids=None, positions=None) -> np.ndarray:
        """Logits (B, T, V) in the model dtype (``positions`` as in ``loss_and_grads``)."""
        ids, _, _, seg, pos = checked_inputs(self.config, self.dtype, ids, None, None, segment_ids, positions)
        B, T = ids.shape
        V = self.config.vocab_size
        out = np.empty((B * T, V), dtype=self.dtype)

        def fn(s, r, lg, ws):
            base = s.start * T
            out[base + r.start: base + r.stop] = lg

        self._eval(ids, seg, fn, pos)
        return out.reshape(B, T, V)

    def token_nll(self, ids, targets, segment_ids=None, positions=None) -> np.ndarray:
        """Per-position cross-entropy (B, T) of ``targets`` given ``ids``; no gradients
        (``positions`` as in ``loss_and_grads``)."""
        ids, targets, _, seg, pos = checked_inputs(self.config, self.dtype, ids, targets, None, segment_ids, positions)
        B, T = ids.shape
        out = np.empty(B * T, dtype=self.dtype)
        tflat = targets.reshape(-1)

        def fn(s, r, lg, ws):
            base = s.start * T
            rows = slice(base + r.start, base + r.stop)
            out[rows] = L.softmax_xent_forward(lg, tflat[rows], ws.ones(lg.shape[1]), probs=False)

        self._eval(ids, seg, fn, pos)
        return out.reshape(B, T)
