"""Regenerate the README's quickstart results table from a real run of the README's command.

    python benchmarks/readme_results.py --run --write     # run the quickstart, record it, update README.md
    python benchmarks/readme_results.py --write           # record an existing runs/sweeps/quickstart
    python benchmarks/readme_results.py                   # print the table of the recorded run
    python benchmarks/readme_results.py --compare SWEEP   # every number of SWEEP against the record

The record (benchmarks/results/quickstart.json) keeps every number of the table together with the
machine, the commit and the command that produced them; README.md holds the table rendered from that
record between two marker comments, and a test checks that they agree, so the README cannot drift
from the recorded run unnoticed. Extra arguments after ``--`` go to ``sft-sweep`` (for example
``-- pretrain.cache_dir=/shared/cache``); they are recorded too.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import time
from datetime import datetime, timezone
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
RECORD = REPO / "benchmarks" / "results" / "quickstart.json"
START, END = "<!-- results-table:start (benchmarks/readme_results.py) -->", "<!-- results-table:end -->"
COMMAND = ["sft-sweep", "-m", "experiment=quickstart"]


def machine() -> dict:
    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    import numpy

    usable = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    return {"cpu": cpu, "cores": os.cpu_count(), "usable_cores": usable, "os": platform.platform(terse=True),
            "python": platform.python_version(), "numpy": numpy.__version__}


def commit() -> str:
    def git(*args: str) -> str:
        return subprocess.run(["git", *args], cwd=REPO, capture_output=True, text=True).stdout.strip()

    sha = git("rev-parse", "--short", "HEAD") or "unknown"
    return sha + ("+changes" if git("status", "--porcelain", "--untracked-files=no") else "")


def collect(sweep: Path) -> dict:
    jobs = []
    for path in sorted(sweep.glob("*/summary.json")):
        s = json.loads(path.read_text())
        if s.get("status") != "completed":
            raise SystemExit(f"{path}: status {s.get('status')}; finish the sweep first")
        cfg = s["config"]
        jobs.append({"lr": cfg["optim.lr"], "replay": cfg.get("mix.replay_ratio", 0.0),
                     "epochs": cfg["train.epochs"], "base": s["base"], "final": s["final"],
                     "forgetting_pct": s.get("forgetting_pct"), "total_s": s["timings"].get("total_s"),
                     "pretrain_s": s["timings"].get("pretrain_s", 0.0)})
    if not jobs:
        raise SystemExit(f"no finished job in {sweep}")
    jobs.sort(key=lambda j: (j["lr"], j["replay"]))
    return {"jobs": jobs}


def _pct(v) -> str:
    return "" if v is None else f"{100 * v:.0f}%"


def render(record: dict) -> str:
    m = record["machine"]
    lines = [f"Measured by `benchmarks/readme_results.py` on {record['date']} at commit {record['commit']}: "
             f"{m['cpu']}, {m['usable_cores']} of {m['cores']} cores usable, {m['os']}, Python {m['python']}, "
             f"numpy {m['numpy']}. Command: `{' '.join(record['command'])}`"
             + (f", {record['wall_s']:.0f} s wall" if record.get("wall_s") else "") + "."
             + (f" {record['note']}" if record.get("note") else ""),
             "",
             "| lr | replay | follow | answer acc. | probe acc. | base knowledge SFT / probe | forgetting |",
             "|---|---|---|---|---|---|---|"]

    def knows(m: dict) -> str:
        return f"{_pct(m.get('base_knowledge_sft'))} / {_pct(m.get('base_knowledge_probe'))}"

    base = record["jobs"][0]["base"]
    lines.append(f"| base model | | {_pct(base.get('follow_rate'))} | {_pct(base.get('answer_acc'))} | "
                 f"{_pct(base.get('knowledge_acc'))} | {knows(base)} | |")
    for j in record["jobs"]:
        f = j["final"]
        lines.append(f"| {j['lr']:g} | {j.get('replay', 0.0):g} | {_pct(f.get('follow_rate'))} | "
                     f"{_pct(f.get('answer_acc'))} | {_pct(f.get('knowledge_acc'))} | {knows(f)} | "
                     f"{j['forgetting_pct']:+.1f}% |")
    return "\n".join(lines)


def readme_block(text: str) -> str:
    if START not in text or END not in text:
        raise SystemExit(f"README.md has no {START} ... {END} block")
    return text.split(START, 1)[1].split(END, 1)[0].strip()


def write_readme(readme: Path, table: str) -> None:
    text = readme.read_text()
    readme_block(text)
    head, rest = text.split(START, 1)
    tail = rest.split(END, 1)[1]
    readme.write_text(f"{head}{START}\n{table}\n{END}{tail}")


def compare(record: dict, sweep: dict) -> tuple[int, float, list[str]]:
    """Every base and final metric and the forgetting of each recorded job against the same job
    (learning rate, replay) of ``sweep``: (numbers compared, largest relative difference, one
    line per number that differs or is missing)."""
    jobs = {(j["lr"], j["replay"]): j for j in sweep["jobs"]}
    n, worst, lines = 0, 0.0, []
    for old in record["jobs"]:
        name = f"lr {old['lr']:g} replay {old['replay']:g}"
        new = jobs.get((old["lr"], old["replay"]))
        pairs = [("forgetting_pct", old.get("forgetting_pct"), None if new is None else new.get("forgetting_pct"))]
        for part in ("base", "final"):
            pairs += [(f"{part}.{k}", v, None if new is None else new[part].get(k)) for k, v in old[part].items()]
        for key, a, b in pairs:
            if a is None:
                continue
            n += 1
            if b is None:
                lines.append(f"{name}: {key} {a:.6g} recorded, missing here")
                worst = float("inf")
            elif a != b:
                rel = abs(b - a) / abs(a) if a else float("inf")
                worst = max(worst, rel)
                lines.append(f"{name}: {key} {a:.6g} -> {b:.6g} (relative {rel:.3g})")
    return n, worst, lines


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--run", action="store_true", help="run the README's quickstart command first (from the repository)")
    p.add_argument("--sweep", default=str(REPO / "runs" / "sweeps" / "quickstart"))
    p.add_argument("--write", action="store_true", help="record the sweep and update README.md")
    p.add_argument("--note", help="recording an earlier run: how it ran (wall time, load, cached base ...)")
    p.add_argument("--commit", help="recording an earlier run: the commit it ran at (default: HEAD)")
    p.add_argument("--compare", metavar="SWEEP", help="compare SWEEP's numbers with the record (exit 1 if any differ)")
    p.add_argument("extra", nargs="*", help="after --: extra sft-sweep overrides (--run passes them on)")
    args = p.parse_args()
    if args.compare:
        n, worst, lines = compare(json.loads(RECORD.read_text()), collect(Path(args.compare)))
        for line in lines:
            print(line)
        print(f"{n} numbers compared with {RECORD.name}, {len(lines)} differ; largest relative difference {worst:.3g}")
        return 1 if lines else 0
    if args.run or args.write:
        command = COMMAND + list(args.extra)
        wall = None
        if args.run:
            tic = time.perf_counter()
            subprocess.run(command, cwd=REPO, check=True)
            wall = time.perf_counter() - tic
        record = {"date": datetime.now(timezone.utc).strftime("%Y-%m-%d"), "commit": args.commit or commit(),
                  "machine": machine(), "command": command, "wall_s": wall, "note": args.note,
                  **collect(Path(args.sweep))}
        RECORD.parent.mkdir(parents=True, exist_ok=True)
        RECORD.write_text(json.dumps(record, indent=1) + "\n")
        write_readme(REPO / "README.md", render(record))
        print(f"recorded {RECORD} and updated README.md")
    record = json.loads(RECORD.read_text())
    print(render(record))


if __name__ == "__main__":
    sys.exit(main())
