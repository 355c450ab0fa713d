"""Search with and without pruning: the same N-trial answer_acc search (mini model, sampler seed 0),
once with the config's pruner (successive halving) and once with ``hydra/sweeper/pruner=none``.

    python benchmarks/search_pruning.py runs/bench            # both searches at once, 1 trial at a time each
    python benchmarks/search_pruning.py runs/bench --summarize  # only read what an earlier run left

Each search is one real ``sft-sweep -m hparams_search=answer_acc`` in ``OUT/pruned`` or ``OUT/full``,
timed from outside (process start to exit, the end-of-sweep report switched off), sharing one
base-model cache. The two run side by side so that they see the same machine load; the load
average is sampled every 30 s into OUT/load.txt. Reported per search: wall time, SFT steps run
(sum of the jobs' ``steps``), trials complete / pruned / failed, and the best objective
(final.answer_mc_acc) with its 95% binomial half-width over the evaluated items.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import subprocess
import sys
import threading
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def run_search(out: Path, arm: str, n_trials: int, cache: str) -> float:
    cmd = [sys.executable, "-m", "sft_sweep.cli", "-m", "hparams_search=answer_acc", f"hydra.sweeper.n_trials={n_trials}",
           "train.threads=1", f"pretrain.cache_dir={cache}", f"hydra.sweep.dir={out / arm}", "~hydra.callbacks.report"]
    if arm == "full":
        cmd.append("hydra/sweeper/pruner=none")
    env = {k: v for k, v in os.environ.items() if k not in ("OPENBLAS_CORETYPE", "OPENBLAS_L2_SIZE")}
    t0 = time.perf_counter()
    with open(out / f"{arm}.log", "w") as log:
        rc = subprocess.run(cmd, cwd=REPO, env=env, stdout=log, stderr=subprocess.STDOUT).returncode
    wall = time.perf_counter() - t0
    (out / f"{arm}.wall").write_text(f"{arm} rc={rc} wall_s={wall:.1f}\n")
    return wall


def summarize(out: Path, arm: str, n_items: int) -> dict:
    wall_line = (out / f"{arm}.wall").read_text().split()
    wall = float(wall_line[-1].split("=")[1])
    jobs = [json.loads(p.read_text()) for p in sorted((out / arm).glob("*/summary.json"))]
    status = {s: sum(j["status"] == s for j in jobs) for s in ("completed", "pruned", "failed")}
    steps = sum(int(j.get("steps") or 0) for j in jobs)
    planned = sum(int(j.get("steps_planned") or j.get("steps") or 0) for j in jobs)
    done = [j["final"]["answer_mc_acc"] for j in jobs if j["status"] == "completed"]
    best = max(done) if done else float("nan")
    half = 1.96 * math.sqrt(best * (1 - best) / n_items) if done else float("nan")
    return {"arm": arm, "wall_s": wall, "trials": len(jobs), **status, "sft_steps_run": steps,
            "sft_steps_planned": planned, "best_answer_mc_acc": best, "ci95_half_width": half}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("out", type=Path)
    ap.add_argument("--n-trials", type=int, default=12)
    ap.add_argument("--cache", default=str(REPO / "runs" / "cache"))
    ap.add_argument("--items", type=int, default=100, help="eval.max_items: held-out questions per evaluation")
    ap.add_argument("--summarize", action="store_true")
    args = ap.parse_args()
    out = args.out.resolve()
    if not args.summarize:
        out.mkdir(parents=True, exist_ok=True)
        stop = threading.Event()

        def sample_load() -> None:
            with open(out / "load.txt", "a") as f:
                while not stop.wait(30):
                    f.write(f"{time.strftime('%H:%M:%S')} {open('/proc/loadavg').read()}")
                    f.flush()

        threading.Thread(target=sample_load, daemon=True).start()
        arms = [threading.Thread(target=run_search, args=(out, arm, args.n_trials, args.cache)) for arm in ("pruned", "full")]
        for t in arms:
            t.start()
        for t in arms:
            t.join()
        stop.set()
    rows = [summarize(out, arm, args.items) for arm in ("full", "pruned")]
    for r in rows:
        print(json.dumps(r))
    full, pruned = rows
    print(f"wall time saved: {100 * (1 - pruned['wall_s'] / full['wall_s']):.0f}%; SFT steps saved: "
          f"{100 * (1 - pruned['sft_steps_run'] / full['sft_steps_run']):.0f}%; best answer_mc_acc "
          f"{pruned['best_answer_mc_acc']:.3f} (pruned) vs {full['best_answer_mc_acc']:.3f} (full), "
          f"95% half-width ~{full['ci95_half_width']:.3f}")


if __name__ == "__main__":
    main()
