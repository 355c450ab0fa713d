"""Where a training step's time goes, pass by pass: one shard's forward, backward and AdamW.

    python benchmarks/step_profile.py --shape mini:128 --steps 20 [--batch 16] [--json]

Runs ``--steps`` full steps (forward + backward + AdamW, float32, random tokens, the shapes of
``throughput.py``) on one thread with one BLAS thread (what each shard of a multi-thread step
computes) under cProfile, and prints milliseconds per step by pass:

- ``matmuls and copies``: the self time of the layer drivers (``_forward_layers``,
  ``_backward_layers``, the head), which is where the products are issued (``@`` and
  ``np.matmul`` are not profiled on their own) and the head/q/k/v layout copies are made;
- GELU, LayerNorm, attention (its softmax and the products it issues itself: q k^T, E v and
  their backward), cross-entropy, embeddings, the LayerNorm folding, the optimizer, the rest;

then the share outside the matmul drivers, and the step time without the profiler (cProfile
adds a little per call). The BLAS kernel that ran is printed (threadpoolctl).
"""

from __future__ import annotations

import argparse
import cProfile
import json
import os
import pstats
import sys
import time

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))

from throughput import SHAPES, blas_kernel, model_config  # noqa: E402

from sft_sweep.nn import GPT, AdamW  # noqa: E402

ATTENTION = "attention (with its products)"
# function name -> pass; anything else is "other"
PASSES = {
    "_forward_layers": "matmuls and copies", "_backward_layers": "matmuls and copies",
    "acc": "matmuls and copies", "_head": "matmuls and copies", "shard_loss_and_grads": "matmuls and copies",
    "gelu_forward": "GELU", "gelu_recompute": "GELU", "gelu_backward": "GELU",
    "layernorm_forward": "LayerNorm", "layernorm_backward": "LayerNorm",
    "softmax_rows": ATTENTION, "attention_forward": ATTENTION, "attention_backward": ATTENTION,
    "add_bias": ATTENTION, "diag_bias": ATTENTION,
    "softmax_xent_forward": "cross-entropy", "softmax_xent_backward": "cross-entropy", "head_fn": "cross-entropy",
    "embedding_forward": "embeddings", "embedding_backward": "embeddings", "_add_rows_by_index": "embeddings",
    "fold_ln_linear": "LayerNorm folding", "unfold_ln_linear": "LayerNorm folding", "_fold": "LayerNorm folding",
    "step": "optimizer",
}
ORDER = ["matmuls and copies", "GELU", "LayerNorm", ATTENTION, "cross-entropy", "embeddings",
         "LayerNorm folding", "optimizer", "other"]


def profile(shape: str, steps: int, batch: int) -> dict:
    name, seq = shape.split(":")
    seq = int(seq)
    model = GPT(model_config(name, seq), threads=1)
    opt = AdamW(model.params, weight_decay=0.1)
    B = max(1, batch * 128 // seq)
    rng = np.random.default_rng(0)
    ids = rng.integers(0, 256, (B, seq))
    targets = np.roll(ids, -1, axis=1)
    mask = np.ones(ids.shape)

    def step():
        _, grads = model.loss_and_grads(ids, targets, mask)
        opt.step(grads, 1e-4)

    with model.workers.blas_limit():
        for _ in range(3):
            step()
        best = float("inf")
        for _ in range(3):
            t0 = time.perf_counter()
            for _ in range(steps):
                step()
            best = min(best, (time.perf_counter() - t0) / steps)
        prof = cProfile.Profile()
        t0 = time.perf_counter()
        prof.enable()
        for _ in range(steps):
            step()
        prof.disable()
        profiled = (time.perf_counter() - t0) / steps
    model.close()
    by_pass = dict.fromkeys(ORDER, 0.0)
    for (_, _, func), (_, _, self_time, _, _) in pstats.Stats(prof).stats.items():
        by_pass[PASSES.get(func, "other")] += self_time / steps
    total = sum(by_pass.values())
    return {"shape": shape, "batch": B, "tokens_per_step": B * seq, "step_ms": best * 1e3,
            "profiled_step_ms": profiled * 1e3,
            "passes_ms": {k: v * 1e3 for k, v in by_pass.items()},
            "outside_matmul_drivers": 1.0 - by_pass["matmuls and copies"] / total if total else None}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--shape", default="mini:128", help="model:seq (models: mini, small)")
    p.add_argument("--batch", type=int, default=16, help="sequences per step at seq 128")
    p.add_argument("--steps", type=int, default=20)
    p.add_argument("--json", action="store_true", help="print one JSON line")
    a = p.parse_args()
    name, _, seq = a.shape.partition(":")
    if name not in SHAPES or not seq.isdigit():
        p.error(f"--shape: {a.shape!r} is not model:seq with model one of {', '.join(SHAPES)}")
    r = profile(a.shape, a.steps, a.batch)
    r["blas"] = blas_kernel()
    if a.json:
        print(json.dumps(r))
        return
    print(f"{r['shape']}, batch {r['batch']} ({r['tokens_per_step']} tokens), 1 thread, BLAS: {r['blas']}")
    print(f"step {r['step_ms']:.1f} ms without the profiler, {r['profiled_step_ms']:.1f} ms with it")
    total = sum(r["passes_ms"].values())
    for k in ORDER:
        v = r["passes_ms"][k]
        print(f"  {k:<30} {v:8.1f} ms  {100 * v / total:5.1f}%")
    print(f"outside the layer drivers (attention's products included): "
          f"{100 * r['outside_matmul_drivers']:.1f}% of the profiled step")


if __name__ == "__main__":
    main()
