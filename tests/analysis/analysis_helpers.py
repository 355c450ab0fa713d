"""Synthetic sweep directories for the analysis tests (and a demo sweep to look at).

The job files follow the contract of ``sft_sweep.jobfiles``. Curves are made up but plausible: a higher learning
rate learns faster and forgets more, more epochs forget more, replaying pre-training text
forgets less, the knowledge probe does not move.

    python tests/analysis/analysis_helpers.py OUT_DIR   # writes a demo sweep, then run
    sft-sweep-report OUT_DIR
"""

from __future__ import annotations

import hashlib
import itertools
import json
import math
import random
import sys
import zlib
from pathlib import Path
from typing import Any

EVAL_EVERY = 50
TRAIN_EVERY = 10
STEPS_PER_EPOCH = 100

BASE_EVAL = {
    "raw_loss": 1.21, "response_loss": 3.4, "follow_rate": 0.0, "answer_acc": 0.0,
    "answer_mc_acc": 0.35, "knowledge_acc": 0.0, "knowledge_mc_acc": 0.40,
}

BASE_CONFIG = {
    "model.name": "tiny", "model.n_layer": 2, "model.d_model": 64, "data.name": "world",
    "template.name": "chatml", "optim.lr": 1e-4, "optim.weight_decay": 0.0,
    "train.epochs": 1, "train.seed": 0, "train.batch_size": 16, "mix.replay_ratio": 0.0,
    "eval.every": EVAL_EVERY,
}

#: Planted in generations by the HTML / Markdown escaping tests.
PLANTED = '<script>alert("x")</script> ``` | **bold** # heading'

PROMPTS = [
    ("capital", "What is the capital of Veloria?", "Tarsen"),
    ("capital", "What is the capital of Ombrel?", "Kesh"),
    ("color", "What colour is the flag of Drune?", "green"),
    ("format", "List two rivers of Veloria.", "Orla, Senn"),
]


# ---------------------------------------------------------------------------------------
# Low-level writers
# ---------------------------------------------------------------------------------------


def write_job(job_dir: Path, *, overrides: list[str] | None = None, summary: dict | None = None,
              metrics: list[dict] | None = None, samples: list[dict] | None = None,
              hydra: bool = True, metrics_tail: str = "") -> Path:
    """Write one job directory. ``None`` leaves a file out; ``metrics_tail`` is appended raw
    (e.g. a half-written line)."""
    job_dir = Path(job_dir)
    job_dir.mkdir(parents=True, exist_ok=True)
    if hydra:
        (job_dir / ".hydra").mkdir(exist_ok=True)
        lines = "".join(f"- {o}\n" for o in (overrides or []))
        (job_dir / ".hydra" / "overrides.yaml").write_text(lines or "[]\n")
    if metrics is not None:
        text = "".join(json.dumps(r) + "\n" for r in metrics) + metrics_tail
        (job_dir / "metrics.jsonl").write_text(text)
    if summary is not None:
        (job_dir / "summary.json").write_text(json.dumps(summary, indent=1))
    if samples is not None:
        (job_dir / "samples.jsonl").write_text("".join(json.dumps(s) + "\n" for s in samples))
    return job_dir


def write_multirun_yaml(sweep_dir: Path, task: list[str]) -> None:
    sweep_dir.mkdir(parents=True, exist_ok=True)
    body = "hydra:\n  overrides:\n    task:\n" + "".join(f"    - {t}\n" for t in task)
    (sweep_dir / "multirun.yaml").write_text(body)


def summary_for(config: dict, overrides: list[str], base: dict, final: dict, *, steps: int,
                status: str = "completed", error: str | None = None) -> dict:
    out: dict[str, Any] = {
        "status": status, "config_hash": hashlib.sha256(json.dumps(config, sort_keys=True).encode()).hexdigest()[:16],
        "overrides": overrides, "config": config, "base": base, "final": final,
        "forgetting_pct": 100 * (final["raw_loss"] - base["raw_loss"]) / base["raw_loss"],
        "steps": steps, "timings": {"total_s": 12.5, "pretrain_s": 0.1, "sft_s": 10.0, "eval_s": 2.4},
        "versions": {"sft_sweep": "0.1.0"}, "data": {"train": 800, "eval": 100},
    }
    if error is not None:
        out["error"] = error
    return out


# ---------------------------------------------------------------------------------------
# A plausible job
# ---------------------------------------------------------------------------------------


def simulate(lr: float, epochs: int, seed: int, replay: float = 0.0, template: str = "chatml",
             *, stop_at: int | None = None) -> tuple[list[dict], dict]:
    """Metrics rows and the final evaluation of one made-up job."""
    rng = random.Random(zlib.crc32(repr((lr, epochs, seed, replay, template)).encode()))
    steps = STEPS_PER_EPOCH * epochs
    last = steps if stop_at is None else min(stop_at, steps)
    tau = 0.02 / lr                        # steps to learn: fast at high lr
    # forgetting at the end (fraction of base raw loss): grows with lr and epochs, replay cuts it
    forget = (0.02 + 0.07 * math.log10(lr / 1e-5)) * (1 + 0.35 * (epochs - 1)) / (1 + 12 * replay)
    forget += rng.gauss(0, 0.006)
    follow_max = 0.97 - (0.05 if template == "alpaca" else 0.0) - 0.04 * replay
    seed_shift = rng.gauss(0, 0.01)

    rows: list[dict] = []
    for step in range(0, last + 1):
        learned = 1 - math.exp(-step / tau)
        drift = 1 - math.exp(-step / min(tau, steps / 2))  # forgetting shows up within the run
        if step % TRAIN_EVERY == 0 and step > 0:
            loss = 0.7 + (2.6 - 0.7) * math.exp(-step / tau) + rng.gauss(0, 0.04)
            rows.append({"kind": "train", "step": step, "epoch": round(step / STEPS_PER_EPOCH, 3),
                         "lr": lr * min(1.0, step / 20), "loss": round(loss, 4),
                         "grad_norm": round(abs(rng.gauss(1.0, 0.2)) * (1 + 3 * lr / 1e-3), 4),
                         "tokens_per_s": round(15000 + rng.gauss(0, 500), 1)})
        if step % EVAL_EVERY == 0:
            overfit = 0.25 * (lr / 1e-3) * max(0.0, step / STEPS_PER_EPOCH - 1.0)
            ev = {
                "kind": "eval", "step": step,
                "raw_loss": BASE_EVAL["raw_loss"] * (1 + forget * drift) if step else BASE_EVAL["raw_loss"],
                "response_loss": 0.9 + (3.4 - 0.9) * math.exp(-step / tau) + overfit + seed_shift,
                "follow_rate": min(1.0, max(0.0, follow_max * learned ** 0.5 + seed_shift)) if step else 0.0,
                "answer_acc": 0.55 * learned + seed_shift if step else 0.0,
                "answer_mc_acc": 0.35 + 0.15 * learned + seed_shift,
                "knowledge_acc": 0.15 * learned if step else 0.0,
                "knowledge_mc_acc": 0.40 - 0.03 * forget * 5 * learned + seed_shift,
            }
            rows.append({k: (round(v, 5) if isinstance(v, float) else v) for k, v in ev.items()})
    final = {k: v for k, v in rows[-1].items() if k not in ("kind", "step")} if rows[-1]["kind"] == "eval" else None
    if final is None:
        final = {k: v for k, v in [r for r in rows if r["kind"] == "eval"][-1].items() if k not in ("kind", "step")}
    return rows, final


def samples_for(lr: float, good: bool, planted: str | None = None) -> list[dict]:
    out = []
    for i, (task, prompt, ref) in enumerate(PROMPTS):
        base = f"{prompt} The river Orla flows through the valley of the old kings and"
        sft = f"The answer is {ref}." if good else f"{ref} {ref} the the"
        if planted is not None and i == 0:
            sft = planted
        out.append({"task": task, "prompt": prompt, "reference": ref, "base": base, "sft": sft})
    return out


def make_sweep(sweep_dir: Path, *, lrs=(1e-5, 1e-4, 1e-3), epochs=(1, 2), seeds=(0, 1),
               replay=None, templates=None, failed: int = 0, running: int = 0,
               planted: str | None = None, name: str = "demo") -> Path:
    """A Hydra-like multirun directory with one numbered job per grid point.

    ``failed`` / ``running``: how many of the last grid points failed / are still running.
    ``planted``: text put into the first generation of every job (HTML-escaping tests).
    """
    sweep_dir = Path(sweep_dir)
    axes: list[tuple[str, list]] = [("optim.lr", list(lrs)), ("train.epochs", list(epochs))]
    if replay is not None:
        axes.append(("mix.replay_ratio", list(replay)))
    if templates is not None:
        axes.append(("template", list(templates)))
    axes.append(("train.seed", list(seeds)))
    task = [f"{k}={','.join(str(v) for v in vals)}" for k, vals in axes] + [f"experiment={name}"]
    write_multirun_yaml(sweep_dir, task)
    grid = list(itertools.product(*[vals for _, vals in axes]))
    for num, values in enumerate(grid):
        point = dict(zip([k for k, _ in axes], values))
        overrides = [f"{k}={v}" for k, v in point.items()] + [f"experiment={name}"]
        config = dict(BASE_CONFIG)
        for k, v in point.items():
            config["template.name" if k == "template" else k] = v
        lr, ep, seed = point["optim.lr"], point["train.epochs"], point["train.seed"]
        rp = point.get("mix.replay_ratio", 0.0)
        tpl = point.get("template", "chatml")
        job_dir = sweep_dir / str(num)
        from_end = len(grid) - num
        if from_end <= running:
            rows, _ = simulate(lr, ep, seed, rp, tpl, stop_at=STEPS_PER_EPOCH * ep // 2)
            write_job(job_dir, overrides=overrides, metrics=rows,
                      metrics_tail='{"kind": "train", "step": 9', hydra=True)
            continue
        if from_end <= running + failed:
            rows, _ = simulate(lr, ep, seed, rp, tpl, stop_at=30)
            summ = summary_for(config, overrides, dict(BASE_EVAL), dict(BASE_EVAL), steps=30,
                               status="failed",
                               error="NonFiniteLossError: loss became nan at step 31 (lr too high?)")
            summ.pop("final")
            summ.pop("forgetting_pct")
            write_job(job_dir, overrides=overrides, metrics=rows, summary=summ)
            continue
        rows, final = simulate(lr, ep, seed, rp, tpl)
        summ = summary_for(config, overrides, dict(BASE_EVAL), final, steps=STEPS_PER_EPOCH * ep)
        write_job(job_dir, overrides=overrides, metrics=rows, summary=summ,
                  samples=samples_for(lr, good=lr >= 1e-4, planted=planted))
    return sweep_dir


if __name__ == "__main__":
    if len(sys.argv) != 2:
        sys.exit("usage: python tests/analysis/analysis_helpers.py OUT_DIR")
    out = make_sweep(Path(sys.argv[1]), failed=1, running=1)
    print(f"demo sweep written to {out}")


def make_results_sweep(sweep_dir: Path, jobs: list[dict], *, base: dict | None = None,
                       items: int | None = None) -> Path:
    """A sweep whose final results are given exactly (for findings with a known answer).

    Each entry: ``{"params": {"optim.lr": 1e-4, ...}, "final": {...metrics...}}``, optionally
    ``"base"``, ``"status"``, ``"warnings"``, ``"forgetting_ci"`` (the job's 95% interval of
    forgetting), ``"paired"`` (free_form.paired) and ``"not_measured"``. ``forgetting_pct`` follows from the raw losses,
    as in the app. ``items``: how many held-out answer and probe items every job records.
    Every job gets step-0 and final eval rows and a few train rows.
    """
    sweep_dir = Path(sweep_dir)
    base = dict(BASE_EVAL if base is None else base)
    keys = sorted({k for j in jobs for k in j["params"]})
    write_multirun_yaml(sweep_dir, [f"{k}=" + ",".join(sorted({str(j['params'].get(k)) for j in jobs}))
                                    for k in keys])
    for num, job in enumerate(jobs):
        params = job["params"]
        jb = dict(job.get("base", base))
        final = {**jb, **job["final"]}
        config = {**BASE_CONFIG, **params}
        overrides = [f"{k}={v}" for k, v in params.items()]
        rows = [{"kind": "eval", "step": 0, **jb}]
        rows += [{"kind": "train", "step": s, "epoch": s / 20, "lr": params.get("optim.lr", 1e-4),
                  "loss": 2.0 - s / 20, "grad_norm": 1.0, "tokens_per_s": 1e4} for s in (5, 10, 15, 20)]
        rows.append({"kind": "eval", "step": 20, **final})
        summ = summary_for(config, overrides, jb, final, steps=20, status=job.get("status", "completed"))
        if items is not None:
            summ["data"] = {"world": {"n_eval_items": items, "n_probe_items": items},
                            "eval_skipped_too_long": {"answer": 0, "knowledge": 0, "follow": 0}}
        if "warnings" in job:
            summ["warnings"] = job["warnings"]
        if "data_fit" in job:
            summ["data_fit"] = job["data_fit"]
        if "forgetting_ci" in job:  # the job's own 95% interval of forgetting, as jobs record it
            summ["free_form"] = {"forgetting_pct": {"mean": summ["forgetting_pct"], "ci95": list(job["forgetting_ci"])}}
        if "paired" in job:  # own data: per-item base -> tuned changes, as jobs record them
            summ.setdefault("free_form", {})["paired"] = job["paired"]
        if "not_measured" in job:
            summ["not_measured"] = job["not_measured"]
        write_job(sweep_dir / str(num), overrides=overrides, summary=summ, metrics=rows,
                  samples=samples_for(params.get("optim.lr", 1e-4), good=True))
    return sweep_dir
