"""The cost of one pre-training step per model vocabulary: the table behind ``pretrain.step_cost``.

    python benchmarks/step_cost.py [--vocabs 260,512,1024,2048] [--block 256] [--batch 16]
                                   [--steps 5] [--rounds 4] [--threads 0]

Times full pre-training steps (forward + backward + AdamW on random windows, float32, the mini
model of conf/model/mini.yaml at ``--block`` positions, ``--threads`` compute threads as
pre-training uses them, 0: every core, one BLAS thread each; CPU time counts the model's shard
worker processes too) for each vocabulary, in interleaved
rounds so that a change of the machine's load falls on every vocabulary alike. Prints wall and
CPU milliseconds per step (median over rounds), the load average, the BLAS kernel, and the
relative costs (CPU time, the first vocabulary = 1.0) as the YAML of ``pretrain.step_cost``.
CPU time is the measure: on a shared machine a step's wall time grows with the others' load,
its CPU time much less.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time

import numpy as np

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))

from sft_sweep.config import ModelConf  # noqa: E402
from sft_sweep.nn import GPT, AdamW, GPTConfig  # noqa: E402
from sft_sweep.nn.config import ModelShape  # noqa: E402
from sft_sweep.train.resources import job_threads  # noqa: E402


def cpu_seconds() -> float:
    """CPU seconds of this process and of its child processes (the model's shard workers run in
    worker processes, which ``time.process_time`` does not see; Linux /proc)."""
    total = time.process_time()
    tick = os.sysconf("SC_CLK_TCK")
    me = os.getpid()
    for d in os.listdir("/proc"):
        if not d.isdigit():
            continue
        try:
            with open(f"/proc/{d}/stat") as f:
                fields = f.read().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[1]) == me:  # ppid
            total += (int(fields[11]) + int(fields[12])) / tick  # utime + stime
    return total


def blas_kernel() -> str:
    from threadpoolctl import threadpool_info

    return "; ".join(f"{i.get('internal_api')} {i.get('version')} {i.get('architecture', '')}".strip()
                     for i in threadpool_info())


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--vocabs", default="260,512,1024,2048")
    ap.add_argument("--block", type=int, default=256)
    ap.add_argument("--batch", type=int, default=16)
    ap.add_argument("--steps", type=int, default=5, help="steps per vocabulary and round")
    ap.add_argument("--rounds", type=int, default=4)
    ap.add_argument("--threads", type=int, default=0)
    a = ap.parse_args()
    vocabs = [int(v) for v in a.vocabs.split(",")]
    threads = job_threads(0, a.threads).pretrain
    shape = {f: getattr(ModelConf(), f) for f in ModelShape.__dataclass_fields__}
    shape["block_size"] = a.block
    rng = np.random.default_rng(0)
    runs = {}
    for v in vocabs:
        model = GPT(GPTConfig(**shape, vocab_size=v), seed=0, threads=threads)
        runs[v] = (model, AdamW(model.params, grad_clip=1.0))
    mask = np.ones((a.batch, a.block), dtype=np.float32)
    wall: dict[int, list[float]] = {v: [] for v in vocabs}
    cpu: dict[int, list[float]] = {v: [] for v in vocabs}
    load0 = os.getloadavg()
    for r in range(a.rounds + 1):  # round 0 warms up
        for v in vocabs:
            model, opt = runs[v]
            w = rng.integers(0, v - 4, size=(a.steps, a.batch, a.block + 1))
            t0, c0 = time.perf_counter(), cpu_seconds()
            for s in range(a.steps):
                _, grads = model.loss_and_grads(w[s, :, :-1], w[s, :, 1:], mask)
                opt.step(grads, 1e-3)
            if r:
                wall[v].append(1000 * (time.perf_counter() - t0) / a.steps)
                cpu[v].append(1000 * (cpu_seconds() - c0) / a.steps)
    load1 = os.getloadavg()
    print(f"mini model, block {a.block}, batch {a.batch}, {threads} threads; {a.rounds} rounds x {a.steps} steps")
    print(f"load average before {load0[0]:.2f}, after {load1[0]:.2f}; BLAS: {blas_kernel()}")
    ref = statistics.median(cpu[vocabs[0]])
    print("vocab  wall ms/step  CPU ms/step  CPU cost")
    for v in vocabs:
        print(f"{v:5d}  {statistics.median(wall[v]):12.0f}  {statistics.median(cpu[v]):11.0f}  "
              f"{statistics.median(cpu[v]) / ref:8.2f}")
    costs = ", ".join(f"{v}: {statistics.median(cpu[v]) / ref:.2f}" for v in vocabs)
    print(f"pretrain:\n  step_cost: {{{costs}}}")


if __name__ == "__main__":
    main()
