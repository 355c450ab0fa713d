"""Sweep scaling: the same N tiny jobs run serially and with the joblib launcher; job start-up cost.

    python benchmarks/sweep_scaling.py                 # 4 jobs of ~30 s (tiny model), ~4 minutes
    python benchmarks/sweep_scaling.py --quick         # 4 jobs of ~3 s, ~1 minute
    python benchmarks/sweep_scaling.py --repeat 2 --serial-threads --oversubscribed --json

Every mode is one real ``sft-sweep -m experiment=smoke optim.lr=...`` multirun in its own sweep dir,
timed from outside (process start to exit, the end-of-sweep report switched off), all jobs sharing
one base-model cache that is built before any timing. Run it on an otherwise idle machine: the
"others" column shows how much CPU other processes took meanwhile. Modes:

  serial         Hydra's basic launcher, one job after the other, train.threads=1
  serial_t<W>    (--serial-threads) train.threads=W: one job at a time on all W cores, the alternative
  joblib<W>      hydra/launcher=local_parallel (joblib, W workers), train.threads=1 per job
  joblib<W>_t<W> (--oversubscribed) the same with train.threads=W: W jobs x W threads on W cores

Parallel efficiency = wall(serial) / (W * wall(joblib<W>)); goal >= 0.9 for ~30 s jobs.
CPU use = CPU seconds of the sweep's processes / (wall * cores), from getrusage of reaped children;
"others" = the rest of the machine's CPU time meanwhile (/proc/stat): other work skews the figures.

Job start-up overhead = interpreter + imports + Hydra compose (the app entry point) + job set-up
(data preparation, loading the cached base model and its cached evaluation) + the first SFT step,
measured in fresh processes running ``sft-sweep`` (single run, train.max_steps=1) and read from
timestamps the child records; goal <= 1.5 s. The median of --startup-runs runs is reported.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
LRS = ["1e-4", "2e-4", "3e-4", "5e-4", "7e-4", "1e-3", "2e-3", "3e-3", "5e-3", "7e-3"]

# Runs inside the child: the real console entry point, with timestamps at each milestone.
STARTUP_CHILD = r"""
import json, sys, time
marks = {"interpreter": time.time()}
import sft_sweep.cli as cli
marks["imports"] = time.time()
import sft_sweep.train.job as jobmod
from sft_sweep.train.runfiles import MetricsLog
_init, _write = jobmod.Job.__init__, MetricsLog.write
def init(self, *a, **k):
    marks.setdefault("composed", time.time())
    _init(self, *a, **k)
def write(self, row):
    if row.get("kind") == "train" and "first_step" not in marks:
        marks["first_step"] = time.time()
    _write(self, row)
jobmod.Job.__init__, MetricsLog.write = init, write
sys.argv = ["sft-sweep", *sys.argv[2:]]
try:
    cli.main()
finally:
    with open(OUT, "w") as f:
        json.dump(marks, f)
"""


def smoke_overrides(cache: Path, steps: int) -> list[str]:
    return ["experiment=smoke", f"pretrain.cache_dir={cache}", f"train.max_steps={steps}",
            f"train.epochs={max(1, steps // 90 + 1)}",  # the tiny smoke data gives ~94 steps per epoch
            f"train.eval_interval={steps}", f"train.checkpoint_interval={steps}",
            f"train.log_interval={max(1, steps // 4)}"]


def machine_busy_s() -> float:
    """CPU seconds all processes of the machine have used since boot (Linux /proc/stat; 0 elsewhere)."""
    try:
        fields = [int(x) for x in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    except OSError:
        return 0.0
    idle = fields[3] + (fields[4] if len(fields) > 4 else 0)
    return (sum(fields[:8]) - idle) / os.sysconf("SC_CLK_TCK")


def run(cmd: list[str], log: Path) -> tuple[float, float, float]:
    """Run a command to completion: (wall s, CPU s of it and its reaped children, CPU s of the whole machine)."""
    r0 = resource.getrusage(resource.RUSAGE_CHILDREN)
    b0 = machine_busy_s()
    t0 = time.perf_counter()
    with open(log, "w") as f:
        p = subprocess.run(cmd, stdout=f, stderr=subprocess.STDOUT, cwd=REPO)
    wall = time.perf_counter() - t0
    busy = machine_busy_s() - b0
    r1 = resource.getrusage(resource.RUSAGE_CHILDREN)
    if p.returncode != 0:
        sys.exit(f"command failed ({p.returncode}), see {log}:\n  {' '.join(cmd)}")
    return wall, (r1.ru_utime - r0.ru_utime) + (r1.ru_stime - r0.ru_stime), busy


def sweep(name: str, tmp: Path, jobs: int, steps: int, threads: int, launcher: list[str], rep: int = 0) -> dict:
    sweep_dir = tmp / f"{name}-{rep}"  # a fresh dir each time: finished jobs would be skipped
    cmd = [sys.executable, "-m", "sft_sweep.cli", "-m", *smoke_overrides(tmp / "cache", steps),
           f"optim.lr={','.join(LRS[:jobs])}", f"train.threads={threads}", *launcher,
           f"hydra.sweep.dir={sweep_dir}", "~hydra.callbacks.report"]
    wall, cpu, busy = run(cmd, tmp / f"{name}-{rep}.log")
    summaries = [json.loads(p.read_text()) for p in sorted(sweep_dir.glob("*/summary.json"))]
    bad = [s.get("error") for s in summaries if s.get("status") != "completed"]
    if len(summaries) != jobs or bad:
        sys.exit(f"{name}: {len(summaries)} summaries, failures: {bad}")
    job_s = [s["timings"]["total_s"] for s in summaries]
    return {"mode": name, "wall_s": round(wall, 2), "cpu_s": round(cpu, 2),
            "cpu_use": round(cpu / (wall * (os.cpu_count() or 1)), 3),
            "others_cpu_use": round(max(0.0, busy - cpu) / (wall * (os.cpu_count() or 1)), 3),
            "mean_job_s": round(statistics.mean(job_s), 2), "threads_per_job": sorted({s["threads"] for s in summaries}),
            "steps": summaries[0]["steps"]}


def startup(tmp: Path, runs: int) -> dict:
    child = tmp / "startup_child.py"
    rows = []
    for i in range(runs):
        out = tmp / f"startup{i}.json"
        child.write_text(f"OUT = {str(out)!r}\n" + STARTUP_CHILD)
        cmd = [sys.executable, str(child), "--", *smoke_overrides(tmp / "cache", 1), "train.threads=1",
               f"hydra.run.dir={tmp / f'startup{i}'}"]
        t0 = time.time()
        run(cmd, tmp / f"startup{i}.log")
        m = json.loads(out.read_text())
        timings = json.loads((tmp / f"startup{i}" / "summary.json").read_text())["timings"]
        job_setup = timings["data_s"] + timings["base_s"] + timings["base_eval_s"]
        rows.append({
            "interpreter_s": m["interpreter"] - t0,
            "imports_s": m["imports"] - m["interpreter"],
            "compose_s": m["composed"] - m["imports"],
            "job_setup_s": job_setup,
            "first_step_s": m["first_step"] - m["composed"] - job_setup,
            "total_s": m["first_step"] - t0,
        })
    med = {k: round(statistics.median(r[k] for r in rows), 3) for k in rows[0]}
    med["runs"] = runs
    med["all_total_s"] = [round(r["total_s"], 3) for r in rows]
    return med


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--jobs", type=int, default=4, help=f"jobs per sweep (<= {len(LRS)})")
    ap.add_argument("--steps", type=int, default=850, help="SFT steps per job (850: ~30 s per job on the tiny model)")
    ap.add_argument("--workers", type=int, default=2, help="joblib workers (the machine has %d cores)" % (os.cpu_count() or 1))
    ap.add_argument("--quick", action="store_true", help="--steps 70: jobs of a few seconds")
    ap.add_argument("--oversubscribed", action="store_true", help="also run joblib with train.threads=workers")
    ap.add_argument("--serial-threads", action="store_true", help="also run serial_t<W>")
    ap.add_argument("--repeat", type=int, default=1, help="runs of each mode, interleaved; the fastest counts")
    ap.add_argument("--startup-runs", type=int, default=3)
    ap.add_argument("--keep", action="store_true", help="keep the temporary directory (logs, sweeps)")
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args(argv)
    steps = 70 if args.quick else args.steps
    jobs, w = min(args.jobs, len(LRS)), args.workers
    load_before = round(os.getloadavg()[0], 2)  # before any work of ours
    tmp = Path(tempfile.mkdtemp(prefix="sweep_scaling_"))
    try:
        # Build the base model (and its evaluation) once, untimed: every timed job loads it.
        run([sys.executable, "-m", "sft_sweep.cli", *smoke_overrides(tmp / "cache", 1), "train.threads=0",
             f"hydra.run.dir={tmp / 'prebuild'}"], tmp / "prebuild.log")
        res: dict = {"jobs": jobs, "steps_per_job": steps, "workers": w, "cores": os.cpu_count(),
                     "load_before": load_before}
        res["startup"] = startup(tmp, args.startup_runs)
        joblib = ["hydra/launcher=local_parallel", f"hydra.launcher.n_jobs={w}"]
        plan = [("serial", 1, [])]
        if args.serial_threads:
            plan.append((f"serial_t{w}", w, []))
        plan.append((f"joblib{w}", 1, joblib))
        if args.oversubscribed:
            plan.append((f"joblib{w}_t{w}", w, joblib))
        # Each mode --repeat times, interleaved; the fastest run of each counts (other load only adds time).
        best: dict[str, dict] = {}
        for rep in range(args.repeat):
            for name, threads, launcher in plan:
                r = sweep(name, tmp, jobs, steps, threads, launcher, rep)
                walls = best[name]["all_wall_s"] if name in best else []
                if name not in best or r["wall_s"] < best[name]["wall_s"]:
                    best[name] = r
                best[name]["all_wall_s"] = walls + [r["wall_s"]]
        modes = [best[name] for name, _, _ in plan]
        par = best[f"joblib{w}"]
        serial = modes[0]
        for m in modes:
            m["speedup"] = round(serial["wall_s"] / m["wall_s"], 3)
        res["modes"] = modes
        res["parallel_efficiency"] = round(serial["wall_s"] / (w * par["wall_s"]), 3)
        res["job_slowdown_in_parallel"] = round(par["mean_job_s"] / serial["mean_job_s"], 3)
        res["load_after"] = round(os.getloadavg()[0], 2)
    finally:
        if args.keep:
            print(f"(files kept in {tmp})", file=sys.stderr)
        else:
            shutil.rmtree(tmp, ignore_errors=True)

    if args.json:
        print(json.dumps(res))
        return
    st = res["startup"]
    print(f"{jobs} jobs of the tiny model (experiment=smoke), {steps} SFT steps each, {res['cores']} cores "
          f"(1-min load average before {res['load_before']}, after {res['load_after']})")
    if max(m["others_cpu_use"] for m in res["modes"]) > 0.1:
        print("warning: other processes were using the cores; the parallel figures understate the launcher")
    print(f"{'mode':<14}{'wall s':>9}{'speedup':>9}{'mean job s':>12}{'threads/job':>13}{'CPU use':>9}"
          f"{'others':>8}")
    for m in res["modes"]:
        print(f"{m['mode']:<14}{m['wall_s']:>9.1f}{m['speedup']:>9.2f}{m['mean_job_s']:>12.1f}"
              f"{','.join(map(str, m['threads_per_job'])):>13}{m['cpu_use']:>9.2f}{m['others_cpu_use']:>8.2f}")
    if args.repeat > 1:
        print("all runs (wall s): " + "; ".join(f"{m['mode']} {m['all_wall_s']}" for m in res["modes"]))
    eff = res["parallel_efficiency"]
    print(f"parallel efficiency on {w} workers: {eff:.3f}  (goal >= 0.9: {'met' if eff >= 0.9 else 'NOT met'}); "
          f"a job runs {res['job_slowdown_in_parallel']:.2f}x as long beside another")
    print(f"job start-up (median of {st['runs']}): {st['total_s']:.2f} s  (goal <= 1.5 s: "
          f"{'met' if st['total_s'] <= 1.5 else 'NOT met'})")
    print(f"  interpreter {st['interpreter_s']:.2f} s + imports {st['imports_s']:.2f} s + compose {st['compose_s']:.2f} s"
          f" + job set-up (data, cached base + eval) {st['job_setup_s']:.2f} s + first step {st['first_step_s']:.2f} s")


if __name__ == "__main__":
    main()
