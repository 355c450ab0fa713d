"""The sweep report: ``report.md`` and a self-contained ``report.html``.

``write_report(dirs, out_dir=None)`` collects the jobs, exports the tables, draws the figures,
computes the findings and writes both documents. Layout: findings first (the point of the
sweep), then what was swept and by which sweep commands (``analysis.sweepcmds``), job status,
the training data (one example with its loss mask and the jobs' data counts,
``analysis.dataview``), a summary table per setting, the Pareto front, the figures, a few base
vs tuned generations (``analysis.samples``), and any file that could not be read.

Each section is one function of the report's context, listed in order in ``SECTIONS``; the
document they build is rendered by ``analysis.render`` (which also escapes every text that comes
from the job files).
"""

from __future__ import annotations

import datetime as _dt
import json
import logging
import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd

from analysis.collect import RunSet, collect_runs
from analysis.dataview import absent_reasons, data_counts, is_free_form, read_summary, render_example
from analysis.groups import grouping_sentence
from analysis.jobdir import Problem
from analysis.plots import figure_caption, left_out_sentence, plot_all
from analysis.pruning import saved_sentence
from analysis.registry import compute_findings
from analysis.roles import headline_keys
from analysis.render import Block, md_code, md_escape, render_html, render_markdown
from analysis.samples import pick_samples, recommended_job
from analysis.style import col_name, fmt_num, fmt_value, setting_label, sorted_values
from analysis.sweepcmds import SweepCommand, sweep_commands
from analysis.tables import pareto_table, summary_table
from analysis.verdicts import Decision, Finding
from sft_sweep.data.fit import fit_lines
from sft_sweep.jobfiles import remove_leftover_tmp, write_atomic

log = logging.getLogger(__name__)

FILES_DIR = "report_files"
CONSTANTS_FILE = "fixed_config.json"
#: Settings named in the report's "held fixed" line when they did not vary (all are in the JSON).
MAIN_SETTINGS = headline_keys()


#: The findings table's columns after verdict and claim (``decision_cells`` fills them).
FINDINGS_HEADER = ("verdict", "claim", "deciding effect (95% CI)", "n", "noise")


def decision_cells(d: Decision | None) -> list[str]:
    """What decided a finding's verdict as the findings table's last three cells."""
    if d is None:
        return ["—", "—", "—"]
    text = f"{d.what}: {d.value}"
    notes = ([d.interval] if d.interval else []) + ([f"target {d.target}"] if d.target else [])
    if notes:
        text += f" ({'; '.join(notes)})"
    return [text, d.n or "—", d.noise]


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
    out = Path(out_dir) if out_dir is not None else default_out_dir(dirs)
    files = out / FILES_DIR
    for folder in (out, files):  # what a killed report left behind (a writer at work keeps its file)
        remove_leftover_tmp(folder)
    runs = runs if runs is not None else collect_runs(dirs)
    files.mkdir(parents=True, exist_ok=True)

    tables = runs.export(files)
    constants = files / CONSTANTS_FILE
    write_atomic(constants, json.dumps(runs.constants, indent=1, sort_keys=True, default=str) + "\n")
    tables.append(constants)
    left_out: list[str] = []
    plots = plot_all(runs, files, left_out=left_out, on_error=lambda name, exc: runs.problems.append(
        Problem(f"figure {name}", f"could not be drawn: {type(exc).__name__}: {exc}")))
    try:
        findings = compute_findings(runs)
    except Exception as exc:  # noqa: BLE001 - the rest of the report is still worth having
        log.exception("findings failed")
        runs.problems.append(Problem("findings", f"could not be computed: {type(exc).__name__}: {exc}"))
        findings = []

    doc = _build(runs, plots, findings, out, left_out)
    md_path, html_path = out / "report.md", out / "report.html"
    write_atomic(md_path, render_markdown(doc))
    write_atomic(html_path, render_html(doc))
    return ReportPaths(out, md_path, html_path, plots, tables, findings, list(runs.problems))


@dataclass
class _Context:
    """What every section reads: the jobs, the figures drawn, the findings, the output folder
    and the sweep commands per sweep directory."""

    runs: RunSet
    plots: dict[str, Path]
    findings: list[Finding]
    out: Path
    commands: dict[str, list[SweepCommand]]
    left_out: list[str] = field(default_factory=list)

    @property
    def n_done(self) -> int:
        return int(self.runs.jobs["done"].sum())


def _title_and_meta(ctx: _Context) -> list[Block]:
    runs = ctx.runs
    names = ", ".join(r.resolve().name for r in runs.roots)
    exp = runs.constants.get("name")  # the experiment's name in the app's config, when fixed
    if isinstance(exp, str) and exp and exp != names and len(runs.roots) == 1:
        names = f"{exp} ({names})"
    counts = runs.status_counts()
    meta = [f"Generated {_dt.datetime.now().strftime('%Y-%m-%d %H:%M')} from "
            + ", ".join(str(r) for r in runs.roots),
            f"{len(runs.jobs)} jobs: " + ", ".join(f"{v} {k}" for k, v in sorted(counts.items())),
            "Swept: " + (", ".join(f"{col_name(c)} ({c})" for c in runs.swept) or "nothing (single job)")]
    mixed = {name: len(cmds) for name, cmds in ctx.commands.items() if len(cmds) > 1}
    if mixed:
        meta.append("Jobs from several sweep commands: " + ", ".join(f"{n} commands in {name}" for name, n in mixed.items())
                    + " (each listed under What was swept)")
    pruned = saved_sentence(runs)
    if pruned:
        meta.append(pruned)
    grouped = grouping_sentence(runs)
    if grouped:
        meta.append(grouped)
    if runs.seeds:
        meta.append(f"Seeds: {', '.join(runs.seeds)}, up to {runs.n_seeds()} per setting; numbers are "
                    "seed means, ± is a 95% confidence interval")
    return [Block("h1", f"Sweep report: {names}"), Block("meta", items=meta)]


def _findings_section(ctx: _Context) -> list[Block]:
    out = [Block("h2", "Findings")]
    if ctx.n_done == 0:
        out.append(Block("p", "No job has completed yet, so there is nothing to conclude."))
    elif not ctx.findings:
        out.append(Block("p", "Findings could not be computed (see Problems)."))
    if not ctx.findings:
        return out
    return out + [Block("findings", header=list(FINDINGS_HEADER), items=[
        {"verdict": f.verdict, "claim": f.claim, "evidence": f.evidence, "cells": decision_cells(f.decided_by)}
        for f in ctx.findings])]


def _swept_section(ctx: _Context) -> list[Block]:
    runs = ctx.runs
    out = [Block("h2", "What was swept")]
    if runs.swept:
        rows = []
        done_jobs = runs.done_jobs()
        for c in runs.swept:
            vals = sorted_values(runs.jobs[c])
            rows.append([col_name(c), c, ", ".join(fmt_value(c, v) for v in vals), str(len(vals)),
                         str(len(sorted_values(done_jobs[c])) if not done_jobs.empty else 0)])
        out.append(Block("table", header=["setting", "config key", "values", "n values", "n completed"],
                         rows=rows))
    else:
        out.append(Block("p", "No setting differs between the jobs."))
    out += _command_blocks(ctx.commands)
    if runs.constants:
        keep = {k: v for k, v in runs.constants.items() if not k.startswith("hydra.")}
        main = [k for k in MAIN_SETTINGS if k in keep]
        shown = ", ".join(f"{k}={_const(keep[k])}" for k in main)
        rest = len(keep) - len(main)
        out.append(Block("p", "Held fixed: " + (shown or "—")
                         + (f" (and {rest} more settings, in {FILES_DIR}/{CONSTANTS_FILE})" if rest else "")))
    if runs.derived:
        out.append(Block("p", "Also differ, as a consequence of the swept settings: " + ", ".join(runs.derived)))
    return out


def _jobs_section(ctx: _Context) -> list[Block]:
    runs, done = ctx.runs, ctx.n_done
    out = [Block("h2", "Jobs"),
           Block("p", f"{done} of {len(runs.jobs)} jobs completed and are analysed."
                      + (" Jobs that failed, were pruned by the search or are still running are listed "
                         "here and left out of the tables and findings." if done < len(runs.jobs) else ""))]
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
        out.append(Block("table", header=["job", "status", "setting", "progress", "error"], rows=rows))
    return out


def _warnings_section(ctx: _Context) -> list[Block]:
    """Warnings the jobs recorded (data skipped or dropped, files ignored, caches rebuilt)."""
    jobs = ctx.runs.jobs
    warned = jobs[jobs.get("n_warnings", pd.Series(0, index=jobs.index)).fillna(0) > 0]
    if warned.empty:
        return []
    jobs_of: dict[str, list[str]] = {}
    for _, j in warned.iterrows():
        for w in dict.fromkeys(str(j["warnings"]).split("\n")):
            jobs_of.setdefault(w, []).append(str(j["job"]))
    return [Block("h2", "Warnings"), Block("list", items=[_warning_line(w, jobs) for w, jobs in jobs_of.items()][:100])]


def _warning_line(warning: str, jobs: list[str], shown: int = 5) -> str:
    """One warning once: ``job 3: ...``, or ``12 jobs (0, 1, 2, 3, 4 and 7 more): ...``."""
    if len(jobs) == 1:
        return f"job {jobs[0]}: {warning}"
    names = ", ".join(jobs[:shown]) + (f" and {len(jobs) - shown} more" if len(jobs) > shown else "")
    return f"{len(jobs)} jobs ({names}): {warning}"


def _summary_section(ctx: _Context) -> list[Block]:
    if not ctx.n_done:
        return []
    header, rows = summary_table(ctx.runs)
    out = [Block("h2", "Summary per setting"),
           Block("p", "Final evaluation of the completed jobs"
                 + (", mean over seeds ± 95% CI (n = completed seeds)." if ctx.runs.seeds else ".")
                 + " Forgetting is the raw-text loss change against the base model."),
           Block("table", header=header, rows=rows)]
    done = ctx.runs.done_jobs()
    if is_free_form(done):
        out.append(Block("p", "Free-form answers of held-out conversations: the follow rate counts the prompts "
                              "whose reference answer fits the generation room (of how many); ROUGE-L of the "
                              "greedy answer against the reference and the response's nats per byte come with "
                              "the job's paired base -> tuned change per item and its 95% interval; forgetting "
                              "with its interval over held-out text windows (summary.json free_form)."))
        absent = absent_reasons(done)
        if absent:
            out.append(Block("p", "Not measured (absent, not zero; summary.json not_measured):"))
            out.append(Block("list", items=[f"{m}: {why}" if not why.startswith(f"{m}:") else why
                                            for m, why in absent.items()]))
    return out


def _pareto_section(ctx: _Context) -> list[Block]:
    front = pareto_table(ctx.runs)
    if front is None:
        return []
    header, rows, what = front
    return [Block("h2", "Pareto front"),
            Block("p", f"Completed jobs that no other job beats on both {what} and forgetting "
                       "(the circled points of the trade-off figure), least forgetting first."),
            Block("table", header=header, rows=rows)]


def _figures_section(ctx: _Context) -> list[Block]:
    if not ctx.plots and not ctx.left_out:
        return []
    out = [Block("h2", "Figures")] + [
        Block("img", figure_caption(name, ctx.runs), path=path,
              extra={"rel": os.path.relpath(path, ctx.out).replace(os.sep, "/")})
        for name, path in ctx.plots.items()]
    if ctx.left_out:
        out.append(Block("p", left_out_sentence(ctx.left_out)))
    return out


def _generations_section(ctx: _Context) -> list[Block]:
    samples = pick_samples(ctx.runs, ctx.findings)
    if not samples:
        return []
    return [Block("h2", "Base vs tuned generations"),
            Block("p", "A few held-out prompts, the base model's continuation and the answers of the "
                       "recommended job (or the best on the Pareto front) and of the jobs with the least "
                       "and the most forgetting (text shown verbatim, escaped).")] + [
        Block("sample", s["prompt"], extra=s) for s in samples]


def _problems_section(ctx: _Context) -> list[Block]:
    problems = ctx.runs.problems
    if not problems:
        return []
    return [Block("h2", "Problems"),
            Block("p", "These files (or parts) could not be read and were skipped:"),
            Block("list", items=[str(p) for p in problems[:100]]
                  + ([f"… and {len(problems) - 100} more"] if len(problems) > 100 else []))]


def _data_files_section(ctx: _Context) -> list[Block]:
    return [Block("h2", "Data files"),
            Block("list", items=[f"{FILES_DIR}/{p.name}" for p in sorted((ctx.out / FILES_DIR).glob("*"))
                                 if p.suffix in (".csv", ".parquet", ".json")]
                  + ["Regenerate with: sft-sweep-report " + " ".join(str(r) for r in ctx.runs.roots)])]


def _training_data_section(ctx: _Context) -> list[Block]:
    return _training_data_blocks(ctx.runs, ctx.findings)


#: The report's sections, in order; each gives its blocks (none when it has nothing to show).
SECTIONS = (_title_and_meta, _findings_section, _swept_section, _jobs_section, _warnings_section,
            _training_data_section, _summary_section, _pareto_section, _figures_section,
            _generations_section, _problems_section, _data_files_section)


def _build(runs: RunSet, plots: dict[str, Path], findings: list[Finding], out: Path,
           left_out: Sequence[str] = ()) -> list[Block]:
    ctx = _Context(runs, plots, findings, out, commands_by_sweep(runs), list(left_out))
    return [block for section in SECTIONS for block in section(ctx)]


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
        out.append(Block("p", f"Training example {ex.index} from {ex.source} (counted among the conversations left "
                              f"after the held-out split and the quality filters), as job \"{who}\" trained on it: {ex.template} "
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
    return out + _fit_check_blocks(runs, done)


def _fit_check_blocks(runs: RunSet, done: pd.DataFrame) -> list[Block]:
    """The fit check the jobs recorded (``data_fit``): how much of the data the model's block and
    the generation room can hold, once per distinct result."""
    by_lines: dict[tuple[str, ...], list[str]] = {}
    for _, j in done.iterrows():
        lines = tuple(fit_lines(read_summary(j["path"]).get("data_fit")))
        if lines:
            by_lines.setdefault(lines, []).append(setting_label(j, runs.swept) if runs.swept else str(j["job"]))
    out: list[Block] = []
    for lines, jobs in by_lines.items():
        who = "every completed job" if len(jobs) == len(done) else ", ".join(jobs)
        out.append(Block("p", f"Fit check of the data against the model ({who}; summary.json data_fit):"))
        out.append(Block("list", items=[line.strip() for line in lines]))
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


def _const(v: Any) -> str:
    return fmt_num(v) if isinstance(v, (int, float)) and not isinstance(v, bool) else str(v)


__all__ = ["write_report", "ReportPaths", "summary_table", "pick_samples", "render_markdown",
           "render_html", "md_escape", "md_code", "default_out_dir", "pareto_table", "recommended_job",
           "commands_by_sweep"]
