"""The job-file contract: what a job writes into its directory and how the analysis reads it.

The trainer (``sft_sweep.train``) writes these files and the analysis (``analysis``) reads them;
both import the names, the status values and the formulas from here. This module imports only
the standard library, so the analysis runs on a laptop with sweeps copied from a cluster.

A job directory holds:

``summary.json``
    ``status`` (one of ``STATUSES``), ``config_hash``, ``overrides``, ``config`` (the job's config
    flattened to dotted keys, see ``flatten``), and once completed ``base`` / ``final`` (the
    evaluation metrics, ``EVAL_METRICS``, of the base and the tuned model), ``forgetting_pct``
    (``forgetting_pct``), ``steps``, ``base_model``, ``threads``, ``data``, ``timings``,
    ``versions``; a failed job has ``error``, ``user_error``, ``traceback`` and the ``data`` counts
    gathered so far instead of results, and a diverged one also ``reason`` (``DIVERGED``) and
    ``diverged`` (``metric``, ``value``, ``step``, ``bound``). An optional ``warnings`` list holds
    one-line notes about the job.
``metrics.jsonl``
    one JSON object a line: ``kind`` (``train`` | ``eval``), ``step``, and the metrics
    (``TRAIN_METRICS`` for train rows, ``EVAL_METRICS`` for eval rows; step 0 is the base model).
    It grows while the job runs, so a reader tolerates a torn last line.
``samples.jsonl``
    base vs tuned generations on held-out prompts (``SAMPLE_FIELDS``).
``checkpoint.npz`` / ``model.npz``
    the resume point while training; the tuned weights once the job completed.
``.job.lock``
    locked by the process that writes the directory while it runs; a second writer is refused.

The sweep directory holds, besides its jobs, ``sweep_outcome.json`` once a multirun has ended
(``write_sweep_outcome``): how many jobs it found, the failed ones, the tasks a launcher lost (a Slurm
task cancelled before its job ended) and whether its report was written.

A metric that was not measured is absent, never 0. Whole files are written atomically
(``write_atomic``, from ``sft_sweep.atomicio``) with the permissions the user's umask gives new files.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
from typing import Any, Iterable

from .atomicio import atomic_path, remove_leftover_tmp, write_atomic  # noqa: F401 - the contract's writers

SUMMARY = "summary.json"
METRICS = "metrics.jsonl"
SAMPLES = "samples.jsonl"
CHECKPOINT = "checkpoint.npz"
MODEL = "model.npz"
# A LoRA job's adapters (A and B of each target, scale, targets) and the base model they apply to;
# model.npz holds the merged weights either way.
ADAPTER = "adapter.npz"
#: Held (flock) by the process writing the job directory, for the job's life (``sft_sweep.joblock``).
LOCK = ".job.lock"

#: Job states written to ``summary.json``'s ``status``.
RUNNING = "running"
COMPLETED = "completed"
FAILED = "failed"
INTERRUPTED = "interrupted"  # stopped from outside (signal, time limit); resumes from its checkpoint
PRUNED = "pruned"  # stopped early by a search that judged it not worth finishing
STATUSES = (RUNNING, COMPLETED, FAILED, INTERRUPTED, PRUNED)
#: The sweep directory's record of how its last multirun ended (see ``write_sweep_outcome``).
SWEEP_OUTCOME = "sweep_outcome.json"
#: The sweep directory's list of jobs refused because another process was writing their
#: directory: one JSON row each (``job_dir``, ``reason``, ``run``: the ``SWEEP_OUTCOME_ENV`` value
#: of the command that was refused, so a multirun counts its own refusals only).
REFUSED_JOBS = "refused_jobs.jsonl"
#: Environment variable naming one more file for that record: set by the ``sft-sweep`` command,
#: which decides its exit status from it.
SWEEP_OUTCOME_ENV = "SFT_SWEEP_OUTCOME_FILE"
#: The sweep directory's list of tasks a launcher saw end without a result (a Slurm task cancelled
#: or killed before its job ended): one JSON row each (``task``: the job's overrides, ``reason``,
#: ``run`` as in ``REFUSED_JOBS``).
LOST_TASKS = "lost_tasks.jsonl"
#: ``summary.json`` field of a completed job: the files it read (data files, the base model), each
#: ``{"path", "sha256"}`` of its bytes. A completed job whose file has other bytes now runs again.
INPUTS = "inputs"
# What trained and how it kept the base (completed jobs): ``peft`` {method, trainable_params,
# total_params, and LoRA's rank / alpha / scale / targets or freezing's trainable_layers};
# ``weight_change`` {energy, effective_rank {matrix: rank}, median_effective_rank, max_rank}
# for full and LoRA jobs; ``blends`` [{t, final, forgetting_pct, free_form}] when eval.blend is set.
PEFT = "peft"
WEIGHT_CHANGE = "weight_change"
BLENDS = "blends"
#: ``summary.json`` field of a completed job on the built-in world: what the final answer metrics
#: counted, ``{"answer": n, "multi_turn": {"correct", "n"}, "system_format": {style: {"obeyed",
#: "n"}}}`` (each part only when its items exist; the base was scored on the same items). Jobs
#: from before it have none.
SCORED = "scored"
#: ``summary.json`` field with one-line notes about a job (a list of strings; may be absent).
WARNINGS = "warnings"
#: ``summary.json`` ``reason`` of a failed job whose loss blew up (see ``train.diverge_factor``).
DIVERGED = "diverged"

#: Evaluation metrics (eval rows of metrics.jsonl, ``base`` / ``final`` of summary.json), in
#: display order.
EVAL_METRICS = ("raw_loss", "raw_nats_per_byte", "response_loss", "follow_rate", "answer_acc", "answer_mc_acc",
                "knowledge_acc", "knowledge_mc_acc", "base_knowledge_sft", "base_knowledge_probe",
                "answer_acc_multi_turn", "system_format_acc", "answer_acc_long_prompt",
                "answer_acc_short_prompt") + tuple(f"memorised_{m}" for m in (
                    "exact_train", "exact_heldout", "ngram_train", "ngram_heldout", "loss_gap", "n_train", "n_heldout"))
#: Training metrics (train rows of metrics.jsonl).
TRAIN_METRICS = ("loss", "lr", "grad_norm", "tokens_per_s", "epoch")
#: Fields of a samples.jsonl row.
SAMPLE_FIELDS = ("task", "prompt", "reference", "base", "sft", "set")


def forgetting_pct(base_raw_loss: Any, final_raw_loss: Any) -> Any:
    """Catastrophic forgetting: the rise of the raw-text loss after SFT, in percent of the base
    model's loss. Positive means the tuned model predicts pre-training text worse.

    Works on numbers and, elementwise, on numpy arrays and pandas Series.
    """
    return 100.0 * (final_raw_loss - base_raw_loss) / base_raw_loss


def objective(summary: dict, path: str) -> float:
    """The value a Hydra sweeper optimises: a dotted path into summary.json (NaN when absent)."""
    node: Any = summary
    for part in path.split("."):
        if not isinstance(node, dict) or part not in node:
            return float("nan")
        node = node[part]
    try:
        return float(node)
    except (TypeError, ValueError):
        return float("nan")


def flatten(d: Any, prefix: str = "") -> dict[str, Any]:
    """Nested dicts -> ``{"a.b.c": value}``; lists and empty dicts stay values."""
    out: dict[str, Any] = {}
    if isinstance(d, dict):
        for k, v in d.items():
            key = f"{prefix}.{k}" if prefix else str(k)
            if isinstance(v, dict) and v:
                out.update(flatten(v, key))
            else:
                out[key] = v
    else:
        out[prefix] = d
    return out


# ---- writing ----------------------------------------------------------------------------------


def json_safe(obj: Any) -> Any:
    """JSON-safe copy: numpy scalars become Python numbers, non-finite floats become null."""
    if isinstance(obj, dict):
        return {str(k): json_safe(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [json_safe(v) for v in obj]
    if hasattr(obj, "item") and callable(obj.item) and getattr(obj, "ndim", 1) == 0:
        obj = obj.item()
    if isinstance(obj, float) and not math.isfinite(obj):
        return None
    return obj


def write_json(path: str | os.PathLike, obj: Any) -> None:
    write_atomic(path, json.dumps(json_safe(obj), indent=2, sort_keys=False) + "\n")


def write_jsonl(path: str | os.PathLike, rows: Iterable[dict]) -> None:
    write_atomic(path, "".join(json.dumps(json_safe(r), ensure_ascii=False) + "\n" for r in rows))


def append_jsonl(path: str | os.PathLike, row: dict) -> None:
    """One row, one flushed write: a reader sees whole rows except perhaps a torn last one."""
    with open(path, "a", encoding="utf-8") as f:
        f.write(json.dumps(json_safe(row)) + "\n")
        f.flush()


def file_digest(path: str | os.PathLike) -> str:
    """sha256 of a file's bytes (hex), read in blocks."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


# ---- reading ----------------------------------------------------------------------------------


def read_json(path: str | os.PathLike) -> Any | None:
    """The parsed file, or None when it is missing or not valid JSON."""
    try:
        with open(path, encoding="utf-8") as f:
            return json.load(f)
    except (OSError, ValueError):
        return None


def read_jsonl(path: str | os.PathLike) -> list[dict]:
    """Rows of a JSON-lines file; a torn or corrupt line (a killed writer) is dropped."""
    rows: list[dict] = []
    try:
        with open(path, encoding="utf-8") as f:
            for line in f:
                try:
                    row = json.loads(line)
                except ValueError:
                    continue
                if isinstance(row, dict):
                    rows.append(row)
    except OSError:
        pass
    return rows


# ---- the sweep's outcome ------------------------------------------------------------------------


def failed_jobs(job_dirs: Iterable[str | os.PathLike]) -> list[tuple[str, str]]:
    """(job directory, error) of each job whose ``summary.json`` says ``failed``."""
    failed = []
    for job_dir in job_dirs:
        summary = read_json(os.path.join(job_dir, SUMMARY))
        if isinstance(summary, dict) and summary.get("status") == FAILED:
            failed.append((str(job_dir), str(summary.get("error") or "")))
    return failed


def record_refused_job(sweep_dir: str | os.PathLike, job_dir: str | os.PathLike, reason: str) -> None:
    """Note in the sweep directory that this command did not run ``job_dir`` (see ``REFUSED_JOBS``)."""
    append_jsonl(os.path.join(sweep_dir, REFUSED_JOBS),
                 {"job_dir": str(job_dir), "reason": reason, "run": os.environ.get(SWEEP_OUTCOME_ENV)})


def refused_jobs(sweep_dir: str | os.PathLike) -> list[tuple[str, str]]:
    """(job directory, reason) of the jobs this command was refused (see ``REFUSED_JOBS``)."""
    run = os.environ.get(SWEEP_OUTCOME_ENV)
    return [(str(r.get("job_dir")), str(r.get("reason"))) for r in read_jsonl(os.path.join(sweep_dir, REFUSED_JOBS))
            if r.get("run") == run]


def record_lost_task(sweep_dir: str | os.PathLike, task: str, reason: str) -> None:
    """Note in the sweep directory that this command's launcher lost ``task`` (see ``LOST_TASKS``)."""
    append_jsonl(os.path.join(sweep_dir, LOST_TASKS),
                 {"task": task, "reason": reason, "run": os.environ.get(SWEEP_OUTCOME_ENV)})


def lost_tasks(sweep_dir: str | os.PathLike) -> list[tuple[str, str]]:
    """(task, reason) of the tasks this command's launcher lost (see ``LOST_TASKS``)."""
    run = os.environ.get(SWEEP_OUTCOME_ENV)
    return [(str(r.get("task")), str(r.get("reason"))) for r in read_jsonl(os.path.join(sweep_dir, LOST_TASKS))
            if r.get("run") == run]


def write_sweep_outcome(sweep_dir: str | os.PathLike, n_jobs: int, failed: list[tuple[str, str]],
                        report_error: str | None) -> dict:
    """Record how a multirun ended: in the sweep directory (when it exists) and in the file named
    by ``SWEEP_OUTCOME_ENV`` (when set). ``report_error``: why the report was not written, or None.
    Jobs refused to this command (``refused_jobs``) and tasks its launcher lost (``lost_tasks``)
    are added to the record."""
    outcome = {"sweep_dir": str(sweep_dir), "jobs": n_jobs, "failed": [list(f) for f in failed],
               "refused": [list(r) for r in refused_jobs(sweep_dir)],
               "lost": [list(t) for t in lost_tasks(sweep_dir)], "report_error": report_error}
    if os.path.isdir(sweep_dir):
        write_json(os.path.join(sweep_dir, SWEEP_OUTCOME), outcome)
    if os.environ.get(SWEEP_OUTCOME_ENV):
        write_json(os.environ[SWEEP_OUTCOME_ENV], outcome)
    return outcome


def read_sweep_outcome(path: str | os.PathLike) -> dict | None:
    """A record written by ``write_sweep_outcome``; None when there is none."""
    outcome = read_json(path)
    return outcome if isinstance(outcome, dict) else None
