"""``sft-sweep-report``: write the report of one or more sweeps, or show their progress.

    sft-sweep-report runs/sweeps/quickstart                 # report.md / report.html in the sweep dir
    sft-sweep-report runs/sweeps/a runs/sweeps/b --out cmp  # several sweeps compared together
    sft-sweep-report --status runs/sweeps/quickstart        # table of jobs: status, latest step

Bad input (missing directory, no jobs) prints one line and exits 1; usage errors exit 2.
"""

from __future__ import annotations

import argparse
import math
import sys
import time
from collections.abc import Sequence

import pandas as pd

from analysis.collect import RunSet, collect_runs, find_axis
from analysis.errors import ReportError
from analysis.report import write_report
from analysis.style import fmt_value

PROG = "sft-sweep-report"


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog=PROG,
        description="Aggregate sft-sweep jobs into tables, figures and a report with findings.",
    )
    p.add_argument("dirs", nargs="+", metavar="DIR",
                   help="sweep directory (Hydra multirun dir); several are compared together")
    p.add_argument("-o", "--out", metavar="OUT",
                   help="where to write the report (default: the sweep dir; for several sweeps "
                        "report-<a>+<b> next to them)")
    p.add_argument("--status", action="store_true",
                   help="only print a table of the jobs with their status and latest step")
    p.add_argument("--debug", action="store_true", help="show the traceback of unexpected errors")
    return p


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    try:
        if args.status:
            runs = collect_runs(args.dirs)
            print(format_status(runs))
            return 0
        paths = write_report(args.dirs, args.out)
        counts = {}
        for f in paths.findings:
            counts[f.verdict] = counts.get(f.verdict, 0) + 1
        print(f"report: {paths.html}")
        print(f"        {paths.markdown}")
        print(f"figures: {len(paths.plots)}, findings: "
              + (", ".join(f"{v} {k}" for k, v in counts.items()) or "none"))
        if paths.problems:
            print(f"{len(paths.problems)} problem(s) reading the jobs, listed in the report; first: "
                  f"{paths.problems[0]}", file=sys.stderr)
        return 0
    except ReportError as exc:
        print(f"{PROG}: error: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print(f"{PROG}: interrupted", file=sys.stderr)
        return 130
    except Exception as exc:  # noqa: BLE001 - one line for the user, the traceback on request
        if args.debug:
            raise
        print(f"{PROG}: error: {type(exc).__name__}: {exc} (run with --debug for the traceback)",
              file=sys.stderr)
        return 1


# ======================================================================================
# --status
# ======================================================================================


def _age(ts: float | None, now: float) -> str:
    if ts is None or (isinstance(ts, float) and math.isnan(ts)):
        return "-"
    s = max(0.0, now - ts)
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if s >= size:
            return f"{s / size:.0f}{unit} ago"
    return f"{s:.0f}s ago"


def _num(v, fmt: str) -> str:
    if v is None or pd.isna(v):
        return "-"
    return format(float(v), fmt)


def status_rows(runs: RunSet) -> tuple[list[str], list[list[str]]]:
    """Header and rows of the ``--status`` table (one row per job)."""
    now = time.time()
    shown = runs.swept
    header = ["job", "status"] + shown + ["step", "epoch", "train loss", "resp. loss", "forgetting",
                                         "updated", "note"]
    rows = []
    for _, j in runs.jobs.iterrows():
        config = runs.configs.get(j["job"], {})
        ep_key = find_axis(list(config), "epochs")
        planned = config.get(ep_key) if ep_key else None
        epoch = _num(j.get("last_epoch"), ".2f")
        if epoch != "-" and isinstance(planned, (int, float)) and not isinstance(planned, bool):
            epoch += f"/{planned:g}"
        step = _num(j.get("last_step"), ".0f")
        if step != "-" and j["done"] and not pd.isna(j.get("steps")) and j.get("steps") != j.get("last_step"):
            step += f"/{j['steps']:.0f}"
        resp = j.get("final_response_loss")
        if resp is None or pd.isna(resp):
            resp = j.get("last_eval_response_loss")
        forgetting = j.get("forgetting_pct")
        note = str(j.get("error") or "")
        rows.append([str(j["job"]), str(j["status"])] + [fmt_value(c, j[c]) for c in shown]
                    + [step, epoch, _num(j.get("last_loss"), ".3f"), _num(resp, ".3f"),
                       "-" if forgetting is None or pd.isna(forgetting) else f"{forgetting:+.1f}%",
                       _age(j.get("updated"), now), note[:60] + ("…" if len(note) > 60 else "")])
    return header, rows


def format_status(runs: RunSet) -> str:
    """The ``--status`` table as text, with job counts and reading problems underneath."""
    header, rows = status_rows(runs)
    widths = [max(len(h), *(len(r[i]) for r in rows)) for i, h in enumerate(header)]
    line = lambda cells: "  ".join(c.ljust(w) for c, w in zip(cells, widths)).rstrip()  # noqa: E731
    out = [line(header), line(["-" * w for w in widths])] + [line(r) for r in rows]
    counts = runs.status_counts()
    out.append("")
    out.append(f"{len(runs.jobs)} jobs: " + ", ".join(f"{v} {k}" for k, v in sorted(counts.items())))
    if runs.problems:
        out.append(f"{len(runs.problems)} problem(s) reading files:")
        out += [f"  {p}" for p in runs.problems[:20]]
    return "\n".join(out)


if __name__ == "__main__":
    raise SystemExit(main())
