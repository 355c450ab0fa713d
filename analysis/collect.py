"""Collect the jobs of one or more sweep directories into pandas tables.

Each job directory is read by ``analysis.jobdir`` (only the job files described in
``sft_sweep.jobfiles`` and Hydra's records); this module adds the sweep's ``multirun.yaml`` and
builds the tables, so it works on sweeps copied from another machine or a cluster, and on
sweeps that are still running.

``collect_runs(dirs)`` returns a ``RunSet``:

- ``jobs``: one row per job: ``job`` (id), ``sweep``, ``status``, ``done``, the swept
  parameters as columns (dotted config keys, e.g. ``optim.lr``), ``base_<metric>`` and
  ``final_<metric>``, ``forgetting_pct``, progress (``last_step``, ...), ``time_<phase>``,
  ``error``, ``config_hash``, ``overrides``, ``path``; the item counts the job recorded
  (``analysis.jobdir.item_counts``: ``items_<set>``, and from summary.json's ``scored``
  ``items_multi_turn``, ``items_system_format``, ``format_obeyed_<style>`` of
  ``items_format_<style>``); on own data also the free-form columns
  of ``analysis.dataview.free_form_columns`` (paired base -> tuned intervals, ``not_measured_<m>``);
- ``curves``: long table ``job, step, kind, metric, value`` from ``metrics.jsonl``;
- ``samples``: ``job, task, prompt, reference, base, sft, set`` from ``samples.jsonl``;
- ``blends``: one row per completed job x weight blend it evaluated (``analysis.peftdata``): the
  job's swept settings, ``t``, ``final_<metric>``, ``forgetting_pct``; never rows of ``jobs``;
- ``weight_ranks``: ``job, matrix, effective_rank, max_rank`` of each job's weight change;
- ``problems``: files that could not be read (reported, skipped, never a crash).

Which parameters were swept is detected from the data (see ``detect_swept``).
"""

from __future__ import annotations

import math
import os
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd

from analysis.dataview import free_form_columns, read_summary
from analysis.per_byte import per_byte_only
from analysis.errors import ReportError
from analysis.jobdir import (
    CURVE_COLUMNS, SAMPLE_COLUMNS, JobFiles, Problem, find_job_dirs, parse_overrides, read_job, read_yaml,
)
from analysis.peftdata import BLEND_KEY_COLUMNS, WEIGHT_RANK_COLUMNS, blend_rows, peft_columns, weight_rank_rows
from analysis.roles import find_axis, has_role, machine_keys  # noqa: F401 - find_axis: read from collect too
from sft_sweep.jobfiles import EVAL_METRICS, atomic_path

# Config keys that differ between jobs without being an experimental choice (paths, stamps).
_INCIDENTAL = re.compile(
    r"(^|_)(dir|path|file|filename|output|out|hash|time|timestamp|date|host|hostname|pid|cwd|"
    r"uuid|run_id|job_id)$"
)
# Keys a command may set that are no setting of the experiment: where the base-model cache lives,
# how many cores a job uses (the settings so described), and the experiment config's own name
# (what it sets shows in the keys it sets). Two sweep commands that differ in them still ran the
# same kind of job.
_NOT_SETTINGS = frozenset({"experiment"}) | machine_keys()
_SWEEP_SYNTAX = re.compile(r"^\s*(range|choice|interval|glob|tag|shuffle|sort)\s*\(")

@dataclass
class RunSet:
    """Everything collected from the sweep directories. See the module docstring for the tables."""

    jobs: pd.DataFrame
    curves: pd.DataFrame
    samples: pd.DataFrame
    swept: list[str]
    derived: list[str]
    constants: dict[str, Any]
    sweep_specs: dict[str, list[str]]
    problems: list[Problem]
    roots: list[Path]
    configs: dict[str, dict[str, Any]] = field(default_factory=dict)
    # weight blends of the completed jobs and the per-matrix rank of their weight change (peftdata)
    blends: pd.DataFrame = field(default_factory=lambda: pd.DataFrame(columns=BLEND_KEY_COLUMNS))
    weight_ranks: pd.DataFrame = field(default_factory=lambda: pd.DataFrame(columns=WEIGHT_RANK_COLUMNS))

    # ---- axes -------------------------------------------------------------------------
    @property
    def seeds(self) -> list[str]:
        """Swept columns that are seeds (replicates, averaged over in plots and findings)."""
        return [c for c in self.swept if has_role(c, "seed")]

    @property
    def params(self) -> list[str]:
        """Swept columns that are settings (everything swept but the seeds)."""
        return [c for c in self.swept if c not in self.seeds]

    def axis(self, role: str) -> str | None:
        """The swept column playing ``role`` (``analysis.roles``): lr, epochs, replay, method, seed, ..."""
        return find_axis(self.swept, role)

    def n_seeds(self) -> int:
        """Largest number of completed replicates of one setting (1 without seeds)."""
        done = self.done_jobs()
        if done.empty:
            return 0
        if not self.params:
            return len(done)
        return int(done.groupby(self.params, dropna=False).size().max())

    # ---- views ------------------------------------------------------------------------
    def done_jobs(self) -> pd.DataFrame:
        """Jobs whose status is completed (or skipped, i.e. completed earlier)."""
        return self.jobs[self.jobs["done"]] if not self.jobs.empty else self.jobs

    def done_curves(self) -> pd.DataFrame:
        """Curves of the completed jobs, with their swept parameters joined on."""
        done = self.done_jobs()
        cur = self.curves[self.curves["job"].isin(set(done["job"]))]
        return cur.merge(done[["job"] + self.swept], on="job", how="left")

    def status_counts(self) -> dict[str, int]:
        if self.jobs.empty:
            return {}
        return {str(k): int(v) for k, v in self.jobs["status"].value_counts(sort=False).items()}

    # ---- export -----------------------------------------------------------------------
    def export(self, out_dir: str | os.PathLike) -> list[Path]:
        """Write ``jobs.csv`` and ``curves.csv`` (and ``.parquet`` twins when pyarrow is installed)."""
        out = Path(out_dir)
        out.mkdir(parents=True, exist_ok=True)
        written = []
        tables = {"jobs": self.jobs, "curves": self.curves}
        if not self.blends.empty:
            tables["blends"] = self.blends
        for name, df in tables.items():
            path = out / f"{name}.csv"
            with atomic_path(path) as tmp:
                df.to_csv(tmp, index=False)
            written.append(path)
        try:
            import pyarrow  # noqa: F401
        except ImportError:
            return written
        for name, df in tables.items():
            path = out / f"{name}.parquet"
            try:
                with atomic_path(path) as tmp:
                    _parquet_safe(df).to_parquet(tmp, index=False)
                written.append(path)
            except Exception as exc:  # noqa: BLE001 - optional format, never fail the report for it
                self.problems.append(Problem(str(path), f"could not write Parquet: {exc}"))
        return written


def _last(col: str) -> str:
    return col.rsplit(".", 1)[-1]


# ======================================================================================
# Finding and reading jobs
# ======================================================================================


def _is_sweep_value(value: str) -> bool:
    """Whether an override value of ``multirun.yaml`` sweeps (``1,2,3``, ``range(..)``, ...)."""
    v = value.strip()
    if _SWEEP_SYNTAX.match(v):
        return True
    depth, quote = 0, ""
    for ch in v:
        if quote:
            quote = "" if ch == quote else quote
        elif ch in "'\"":
            quote = ch
        elif ch in "[{(":
            depth += 1
        elif ch in "]})":
            depth -= 1
        elif ch == "," and depth == 0:
            return True
    return False


def _read_sweep_spec(root: Path, problems: list[Problem]) -> tuple[list[str], set[str]]:
    """Task overrides of a sweep's ``multirun.yaml`` and the keys that were swept there."""
    path = root / "multirun.yaml"
    if not path.exists():
        return [], set()
    raw = read_yaml(path, problems)
    if not isinstance(raw, dict):
        return [], set()
    task = _dig(raw, "hydra", "overrides", "task")
    task = [str(t) for t in task] if isinstance(task, list) else []
    keys = set()
    for item in task:
        if "=" in item:
            k, v = item.split("=", 1)
            if _is_sweep_value(v):
                keys.update(parse_overrides([f"{k}=x"]))
    params = _dig(raw, "hydra", "sweeper", "params")
    if isinstance(params, dict):  # Optuna / basic sweeper given a params block
        keys.update(parse_overrides([f"{k}=x" for k in params]))
    return task, keys


def _dig(obj: Any, *keys: str) -> Any:
    for k in keys:
        if not isinstance(obj, dict):
            return None
        obj = obj.get(k)
    return obj


# ======================================================================================
# Swept parameters
# ======================================================================================


def detect_swept(params: pd.DataFrame, override_keys: set[str],
                 spec_keys: set[str]) -> tuple[list[str], list[str], dict[str, Any]]:
    """Split the job x config-key table into (swept, derived, constants).

    - A key *varies* when it takes more than one value across the jobs (missing values aside).
    - Varying keys that a job overrode, or that ``multirun.yaml`` swept, are *swept*.
    - Other varying keys that are a function of the swept ones (``model.n_layer`` when
      ``model.name`` was swept) are *derived*; paths, hashes and time stamps are ignored;
      anything else that varies on its own counts as swept too.
    - Keys that are no setting of the experiment (``_NOT_SETTINGS``: the cache location, thread
      counts, the experiment config's name) are never swept, even when a command set them.
    - Keys with one value in every job that has them are *constants*.
    """
    varying, constants = [], {}
    for col in params.columns:
        values = params[col].dropna()
        if values.empty:
            continue
        n = _nunique(values)
        if n > 1:
            varying.append(col)
        else:
            constants[col] = _py(values.iloc[0])
    declared = (override_keys | spec_keys) - _NOT_SETTINGS
    swept = [c for c in varying if c in declared]
    if not declared:
        swept = [c for c in varying if not _incidental(c)]
    derived = []
    for col in varying:
        if col in swept:
            continue
        if _incidental(col):
            continue
        if swept and _depends_on(params, col, swept):
            derived.append(col)
        else:
            swept.append(col)
    order = {c: i for i, c in enumerate(params.columns)}
    swept.sort(key=lambda c: order[c])
    return swept, derived, constants


def _py(v: Any) -> Any:
    """numpy scalars -> Python scalars (for display and JSON)."""
    return v.item() if hasattr(v, "item") and not isinstance(v, (str, bytes)) else v


def _nunique(values: pd.Series) -> int:
    try:
        return int(values.nunique())
    except TypeError:  # unhashable (should not happen: lists are stored as JSON text)
        return len({repr(v) for v in values})


def _incidental(col: str) -> bool:
    return col.startswith("hydra.") or col in _NOT_SETTINGS or bool(_INCIDENTAL.search(_last(col)))


def _depends_on(params: pd.DataFrame, col: str, keys: list[str]) -> bool:
    sub = params[keys + [col]].dropna(subset=[col])
    if sub.empty:
        return True
    return bool((sub.groupby(keys, dropna=False)[col].nunique() <= 1).all())


# ======================================================================================
# Putting it together
# ======================================================================================


def collect_runs(dirs: str | os.PathLike | Sequence[str | os.PathLike]) -> RunSet:
    """Collect every job under ``dirs`` (one sweep directory or several to compare).

    Raises ``ReportError`` when a directory does not exist or no job is found; everything
    else that goes wrong with a file is recorded in ``RunSet.problems`` and skipped.
    """
    if isinstance(dirs, (str, os.PathLike)):
        dirs = [dirs]
    roots = [Path(d) for d in dirs]
    if not roots:
        raise ReportError("no sweep directory given")
    for r in roots:
        if not r.exists():
            raise ReportError(f"no such directory: {r}")
        if not r.is_dir():
            raise ReportError(f"not a directory: {r}")

    problems: list[Problem] = []
    names = _sweep_names(roots)
    jobs: list[JobFiles] = []
    sweep_specs: dict[str, list[str]] = {}
    spec_keys: set[str] = set()
    for root, name in zip(roots, names):
        task, keys = _read_sweep_spec(root, problems)
        sweep_specs[name] = task
        spec_keys |= keys
        for job_dir in find_job_dirs(root):
            rel = job_dir.relative_to(root).as_posix()
            if rel == ".":
                rel = root.resolve().name or "job"
            job_id = rel if len(roots) == 1 else f"{name}/{rel}"
            try:
                jobs.append(read_job(job_dir, job_id, name, problems))
            except Exception as exc:  # noqa: BLE001 - one broken job never stops the report
                problems.append(Problem(str(job_dir), f"could not read job: {type(exc).__name__}: {exc}"))
    if not jobs:
        where = ", ".join(str(r) for r in roots)
        raise ReportError(
            f"no jobs found under {where} (a job directory holds summary.json, metrics.jsonl or .hydra/)"
        )

    # Override keys name config keys, or config groups (``template=alpaca`` -> ``template.name``).
    config_keys: set[str] = set()
    for j in jobs:
        config_keys.update(j.config)
    override_keys: set[str] = set()
    for j in jobs:
        for k, v in j.overrides.items():
            key = _map_override_key(k, config_keys)
            override_keys.add(key)
            j.config.setdefault(key, v)
    spec_keys = {_map_override_key(k, config_keys) for k in spec_keys}

    param_table = pd.DataFrame([j.config for j in jobs], index=[j.record["job"] for j in jobs],
                               dtype=object)
    if param_table.columns.empty:
        swept, derived, constants = [], [], {}
    else:
        swept, derived, constants = detect_swept(param_table, override_keys, spec_keys)

    records, blend_parts, rank_parts = [], [], []
    for j in jobs:
        rec = dict(j.record)
        summary = read_summary(rec["path"])
        # free-form intervals and absent metrics (own data) as the job recorded them
        rec.update(free_form_columns(summary))
        # how it was fine-tuned, its weight change and its blends (peftdata), as the job recorded them
        rec.update(peft_columns(summary))
        if rec["done"]:
            blend_parts += blend_rows(summary, rec)
            rank_parts += weight_rank_rows(summary, rec["job"])
        for col in swept + derived:
            rec[col] = j.config.get(col)
        records.append(rec)
    jobs_df = _order_columns(pd.DataFrame(records), swept, derived)
    for col in swept + derived:
        jobs_df[col] = _tidy_param(jobs_df[col])

    curves_df = pd.DataFrame({c: [] for c in CURVE_COLUMNS})
    parts = [pd.DataFrame(j.curves) for j in jobs if j.curves["job"]]
    if parts:
        curves_df = pd.concat(parts, ignore_index=True)
    curves_df["step"] = pd.to_numeric(curves_df["step"], errors="coerce")
    curves_df["value"] = pd.to_numeric(curves_df["value"], errors="coerce")
    if curves_df["step"].notna().all() and (curves_df["step"] % 1 == 0).all():
        curves_df["step"] = curves_df["step"].astype("int64")

    samples_df = pd.DataFrame([s for j in jobs for s in j.samples], columns=SAMPLE_COLUMNS)

    blends_df = _blends_table(blend_parts, jobs_df, swept + derived)
    ranks_df = pd.DataFrame(rank_parts, columns=WEIGHT_RANK_COLUMNS)

    # jobs of different tokenizers meet per byte only: their per-token losses leave the tables
    return per_byte_only(RunSet(
        jobs=jobs_df, curves=curves_df, samples=samples_df, swept=swept, derived=derived,
        constants=constants, sweep_specs=sweep_specs, problems=problems, roots=roots,
        configs={j.record["job"]: j.config for j in jobs}, blends=blends_df, weight_ranks=ranks_df,
    ))


def _blends_table(rows: list[dict], jobs_df: pd.DataFrame, params: list[str]) -> pd.DataFrame:
    """The blends with their job's swept settings (as the jobs table holds them), in key order."""
    if not rows:
        return pd.DataFrame(columns=BLEND_KEY_COLUMNS + params)
    df = pd.DataFrame(rows)
    df = df.merge(jobs_df[["job"] + params], on="job", how="left")
    head = BLEND_KEY_COLUMNS + params
    return df[head + [c for c in df.columns if c not in head]].sort_values(["job", "t"], ignore_index=True)


def _map_override_key(key: str, config_keys: set[str]) -> str:
    if key in config_keys:
        return key
    if f"{key}.name" in config_keys:
        return f"{key}.name"
    return key


def _sweep_names(roots: list[Path]) -> list[str]:
    names, seen = [], {}
    for r in roots:
        base = r.resolve().name or str(r)
        seen[base] = seen.get(base, 0) + 1
        names.append(base if seen[base] == 1 else f"{base}#{seen[base]}")
    return names


def _order_columns(df: pd.DataFrame, swept: list[str], derived: list[str]) -> pd.DataFrame:
    head = ["job", "sweep", "status", "done"] + swept
    metrics = ["forgetting_pct"]
    metrics += [f"final_{m}" for m in EVAL_METRICS] + [f"base_{m}" for m in EVAL_METRICS]
    extra_metrics = sorted(c for c in df.columns
                           if (c.startswith("final_") or c.startswith("base_")) and c not in metrics)
    progress = ["steps", "last_step", "last_epoch", "last_loss", "last_eval_step",
                "last_eval_response_loss"]
    times = sorted(c for c in df.columns if c.startswith("time_"))
    tail = ["error", "config_hash", "overrides", "updated", "path"]
    ordered = head + [c for c in metrics if c in df.columns] + extra_metrics + derived + progress + times + tail
    ordered = [c for c in dict.fromkeys(ordered) if c in df.columns]
    return df[ordered + [c for c in df.columns if c not in ordered]]


def _tidy_param(col: pd.Series) -> pd.Series:
    """Numbers stay numbers (ints as ints when nothing is missing); everything else as text."""
    values = col.dropna()
    if values.empty:
        return col
    if all(isinstance(v, bool) for v in values):
        return col
    if all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in values):
        num = pd.to_numeric(col, errors="coerce")
        if num.notna().all() and (num % 1 == 0).all() and all(isinstance(v, int) for v in values):
            return num.astype("int64")
        return num.astype(float)
    return col.map(lambda v: v if v is None or (isinstance(v, float) and math.isnan(v)) else str(v)).astype(object)


# ======================================================================================
# File helpers
# ======================================================================================


def _parquet_safe(df: pd.DataFrame) -> pd.DataFrame:
    out = df.copy()
    for col in out.columns:
        if out[col].dtype == object:
            out[col] = out[col].map(lambda v: None if v is None else str(v))
    return out
