"""Training throughput of the numpy GPT, side by side with PyTorch eager when available.

    python benchmarks/throughput.py --shapes mini:128,small:512,mini:320 --threads 2 [--json]
    python benchmarks/throughput.py --methods full,lora,freeze      # what trains, side by side

Trains each shape on random tokens (``model:seq``; mini: 4 layers, 4 heads, width 128, MLP 512;
small: 6 layers, 6 heads, width 192, MLP 768; mini:320 is the own-data recipe's context): a full
step is forward + backward + AdamW, batch ``--batch`` (16) at seq 128, the same tokens per step
at longer sequences. Prints tokens/s, this machine's float32 matmul
peak measured in the same run, the model-FLOPs utilization (MFU) against that peak, and,
if ``torch`` imports, PyTorch eager on the same model and data with the ratio. The
numpy and torch runs alternate for ``--rounds`` rounds and the best round of each is
reported, so a burst of load on a shared machine hurts both sides alike.

``--methods``: ``full`` trains every weight; ``lora`` rank-8 adapters on every linear layer (the
base frozen); ``freeze`` the last half of the blocks and the final LayerNorm. The PyTorch twin
freezes the same weights (``requires_grad=False``, as PEFT does) and adds the same adapters.

The twin runs with denormals flushed (``torch.set_flush_denormal(True)``): AdamW's second moment
of the small random-token gradients decays into denormal numbers within a few steps, and
without flushing the twin's update runs in slow denormal arithmetic and measures that instead.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import threading
import time

import numpy as np

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))

from sft_sweep.nn import GPT, AdamW, GPTConfig  # noqa: E402
from sft_sweep.nn.peft import FreezeTuning, LoraTuning, Tuning, freeze_names  # noqa: E402

METHODS = ("full", "lora", "freeze")
LORA_RANK = 8


def tuning_for(model: GPT, method: str) -> Tuning:
    if method == "lora":
        return LoraTuning(model, rank=LORA_RANK, alpha=2 * LORA_RANK)
    if method == "freeze":
        return FreezeTuning(model, freeze_names(model, model.config.n_layer // 2, False))
    return Tuning(model)


SHAPES = {"mini": dict(n_layer=4, n_head=4, n_embd=128, n_mlp=512),
          "small": dict(n_layer=6, n_head=6, n_embd=192, n_mlp=768)}


def model_config(name: str, seq: int, dtype: str = "float32") -> GPTConfig:
    return GPTConfig(**SHAPES[name], block_size=max(128, seq), vocab_size=260, dtype=dtype)


def mini_config(seq: int, dtype: str = "float32") -> GPTConfig:
    return model_config("mini", seq, dtype)


def blas_kernel() -> str:
    """The BLAS library, version and kernel (architecture) numpy runs, from threadpoolctl."""
    from threadpoolctl import threadpool_info

    libs = [i for i in threadpool_info() if i.get("user_api") == "blas"]
    return ", ".join(f"{i.get('internal_api')} {i.get('version')} {i.get('architecture')}" for i in libs) or "unknown"


def measure_matmul_peak(threads: int, seconds: float = 1.5) -> float:
    """Best float32 GFLOP/s of (a) ``threads`` Python threads each multiplying with one
    BLAS thread (how the trainer runs) and (b) one large product with ``threads`` BLAS
    threads. The larger is taken as the machine's peak."""
    from threadpoolctl import threadpool_limits

    n = 1024
    rng = np.random.default_rng(0)
    a = rng.standard_normal((n, n), dtype=np.float32)
    b = rng.standard_normal((n, n), dtype=np.float32)
    flop = 2.0 * n ** 3

    def run(reps, out):
        c = np.empty((n, n), dtype=np.float32)
        for _ in range(reps):
            np.matmul(a, b, out=c)
        out.append(reps)

    best = 0.0
    with threadpool_limits(1, "blas"):
        run(2, [])
        reps = 1
        while True:                                   # size reps to ~seconds/3 per trial
            t = time.perf_counter()
            run(reps, [])
            dt = time.perf_counter() - t
            if dt > seconds / 6:
                break
            reps *= 2
        for _ in range(3):
            done: list[int] = []
            ths = [threading.Thread(target=run, args=(reps, done)) for _ in range(threads)]
            t = time.perf_counter()
            for th in ths:
                th.start()
            for th in ths:
                th.join()
            dt = time.perf_counter() - t
            best = max(best, flop * sum(done) / dt / 1e9)
    m = 2048
    a2 = rng.standard_normal((m, m), dtype=np.float32)
    c2 = np.empty((m, m), dtype=np.float32)
    with threadpool_limits(threads, "blas"):
        np.matmul(a2, a2, out=c2)
        for _ in range(3):
            t = time.perf_counter()
            np.matmul(a2, a2, out=c2)
            np.matmul(a2, a2, out=c2)
            dt = time.perf_counter() - t
            best = max(best, 2 * 2.0 * m ** 3 / dt / 1e9)
    return best


def numpy_run(cfg, batch, seq, steps, warmup, threads, seed=0, method="full") -> float:
    model = GPT(cfg, seed=seed, threads=threads)
    tuning = tuning_for(model, method)
    opt = AdamW(tuning.params, weight_decay=0.1)
    rng = np.random.default_rng(seed)
    ids = rng.integers(0, cfg.vocab_size, (batch, seq))
    targets = rng.integers(0, cfg.vocab_size, (batch, seq))
    mask = np.ones((batch, seq), dtype=np.float32)

    def step():
        _, g = model.loss_and_grads(ids, targets, mask)
        opt.step(tuning.grads(g), 1e-4)
        tuning.apply()

    for _ in range(warmup):
        step()
    t = time.perf_counter()
    for _ in range(steps):
        step()
    dt = time.perf_counter() - t
    model.close()
    return batch * seq * steps / dt


def torch_run(cfg, batch, seq, steps, warmup, threads, seed=0, method="full") -> float | None:
    try:
        import torch
        import torch.nn.functional as F
    except ImportError:
        return None
    torch.set_num_threads(threads)
    torch.set_flush_denormal(True)
    torch.manual_seed(seed)
    C, H = cfg.n_embd, cfg.n_head

    class Block(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.ln1, self.ln2 = torch.nn.LayerNorm(C), torch.nn.LayerNorm(C)
            self.qkv, self.proj = torch.nn.Linear(C, 3 * C), torch.nn.Linear(C, C)
            self.fc, self.fc_proj = torch.nn.Linear(C, cfg.n_mlp), torch.nn.Linear(cfg.n_mlp, C)

        def forward(self, x):
            B, T, _ = x.shape
            q, k, v = self.qkv(self.ln1(x)).view(B, T, 3, H, C // H).permute(2, 0, 3, 1, 4)
            a = F.scaled_dot_product_attention(q, k, v, is_causal=True)
            x = x + self.proj(a.transpose(1, 2).reshape(B, T, C))
            return x + self.fc_proj(F.gelu(self.fc(self.ln2(x)), approximate="tanh"))

    class TorchGPT(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.wte = torch.nn.Embedding(cfg.vocab_size, C)
            self.wpe = torch.nn.Embedding(cfg.block_size, C)
            self.blocks = torch.nn.ModuleList(Block() for _ in range(cfg.n_layer))
            self.lnf = torch.nn.LayerNorm(C)

        def forward(self, ids, targets):
            x = self.wte(ids) + self.wpe(torch.arange(ids.shape[1]))
            for b in self.blocks:
                x = b(x)
            logits = self.lnf(x) @ self.wte.weight.T
            return F.cross_entropy(logits.view(-1, logits.shape[-1]), targets.view(-1))

    class LoraLinear(torch.nn.Module):
        """A frozen linear layer plus scale * x @ A^T @ B^T (PEFT's LoRA without dropout)."""

        def __init__(self, base):
            super().__init__()
            self.base = base
            self.lora_A = torch.nn.Parameter(torch.empty(LORA_RANK, base.in_features).uniform_(-0.05, 0.05))
            self.lora_B = torch.nn.Parameter(torch.zeros(base.out_features, LORA_RANK))
            self.scale = 2.0

        def forward(self, x):
            return self.base(x) + (x @ self.lora_A.T) @ self.lora_B.T * self.scale

    model = TorchGPT()
    if method != "full":
        model.requires_grad_(False)
    if method == "lora":
        for b in model.blocks:
            b.qkv, b.proj, b.fc, b.fc_proj = (LoraLinear(m) for m in (b.qkv, b.proj, b.fc, b.fc_proj))
    elif method == "freeze":
        for b in model.blocks[cfg.n_layer - cfg.n_layer // 2:]:
            b.requires_grad_(True)
        model.lnf.requires_grad_(True)
    trained = [p for p in model.parameters() if p.requires_grad]
    opt = torch.optim.AdamW(trained, lr=1e-4, betas=(0.9, 0.95), weight_decay=0.1)
    g = torch.Generator().manual_seed(seed)
    ids = torch.randint(0, cfg.vocab_size, (batch, seq), generator=g)
    targets = torch.randint(0, cfg.vocab_size, (batch, seq), generator=g)

    def step():
        opt.zero_grad(set_to_none=True)
        loss = model(ids, targets)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(trained, 1.0)
        opt.step()

    for _ in range(warmup):
        step()
    t = time.perf_counter()
    for _ in range(steps):
        step()
    return batch * seq * steps / (time.perf_counter() - t)


def measure_shape(name, seq, args, peak, method="full") -> dict:
    cfg = model_config(name, seq)
    batch = max(1, args.batch * 128 // seq)              # the same tokens per step at every length
    np_best, torch_best = 0.0, None
    for _ in range(args.rounds):
        np_best = max(np_best, numpy_run(cfg, batch, seq, args.steps, args.warmup, args.threads, method=method))
        if not args.no_torch:
            t = torch_run(cfg, batch, seq, args.steps, args.warmup, args.threads, method=method)
            if t is not None:
                torch_best = max(torch_best or 0.0, t)
    flops = cfg.flops_per_token(seq)
    result = {"model": name, "seq": seq, "method": method, "batch": batch, "tokens_per_s": round(np_best, 1),
              "mfu": round(np_best * flops / (peak * 1e9), 4), "mflop_per_token": round(flops / 1e6, 3)}
    if torch_best is not None:
        result["torch_eager_tokens_per_s"] = round(torch_best, 1)
        result["ratio_vs_torch"] = round(np_best / torch_best, 3)
    return result


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--shapes", default="mini:128,small:512", help="model:seq,... (models: mini, small)")
    ap.add_argument("--batch", type=int, default=16, help="sequences per step at seq 128")
    ap.add_argument("--steps", type=int, default=20)
    ap.add_argument("--warmup", type=int, default=3)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--rounds", type=int, default=2, help="alternating numpy/torch rounds")
    ap.add_argument("--no-torch", action="store_true", help="skip the PyTorch comparison")
    ap.add_argument("--json", action="store_true", help="print one JSON line")
    ap.add_argument("--methods", default="full", help=f"what trains, a comma list of {', '.join(METHODS)}")
    args = ap.parse_args(argv)
    methods = args.methods.split(",")
    bad = [m for m in methods if m not in METHODS]
    if bad:
        ap.error(f"--methods: {', '.join(bad)} not among {', '.join(METHODS)}")
    shapes = []
    for part in args.shapes.split(","):
        name, _, seq = part.partition(":")
        if name not in SHAPES or not seq.isdigit():
            ap.error(f"--shapes: {part!r} is not model:seq with model one of {', '.join(SHAPES)}")
        shapes.append((name, int(seq)))

    peak = measure_matmul_peak(args.threads)
    results = [measure_shape(name, seq, args, peak, m) for name, seq in shapes for m in methods]
    full = {(r["model"], r["seq"]): r["tokens_per_s"] for r in results if r["method"] == "full"}
    for r in results:  # a step's time against the full step's at the same shape
        if (r["model"], r["seq"]) in full:
            r["step_time_vs_full"] = round(full[(r["model"], r["seq"])] / r["tokens_per_s"], 3)
    head = {"threads": args.threads, "steps": args.steps, "rounds": args.rounds,
            "matmul_peak_gflops": round(peak, 1), "blas": blas_kernel()}
    if args.json:
        print(json.dumps({**head, "shapes": results}))
        return
    print(f"{args.threads} threads, {args.steps} steps x {args.rounds} rounds (best round), BLAS: {head['blas']}")
    print(f"matmul peak {peak:.1f} GFLOP/s (float32, measured now)")
    print("MFU counts a full step's FLOPs; 'vs full': the step's time over the full step's (numpy)")
    print(f"{'shape':>12} {'method':>7} {'batch':>5} {'numpy tok/s':>12} {'MFU':>6} {'vs full':>8} "
          f"{'torch eager':>12} {'ratio':>6}")
    for r in results:
        t = r.get("torch_eager_tokens_per_s")
        print(f"{r['model'] + ':' + str(r['seq']):>12} {r['method']:>7} {r['batch']:>5} {r['tokens_per_s']:>12.0f} "
              f"{100 * r['mfu']:>5.1f}% {r.get('step_time_vs_full', '-'):>8} {t if t is not None else '-':>12} "
              f"{r.get('ratio_vs_torch', '-'):>6}")
    if not args.no_torch and all("torch_eager_tokens_per_s" not in r for r in results):
        print("torch eager: torch not importable; comparison skipped")


if __name__ == "__main__":
    main()
