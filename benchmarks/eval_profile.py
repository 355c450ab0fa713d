"""Where a job's evaluation time goes, metric by metric, and its share of the job.

    python benchmarks/eval_profile.py JOB_DIR [--repeat 3] [--json]

Loads the job's tuned model and its evaluator as ``sft-sweep-eval`` does (``evaluation_for``) and
times, over ``--repeat`` runs (the best of each part), a final evaluation and a periodic one, part
by part: held-out raw-text loss, response loss, greedy answers, multiple
choice, base knowledge (raw completion), memorisation (its greedy answers and its losses).
With the job's ``summary.json`` timings it prints what share of the job the evaluation took
when the job ran (``eval_s`` against ``total_s``).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from collections import defaultdict
from pathlib import Path

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))

from sft_sweep.errors import user_errors_exit  # noqa: E402
from sft_sweep.eval_cli import evaluation_for  # noqa: E402
from sft_sweep.jobmodels import resolve  # noqa: E402
from sft_sweep.train.evaluate import Evaluator  # noqa: E402
from sft_sweep.train.memorisation import MemorisationCheck  # noqa: E402

PARTS = [(Evaluator, "raw_losses", "raw-text loss"), (Evaluator, "response_losses", "response loss"),
         (Evaluator, "generate", "greedy answers"), (Evaluator, "mc_accuracy", "multiple choice"),
         (Evaluator, "base_knowledge", "base knowledge"),
         (MemorisationCheck, "_answers", "memorisation answers"), (MemorisationCheck, "_loss", "memorisation losses")]


def timed_parts(spent: dict[str, float]):
    """Wraps the evaluator's parts so each call adds its wall time to ``spent``; returns an undo."""
    originals = []
    for cls, name, label in PARTS:
        fn = getattr(cls, name)
        originals.append((cls, name, fn))

        def wrapper(*a, _fn=fn, _label=label, **kw):
            t0 = time.perf_counter()
            try:
                return _fn(*a, **kw)
            finally:
                spent[_label] += time.perf_counter() - t0
        setattr(cls, name, wrapper)

    def undo():
        for cls, name, fn in originals:
            setattr(cls, name, fn)
    return undo


def profile(job_dir: Path, repeat: int) -> dict:
    ev = evaluation_for(resolve(str(job_dir)), [])
    model, evaluator = ev.model, ev.evaluator
    out = {}
    for kind, periodic in (("final", False), ("periodic", True)):
        best: dict[str, float] = {}
        for _ in range(repeat):
            spent: dict[str, float] = defaultdict(float)
            undo = timed_parts(spent)
            t0 = time.perf_counter()
            try:
                evaluator.evaluate(model, periodic=periodic)
            finally:
                undo()
            spent["total"] = time.perf_counter() - t0
            for k, v in spent.items():
                best[k] = min(best.get(k, v), v)
        out[kind] = best
    model.close()
    summary = json.loads((job_dir / "summary.json").read_text()) if (job_dir / "summary.json").exists() else {}
    out["job_timings"] = {k: v for k, v in summary.get("timings", {}).items() if isinstance(v, (int, float))}
    out["threads"] = model.threads
    return out


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("job_dir")
    p.add_argument("--repeat", type=int, default=3)
    p.add_argument("--json", action="store_true", help="print one JSON line")
    a = p.parse_args()
    with user_errors_exit("eval_profile"):
        r = profile(Path(a.job_dir), a.repeat)
    if a.json:
        print(json.dumps(r))
        return
    print(f"{a.job_dir} ({r['threads']} thread(s); best of {a.repeat})")
    for kind in ("final", "periodic"):
        parts = r[kind]
        print(f"{kind} evaluation: {parts['total']:.2f} s")
        for _, _, label in PARTS:
            if parts.get(label):
                print(f"  {label:<22} {parts[label]:6.2f} s")
    t = r["job_timings"]
    if t.get("total_s") and "eval_s" in t:
        print(f"in the job: evaluation {t['eval_s']:.1f} s of {t['total_s']:.1f} s "
              f"({100 * t['eval_s'] / t['total_s']:.1f}%), SFT {t.get('sft_s', 0):.1f} s")


if __name__ == "__main__":
    main()
