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

A metric that was not measured is absent, never 0. Whole files are written atomically
(``write_atomic``) with the permissions the user's umask gives new files.
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import tempfile
from pathlib import Path
from typing import Any, Iterable, Iterator

SUMMARY = "summary.json"
METRICS = "metrics.jsonl"
SAMPLES = "samples.jsonl"
CHECKPOINT = "checkpoint.npz"
MODEL = "model.npz"

#: Job states written to ``summary.json``'s ``status``.
RUNNING = "running"
COMPLETED = "completed"
FAILED = "failed"
INTERRUPTED = "interrupted"  # stopped from outside (signal, time limit); resumes from its checkpoint
PRUNED = "pruned"  # stopped early by a search that judged it not worth finishing
STATUSES = (RUNNING, COMPLETED, FAILED, INTERRUPTED, PRUNED)
#: ``summary.json`` field with one-line notes about a job (a list of strings; may be absent).
WARNINGS = "warnings"
#: ``summary.json`` ``reason`` of a failed job whose loss blew up (see ``train.diverge_factor``).
DIVERGED = "diverged"

#: Evaluation metrics (eval rows of metrics.jsonl, ``base`` / ``final`` of summary.json), in
#: display order.
EVAL_METRICS = ("raw_loss", "response_loss", "follow_rate", "answer_acc", "answer_mc_acc",
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


def current_umask() -> int:
    """The process's umask, read without changing it where the system allows."""
    try:
        with open("/proc/self/status", encoding="ascii") as f:
            for line in f:
                if line.startswith("Umask:"):
                    return int(line.split()[1], 8)
    except (OSError, ValueError, IndexError):
        pass
    mask = os.umask(0o022)  # elsewhere the only way to read it is to set it (and put it back)
    os.umask(mask)
    return mask


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike) -> Iterator[Path]:
    """Yield a temporary path beside ``path``; once the block succeeds it replaces ``path``.

    For writers that want a file name (``numpy.savez``, ``DataFrame.to_csv``, ``Figure.savefig``).
    Rename is atomic on POSIX file systems, NFS included: a reader sees the old file or the new
    one, never half of one. On error the temporary file is removed and ``path`` is untouched.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    os.close(fd)
    try:
        yield Path(tmp)
        # mkstemp creates the file private (0600); give it the mode a plain open() would have, so
        # results are as readable as the user's other files.
        os.chmod(tmp, 0o666 & ~current_umask())
        with open(tmp, "rb+") as f:
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise


def write_atomic(path: str | os.PathLike, content: str | bytes) -> None:
    """Write ``content`` (text as UTF-8) to ``path`` atomically."""
    data = content.encode("utf-8") if isinstance(content, str) else content
    with atomic_path(path) as tmp:
        tmp.write_bytes(data)


def write_json(path: str | os.PathLike, obj: Any) -> None:
    write_atomic(path, json.dumps(json_safe(obj), indent=2, sort_keys=False) + "\n")


def write_jsonl(path: str | os.PathLike, rows: Iterable[dict]) -> None:
    write_atomic(path, "".join(json.dumps(json_safe(r), ensure_ascii=False) + "\n" for r in rows))


def append_jsonl(path: str | os.PathLike, row: dict) -> None:
    """One row, one flushed write: a reader sees whole rows except perhaps a torn last one."""
    with open(path, "a", encoding="utf-8") as f:
        f.write(json.dumps(json_safe(row)) + "\n")
        f.flush()


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
