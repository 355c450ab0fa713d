"""The sweep report: ``report.md`` and a self-contained ``report.html``.

``write_report(dirs, out_dir=None)`` collects the jobs, exports the tables, draws the figures,
computes the findings and writes both documents. Layout: findings first (the point of the
sweep), then what was swept and by which sweep commands (``analysis.sweepcmds``), job status,
the training data (one example with its loss mask and the jobs' data counts,
``analysis.dataview``), a summary table per setting, the Pareto front, the figures, a few base
vs tuned generations (``analysis.samples``), and any file that could not be read.

Safety: every text that comes from the job files (generations, prompts, error messages,
parameter values, directory names) is escaped: HTML-escaped in ``report.html`` (which also
forbids scripts through its Content-Security-Policy), and in ``report.md`` generations sit in
code fences longer than any backtick run they contain while table cells are escaped, so no
generation can inject markup or break the layout.
"""

from __future__ import annotations

import base64
import datetime as _dt
import html
import json
import logging
import os
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd

from analysis.collect import RunSet, collect_runs
from analysis.dataview import data_counts, read_summary, render_example
from analysis.jobdir import Problem
from analysis.findings import INCONCLUSIVE, NOT_SUPPORTED, SUPPORTED, Finding, compute_findings
from analysis.plots import PLOTS, plot_all
from analysis.pruning import saved_sentence
from analysis.samples import pick_samples, recommended_job
from analysis.sweepcmds import SweepCommand, sweep_commands
from analysis.style import col_name, fmt_metric, fmt_num, fmt_value, setting_label, sorted_values
from sft_sweep.jobfiles import write_atomic

log = logging.getLogger(__name__)

FILES_DIR = "report_files"
CONSTANTS_FILE = "fixed_config.json"
#: Settings named in the report's "held fixed" line when they did not vary (all are in the JSON).
MAIN_SETTINGS = ("model.name", "data.name", "data.source", "template.name", "optim.lr", "optim.schedule",
                 "train.epochs", "train.max_steps", "train.batch_size", "mix.replay_ratio", "train.seed",
                 "pretrain.steps", "model.n_layer", "model.n_embd", "model.block_size")
SUMMARY_METRICS = ("forgetting_pct", "final_follow_rate", "final_answer_acc", "final_knowledge_mc_acc",
                   "final_response_loss", "final_raw_loss")


@dataclass
class ReportPaths:
    """What ``write_report`` wrote."""

    out_dir: Path
    markdown: Path
    html: Path
    plots: dict[str, Path] = field(default_factory=dict)
    tables: list[Path] = field(default_factory=list)
    findings: list[Finding] = field(default_factory=list)
    problems: list[Problem] = field(default_factory=list)

    def __iter__(self):
        yield from (self.markdown, self.html, *self.plots.values(), *self.tables)


def default_out_dir(dirs: Sequence[str | os.PathLike]) -> Path:
    """The sweep directory itself; for several sweeps, ``report-<a>+<b>`` next to them."""
    roots = [Path(d) for d in dirs]
    if len(roots) == 1:
        return roots[0]
    common = Path(os.path.commonpath([str(r.resolve()) for r in roots]))
    names = "+".join(r.resolve().name for r in roots)
    return common / f"report-{names}"[:120]


def write_report(dirs: str | os.PathLike | Sequence[str | os.PathLike], out_dir: str | os.PathLike | None = None,
                 *, runs: RunSet | None = None) -> ReportPaths:
    """Collect ``dirs`` and write ``report.md``, ``report.html``, the figures and the CSV
    tables into ``out_dir`` (default: the sweep directory). Raises ``ReportError`` for a
    missing directory or one without jobs; a figure or finding that fails is reported in the
    document instead of stopping it."""
    if isinstance(dirs, (str, os.PathLike)):
        dirs = [dirs]
    runs = runs if runs is not None else collect_runs(dirs)
    out = Path(out_dir) if out_dir is not None else default_out_dir(dirs)
    files = out / FILES_DIR
    files.mkdir(parents=True, exist_ok=True)

    tables = runs.export(files)
    constants = files / CONSTANTS_FILE
    write_atomic(constants, json.dumps(runs.constants, indent=1, sort_keys=True, default=str) + "\n")
    tables.append(constants)
    plots = plot_all(runs, files, on_error=lambda name, exc: runs.problems.append(
        Problem(f"figure {name}", f"could not be drawn: {type(exc).__name__}: {exc}")))
    try:
        findings = compute_findings(runs)
    except Exception as exc:  # noqa: BLE001 - the rest of the report is still worth having
        log.exception("findings failed")
        runs.problems.append(Problem("findings", f"could not be computed: {type(exc).__name__}: {exc}"))
        findings = []

    doc = _build(runs, plots, findings, out)
    md_path, html_path = out / "report.md", out / "report.html"
    write_atomic(md_path, render_markdown(doc))
    write_atomic(html_path, render_html(doc))
    return ReportPaths(out, md_path, html_path, plots, tables, findings, list(runs.problems))


# ======================================================================================
# Document model: a list of blocks, rendered to Markdown and to HTML
# ======================================================================================
#
# Every string in a block is plain text; the renderers escape all of it.


@dataclass
class Block:
    kind: str  # h1 h2 h3 p list table img finding sample meta masked commands
    text: str = ""
    items: list[Any] = field(default_factory=list)
    header: list[str] = field(default_factory=list)
    rows: list[list[str]] = field(default_factory=list)
    path: Path | None = None
    extra: dict[str, Any] = field(default_factory=dict)


def _build(runs: RunSet, plots: dict[str, Path], findings: list[Finding], out: Path) -> list[Block]:
    doc: list[Block] = []
    names = ", ".join(r.resolve().name for r in runs.roots)
    exp = runs.constants.get("name")  # the experiment's name in the app's config, when fixed
    if isinstance(exp, str) and exp and exp != names and len(runs.roots) == 1:
        names = f"{exp} ({names})"
    doc.append(Block("h1", f"Sweep report: {names}"))
    counts = runs.status_counts()
    done = int(runs.jobs["done"].sum())
    meta = [f"Generated {_dt.datetime.now().strftime('%Y-%m-%d %H:%M')} from "
            + ", ".join(str(r) for r in runs.roots),
            f"{len(runs.jobs)} jobs: " + ", ".join(f"{v} {k}" for k, v in sorted(counts.items())),
            "Swept: " + (", ".join(f"{col_name(c)} ({c})" for c in runs.swept) or "nothing (single job)")]
    commands = commands_by_sweep(runs)
    mixed = {name: len(cmds) for name, cmds in commands.items() if len(cmds) > 1}
    if mixed:
        meta.append("Jobs from several sweep commands: " + ", ".join(f"{n} commands in {name}" for name, n in mixed.items())
                    + " (each listed under What was swept)")
    pruned = saved_sentence(runs)
    if pruned:
        meta.append(pruned)
    if runs.seeds:
        meta.append(f"Seeds: {', '.join(runs.seeds)}, up to {runs.n_seeds()} per setting; numbers are "
                    "seed means, ± is a 95% confidence interval")
    doc.append(Block("meta", items=meta))

    # Findings
    doc.append(Block("h2", "Findings"))
    if done == 0:
        doc.append(Block("p", "No job has completed yet, so there is nothing to conclude."))
    elif not findings:
        doc.append(Block("p", "Findings could not be computed (see Problems)."))
    for f in findings:
        doc.append(Block("finding", f.claim, extra={"verdict": f.verdict, "evidence": f.evidence}))

    # What was swept
    doc.append(Block("h2", "What was swept"))
    if runs.swept:
        rows = []
        done_jobs = runs.done_jobs()
        for c in runs.swept:
            vals = sorted_values(runs.jobs[c])
            rows.append([col_name(c), c, ", ".join(fmt_value(c, v) for v in vals), str(len(vals)),
                         str(len(sorted_values(done_jobs[c])) if not done_jobs.empty else 0)])
        doc.append(Block("table", header=["setting", "config key", "values", "n values", "n completed"],
                         rows=rows))
    else:
        doc.append(Block("p", "No setting differs between the jobs."))
    doc += _command_blocks(commands)
    if runs.constants:
        keep = {k: v for k, v in runs.constants.items() if not k.startswith("hydra.")}
        main = [k for k in MAIN_SETTINGS if k in keep]
        shown = ", ".join(f"{k}={_const(keep[k])}" for k in main)
        rest = len(keep) - len(main)
        doc.append(Block("p", "Held fixed: " + (shown or "—")
                         + (f" (and {rest} more settings, in {FILES_DIR}/{CONSTANTS_FILE})" if rest else "")))
    if runs.derived:
        doc.append(Block("p", "Also differ, as a consequence of the swept settings: " + ", ".join(runs.derived)))

    # Jobs
    doc.append(Block("h2", "Jobs"))
    doc.append(Block("p", f"{done} of {len(runs.jobs)} jobs completed and are analysed."
                          + (" Jobs that failed, were pruned by the search or are still running are listed "
                             "here and left out of the tables and findings." if done < len(runs.jobs) else "")))
    bad = runs.jobs[~runs.jobs["done"]]
    if not bad.empty:
        rows = []
        for _, j in bad.iterrows():
            where = []
            if pd.notna(j.get("last_step")):
                where.append(f"step {fmt_num(j['last_step'])}")
            if pd.notna(j.get("last_epoch")):
                where.append(f"epoch {fmt_num(j['last_epoch'])}")
            rows.append([str(j["job"]), str(j["status"]), setting_label(j, runs.swept) if runs.swept else "",
                         ", ".join(where) or "no metrics yet", str(j.get("error") or "")])
        doc.append(Block("table", header=["job", "status", "setting", "progress", "error"], rows=rows))

    # Warnings the jobs recorded (data skipped or dropped, files ignored, caches rebuilt)
    warned = runs.jobs[runs.jobs.get("n_warnings", pd.Series(0, index=runs.jobs.index)).fillna(0) > 0]
    if not warned.empty:
        doc.append(Block("h2", "Warnings"))
        doc.append(Block("list", items=[f"job {j['job']}: {w}" for _, j in warned.iterrows()
                                        for w in str(j["warnings"]).split("\n")][:100]))

    doc += _training_data_blocks(runs, findings)

    # Summary table
    if done:
        doc.append(Block("h2", "Summary per setting"))
        header, rows = summary_table(runs)
        doc.append(Block("p", "Final evaluation of the completed jobs"
                         + (", mean over seeds ± 95% CI (n = completed seeds)." if runs.seeds else ".")
                         + " Forgetting is the raw-text loss change against the base model."))
        doc.append(Block("table", header=header, rows=rows))

    # Pareto front
    front = pareto_table(runs)
    if front is not None:
        header, rows, what = front
        doc.append(Block("h2", "Pareto front"))
        doc.append(Block("p", f"Completed jobs that no other job beats on both {what} and forgetting "
                              "(the circled points of the trade-off figure), least forgetting first."))
        doc.append(Block("table", header=header, rows=rows))

    # Figures
    if plots:
        doc.append(Block("h2", "Figures"))
        captions = {name: cap for name, _fn, cap in PLOTS}
        for name, path in plots.items():
            doc.append(Block("img", captions.get(name, name), path=path,
                             extra={"rel": os.path.relpath(path, out).replace(os.sep, "/")}))

    # Generations
    samples = pick_samples(runs, findings)
    if samples:
        doc.append(Block("h2", "Base vs tuned generations"))
        doc.append(Block("p", "A few held-out prompts, the base model's continuation and the answers of the "
                              "recommended job (or the best on the Pareto front) and of the jobs with the least "
                              "and the most forgetting (text shown verbatim, escaped)."))
        for s in samples:
            doc.append(Block("sample", s["prompt"], extra=s))

    # Problems
    if runs.problems:
        doc.append(Block("h2", "Problems"))
        doc.append(Block("p", "These files (or parts) could not be read and were skipped:"))
        doc.append(Block("list", items=[str(p) for p in runs.problems[:100]]
                         + ([f"… and {len(runs.problems) - 100} more"] if len(runs.problems) > 100 else [])))

    doc.append(Block("h2", "Data files"))
    doc.append(Block("list", items=[f"{FILES_DIR}/{p.name}" for p in sorted((out / FILES_DIR).glob("*"))
                                    if p.suffix in (".csv", ".parquet", ".json")]
                     + ["Regenerate with: sft-sweep-report " + " ".join(str(r) for r in runs.roots)]))
    return doc


def _training_data_blocks(runs: RunSet, findings: Sequence[Finding]) -> list[Block]:
    """One training example with its loss mask, and the data counts the jobs recorded."""
    done = runs.done_jobs()
    if done.empty:
        return []
    shown = recommended_job(runs, findings)
    job = shown[0] if shown is not None else done.iloc[0]
    who = setting_label(job, runs.swept) if runs.swept else f"job {job['job']}"
    out = [Block("h2", "Training data")]
    try:
        ex = render_example(job["path"])
    except Exception as exc:  # noqa: BLE001 - a data file not on this machine must not stop the report
        out.append(Block("p", f"The training example of {who} could not be rendered: "
                              f"{type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}"))
    else:
        out.append(Block("p", f"Example {ex.index} from {ex.source}, as job \"{who}\" trained on it: {ex.template} "
                              f"template, loss mask \"{ex.mask_mode}\"; {ex.n_trained} of {ex.n_tokens} tokens are "
                              f"trained ({ex.status}). Trained tokens are marked [[like this]] in report.md and "
                              "highlighted in report.html."))
        out.append(Block("masked", extra={"spans": ex.spans}))
    counts = {j["job"]: data_counts(read_summary(j["path"]), runs.configs.get(j["job"], {}))
              for _, j in done.iterrows()}
    distinct = {tuple(c.lines()) for c in counts.values()}
    if len(distinct) == 1:
        out.append(Block("p", "Data counts recorded by the jobs (summary.json, the same in every completed job):"
                         if len(counts) > 1 else "Data counts recorded by the job (summary.json):"))
        out.append(Block("list", items=list(next(iter(distinct)))))
    else:
        header = ["job" if not runs.swept else "setting", "training examples", "filtered", "deduplicated",
                  "truncated", "dropped", "replay ratio"]
        rows = []
        for _, j in done.iterrows():
            c = counts[j["job"]]
            rows.append([setting_label(j, runs.swept) if runs.swept else str(j["job"])]
                        + [fmt_num(v) for v in (c.training_examples, c.filtered, c.deduplicated, c.truncated,
                                                c.dropped)]
                        + ["—" if c.replay_ratio is None else f"{100 * c.replay_ratio:.3g}%"])
        out.append(Block("p", "Data counts recorded by each completed job (summary.json); they differ between jobs:"))
        out.append(Block("table", header=header, rows=rows))
    return out


def commands_by_sweep(runs: RunSet) -> dict[str, list[SweepCommand]]:
    """Per sweep directory of the report, the sweep commands that made its jobs."""
    out: dict[str, list[SweepCommand]] = {}
    if runs.jobs.empty:
        return out
    # Sweep names follow the order of the directories (the collection names them so).
    for name, root in zip(runs.sweep_specs, runs.roots):
        part = runs.jobs[runs.jobs["sweep"] == name]
        out[name] = sweep_commands(root, list(zip(part["job"], part["path"])), runs.problems)
    return out


def _command_blocks(commands: dict[str, list[SweepCommand]]) -> list[Block]:
    if not any(commands.values()):
        return []
    if len(commands) == 1:
        (name, cmds), = commands.items()
        if len(cmds) > 1:
            intro = (f"This sweep directory holds jobs from {len(cmds)} sweep commands (each job's .hydra/ record "
                     "says which; multirun.yaml keeps only the last one). Their jobs are analysed together:")
        else:
            intro = "Sweep command:"
        return [Block("p", intro), Block("commands", items=[("", c.text(), c.notes()) for c in cmds])]
    mixed = [name for name, cmds in commands.items() if len(cmds) > 1]
    intro = "Sweep commands, per sweep directory" + (
        f" ({' and '.join(mixed)} {'holds' if len(mixed) == 1 else 'hold'} jobs from several commands, "
        "analysed together):" if mixed else ":")
    return [Block("p", intro),
            Block("commands", items=[(name, c.text(), c.notes()) for name, cmds in commands.items() for c in cmds])]


def summary_table(runs: RunSet) -> tuple[list[str], list[list[str]]]:
    """Per setting (seed-averaged): parameters, n, and the final metrics; the base model first."""
    from analysis.stats import mean_ci

    done = runs.done_jobs()
    metrics = [m for m in SUMMARY_METRICS if m in done and done[m].notna().any()]
    params = runs.params
    groups = list(done.groupby(params, dropna=False, sort=True)) if params else [((), done)]
    show_n = any(len(part) > 1 for _, part in groups)
    label_cols = [col_name(c) for c in params] or ["setting"]
    header = label_cols + (["n"] if show_n else []) + [_metric_header(m) for m in metrics]

    base = ["base model"] + [""] * (len(label_cols) - 1) + (["—"] if show_n else [])
    for m in metrics:
        b = m.replace("final_", "base_", 1)
        ok = m.startswith("final_") and b in done and done[b].notna().any()
        base.append(fmt_metric(b, done[b].mean()) if ok else "—")
    rows = [base]
    for key, part in groups:
        key = key if isinstance(key, tuple) else (key,)
        row = [fmt_value(c, v) for c, v in zip(params, key)] or [f"all {len(part)} jobs"]
        if show_n:
            row.append(str(len(part)))
        for m in metrics:
            mc = mean_ci(part[m])
            row.append(fmt_metric(m, mc.mean, ci=mc.half if mc.n >= 2 else None))
        rows.append(row)
    return header, rows


def pareto_table(runs: RunSet) -> tuple[list[str], list[list[str]], str] | None:
    """Jobs on the follow-rate (else answer-accuracy) vs forgetting Pareto front."""
    from analysis.stats import pareto_front

    done = runs.done_jobs()
    metric = next((m for m in ("final_follow_rate", "final_answer_acc")
                   if m in done and done[["forgetting_pct", m]].dropna().shape[0] >= 2), None) \
        if "forgetting_pct" in done else None
    if metric is None:
        return None
    front = pareto_front(done, maximize=[metric], minimize=["forgetting_pct"]).sort_values("forgetting_pct")
    cols = runs.swept
    metrics = ["forgetting_pct", metric] + [m for m in ("final_answer_acc", "final_response_loss")
                                            if m != metric and m in done and done[m].notna().any()]
    # A job is named by its swept values; its directory name only when nothing was swept.
    header = ([col_name(c) for c in cols] or ["job"]) + [_metric_header(m) for m in metrics]
    rows = [([fmt_value(c, r[c]) for c in cols] or [str(r["job"])]) + [fmt_metric(m, r[m]) for m in metrics]
            for _, r in front.iterrows()]
    return header, rows, _metric_header(metric)


def _metric_header(m: str) -> str:
    return {"forgetting_pct": "forgetting", "final_follow_rate": "follow rate", "final_answer_acc": "answer acc.",
            "final_knowledge_mc_acc": "knowledge MC acc.", "final_response_loss": "response loss",
            "final_raw_loss": "raw-text loss"}.get(m, m)


def _const(v: Any) -> str:
    return fmt_num(v) if isinstance(v, (int, float)) and not isinstance(v, bool) else str(v)


# ======================================================================================
# Markdown
# ======================================================================================

_MD_SPECIAL = re.compile(r"([\\`*_\[\]|~])")
# What would start a heading, list item or quote at the beginning of a line.
_MD_LINE_START = re.compile(r"^(\s*)(\d*)(#{1,6}|[-+=]+|[.)])(?=\s|$)")


def md_escape(text: Any) -> str:
    """Plain text -> Markdown that renders as that text, on one line.

    HTML-significant characters become entities (no raw HTML can get through), the characters
    that start emphasis, code, links, tables or strike-through are backslash-escaped, a
    leading ``#``/``-``/``+``/``1.`` cannot start a heading or list, line breaks become spaces.
    """
    t = str(text).replace("\r", "").replace("\n", " ")
    t = t.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")
    t = _MD_SPECIAL.sub(r"\\\1", t)
    return _MD_LINE_START.sub(lambda m: f"{m.group(1)}{m.group(2)}\\{m.group(3)}", t, count=1)


def md_code(text: Any, info: str = "text") -> str:
    """A fenced code block whose fence is longer than any backtick run inside ``text``
    (an empty text gives a visible placeholder instead of an empty block)."""
    t = str(text).replace("\r", "")
    if not t.strip():
        return "*(empty)*"
    longest = max((len(m) for m in re.findall(r"`+", t)), default=0)
    fence = "`" * max(3, longest + 1)
    return f"{fence}{info}\n{t}\n{fence}"


def render_markdown(doc: list[Block]) -> str:
    out: list[str] = []
    for b in doc:
        if b.kind == "h1":
            out.append(f"# {md_escape(b.text)}\n")
        elif b.kind == "h2":
            out.append(f"## {md_escape(b.text)}\n")
        elif b.kind == "meta":
            out.append("\n".join(f"- {md_escape(i)}" for i in b.items) + "\n")
        elif b.kind == "p":
            out.append(md_escape(b.text) + "\n")
        elif b.kind == "list":
            out.append("\n".join(f"- {md_escape(i)}" for i in b.items) + "\n")
        elif b.kind == "finding":
            verdict = b.extra["verdict"].upper()
            out.append(f"- **{md_escape(verdict)}**: {md_escape(b.text)} — {md_escape(b.extra['evidence'])}")
        elif b.kind == "table":
            head = "| " + " | ".join(md_escape(h) for h in b.header) + " |"
            sep = "|" + "|".join("---" for _ in b.header) + "|"
            body = ["| " + " | ".join(md_escape(c) for c in r) + " |" for r in b.rows]
            out.append("\n".join([head, sep, *body]) + "\n")
        elif b.kind == "img":
            rel = b.extra["rel"]
            out.append(f"![{md_escape(b.text)}]({_md_url(rel)})\n\n*{md_escape(b.text)}*\n")
        elif b.kind == "commands":
            out.append("\n".join(f"- {md_escape((where + ': ' if where else '') + cmd + ' (' + notes + ')')}"
                                  for where, cmd, notes in b.items) + "\n")
        elif b.kind == "masked":
            out.append(md_code("".join(f"[[{t}]]" if on else t for t, on in b.extra["spans"])) + "\n")
        elif b.kind == "sample":
            s = b.extra
            parts = [f"### {md_escape(s['task'])}\n", "Prompt:\n", md_code(s["prompt"]) + "\n",
                     f"Reference: {md_escape(s['reference']) or '—'}\n", "Base model:\n", md_code(s["base"]) + "\n"]
            for label, text in s["tuned"]:
                parts += [f"Tuned, {md_escape(label)}:\n", md_code(text) + "\n"]
            out.append("\n".join(parts))
    # Findings are list items: keep them together, separate every other block by a blank line.
    text = ""
    for i, chunk in enumerate(out):
        is_item = chunk.startswith("- **")
        prev_item = i > 0 and out[i - 1].startswith("- **")
        text += ("\n" if is_item and prev_item else "\n\n" if text else "") + chunk.rstrip("\n")
    return text + "\n"


def _md_url(rel: str) -> str:
    return "".join(c if c.isalnum() or c in "/._-" else f"%{ord(c):02X}" for c in rel)


# ======================================================================================
# HTML
# ======================================================================================

_CSS = """
body { font-family: -apple-system, "Segoe UI", Helvetica, Arial, sans-serif; max-width: 1200px;
       margin: 2em auto; padding: 0 1em; color: #222; line-height: 1.45; }
h1 { font-size: 1.7em; margin-bottom: .2em; }
h2 { border-bottom: 1px solid #ddd; padding-bottom: .2em; margin-top: 2em; }
h3 { font-size: 1.05em; margin-bottom: .3em; }
ul.meta { color: #444; padding-left: 1.2em; }
table { border-collapse: collapse; margin: .8em 0; font-size: .9em; }
th, td { border: 1px solid #ccc; padding: .3em .6em; text-align: left; vertical-align: top; }
th { background: #f3f3f3; }
td.num { text-align: right; font-variant-numeric: tabular-nums; white-space: nowrap; }
.finding { border-left: 5px solid #999; background: #fafafa; padding: .5em .9em; margin: .7em 0; }
.finding .claim { font-weight: 600; }
.finding .evidence { color: #333; font-size: .93em; margin-top: .2em; }
.verdict { display: inline-block; font-size: .78em; font-weight: 700; text-transform: uppercase;
           padding: .1em .5em; border-radius: 3px; margin-right: .5em; color: white; }
.v-supported { border-color: #2e7d32; } .v-supported .verdict { background: #2e7d32; }
.v-not-supported { border-color: #c62828; } .v-not-supported .verdict { background: #c62828; }
.v-inconclusive { border-color: #9e9e9e; } .v-inconclusive .verdict { background: #757575; }
figure { margin: 1.5em 0; } figure img { max-width: 100%; border: 1px solid #eee; }
figcaption { color: #444; font-size: .92em; margin-top: .3em; }
pre { background: #f6f8fa; border: 1px solid #e1e4e8; padding: .6em; white-space: pre-wrap;
      word-break: break-word; font-size: .88em; margin: .2em 0 .7em; }
.sample { border: 1px solid #ddd; padding: .4em .9em; margin: 1em 0; border-radius: 4px; }
.label { font-size: .85em; color: #555; }
pre.empty { color: #888; font-style: italic; }
code { background: #f3f3f3; padding: .05em .3em; border-radius: 3px; font-size: .92em; }
pre.masked mark { background: #b7e4b7; color: #111; border-radius: 2px; }
"""

_VERDICT_CLASS = {SUPPORTED: "v-supported", NOT_SUPPORTED: "v-not-supported", INCONCLUSIVE: "v-inconclusive"}
_NUMERIC = re.compile(r"^[+\-−]?[\d.]+(e[+\-]?\d+)?( ± [\d.]+)?%?$|^—$")


def _e(text: Any) -> str:
    return html.escape(str(text), quote=True)


def _pre(text: Any) -> str:
    return f"<pre>{_e(text)}</pre>" if str(text).strip() else '<pre class="empty">(empty)</pre>'


def render_html(doc: list[Block]) -> str:
    title = next((b.text for b in doc if b.kind == "h1"), "Sweep report")
    body: list[str] = []
    for b in doc:
        if b.kind == "h1":
            body.append(f"<h1>{_e(b.text)}</h1>")
        elif b.kind == "h2":
            body.append(f"<h2>{_e(b.text)}</h2>")
        elif b.kind == "meta":
            body.append('<ul class="meta">' + "".join(f"<li>{_e(i)}</li>" for i in b.items) + "</ul>")
        elif b.kind == "p":
            body.append(f"<p>{_e(b.text)}</p>")
        elif b.kind == "list":
            body.append("<ul>" + "".join(f"<li>{_e(i)}</li>" for i in b.items) + "</ul>")
        elif b.kind == "finding":
            v = b.extra["verdict"]
            body.append(f'<div class="finding {_VERDICT_CLASS.get(v, "v-inconclusive")}">'
                        f'<span class="verdict">{_e(v)}</span><span class="claim">{_e(b.text)}</span>'
                        f'<div class="evidence">{_e(b.extra["evidence"])}</div></div>')
        elif b.kind == "table":
            head = "".join(f"<th>{_e(h)}</th>" for h in b.header)
            rows = "".join(
                "<tr>" + "".join(f'<td class="num">{_e(c)}</td>' if _NUMERIC.match(str(c)) else f"<td>{_e(c)}</td>"
                                 for c in r) + "</tr>" for r in b.rows)
            body.append(f"<table><thead><tr>{head}</tr></thead><tbody>{rows}</tbody></table>")
        elif b.kind == "img":
            data = base64.b64encode(Path(b.path).read_bytes()).decode("ascii")
            body.append(f'<figure><img alt="{_e(b.text)}" src="data:image/png;base64,{data}">'
                        f"<figcaption>{_e(b.text)}</figcaption></figure>")
        elif b.kind == "commands":
            body.append("<ul>" + "".join(f"<li>{_e(where + ': ') if where else ''}<code>{_e(cmd)}</code> ({_e(notes)})</li>"
                                         for where, cmd, notes in b.items) + "</ul>")
        elif b.kind == "masked":
            body.append('<pre class="masked">' + "".join(f"<mark>{_e(t)}</mark>" if on else _e(t)
                                                          for t, on in b.extra["spans"]) + "</pre>")
        elif b.kind == "sample":
            s = b.extra
            parts = [f'<div class="sample"><h3>{_e(s["task"])}</h3>',
                     '<div class="label">prompt</div>', f"<pre>{_e(s['prompt'])}</pre>",
                     f'<div class="label">reference: {_e(s["reference"] or "—")}</div>',
                     '<div class="label">base model</div>', _pre(s["base"])]
            for label, text in s["tuned"]:
                parts += [f'<div class="label">tuned, {_e(label)}</div>', _pre(text)]
            parts.append("</div>")
            body.append("".join(parts))
    csp = "default-src 'none'; img-src data:; style-src 'unsafe-inline'"
    return ("<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">"
            f'<meta http-equiv="Content-Security-Policy" content="{csp}">'
            '<meta name="viewport" content="width=device-width, initial-scale=1">'
            f"<title>{_e(title)}</title><style>{_CSS}</style></head><body>\n"
            + "\n".join(body) + "\n</body></html>\n")


__all__ = ["write_report", "ReportPaths", "summary_table", "pick_samples", "render_markdown",
           "render_html", "md_escape", "md_code", "default_out_dir", "pareto_table", "recommended_job",
           "commands_by_sweep"]
