"""Reading one job directory: its status, config, overrides, results, curves and samples.

Reads only the job files described in ``sft_sweep.jobfiles`` plus Hydra's ``.hydra/overrides.yaml``
and ``.hydra/config.yaml``. A file that cannot be read becomes a ``Problem`` (reported, skipped,
never a crash); a running job's torn last line is expected and ignored.
"""

from __future__ import annotations

import json
import math
import os
import re
import stat
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from sft_sweep.jobfiles import COMPLETED, RUNNING, SAMPLE_FIELDS, SCORED, WARNINGS, flatten, forgetting_pct

JOB_MARKERS = ("summary.json", "metrics.jsonl")
HYDRA_DIR = ".hydra"
#: Statuses whose results are final and usable. ``skipped`` is a job that had already completed.
DONE_STATUSES = frozenset({COMPLETED, "skipped"})
CURVE_COLUMNS = ["job", "step", "kind", "metric", "value"]
SAMPLE_COLUMNS = ["job", *SAMPLE_FIELDS]


@dataclass(frozen=True)
class Problem:
    """A file that could not be read (or a part of it). The collection carries on without it."""

    path: str
    message: str

    def __str__(self) -> str:
        return f"{self.path}: {self.message}"


def find_job_dirs(root: str | os.PathLike) -> list[Path]:
    """Job directories under ``root`` (any depth; ``root`` itself when it is a job).

    A job directory holds ``summary.json``, ``metrics.jsonl`` or ``.hydra/``. The search does
    not descend into a job directory nor into hidden directories, and does not follow links.
    """
    root = Path(root)
    found: list[Path] = []
    for dirpath, dirnames, filenames in os.walk(root, followlinks=False):
        here = Path(dirpath)
        if _is_job(filenames, dirnames):
            found.append(here)
            dirnames[:] = []
            continue
        dirnames[:] = [d for d in dirnames if not d.startswith(".")]
    return sorted(found, key=lambda p: natural_key(p.relative_to(root).as_posix()))


def _is_job(filenames: Iterable[str], dirnames: Iterable[str]) -> bool:
    files = set(filenames)
    return any(m in files for m in JOB_MARKERS) or HYDRA_DIR in set(dirnames)


def natural_key(text: str) -> list:
    return [int(t) if t.isdigit() else t for t in re.split(r"(\d+)", text)]


@dataclass
class JobFiles:
    """What one job directory yielded."""

    record: dict[str, Any]
    config: dict[str, Any]
    override_keys: set[str]
    overrides: dict[str, Any]
    curves: dict[str, list]
    samples: list[dict[str, str]]


def read_job(job_dir: Path, job_id: str, sweep: str, problems: list[Problem]) -> JobFiles:
    record: dict[str, Any] = {"job": job_id, "sweep": sweep}
    summary = read_json_file(job_dir / "summary.json", problems)
    summary_ok = isinstance(summary, dict)
    if summary is not None and not summary_ok:
        problems.append(Problem(str(job_dir / "summary.json"), "not a JSON object; ignored"))
        summary = None

    # Status: a job without (readable) summary is still running, or died without writing one.
    if summary_ok:
        status = str(summary.get("status") or "unknown").strip().lower() or "unknown"
    elif os.path.lexists(job_dir / "summary.json"):
        status = "unreadable"
    else:
        status = RUNNING
    record["status"] = status
    record["done"] = status in DONE_STATUSES
    record["error"] = _first_line(summary.get("error")) if summary_ok and summary.get("error") else ""
    record["config_hash"] = str(summary.get("config_hash", "")) if summary_ok else ""
    warnings = summary.get(WARNINGS) if summary_ok else None
    warnings = [str(w) for w in warnings] if isinstance(warnings, list) else []
    record["n_warnings"] = len(warnings)
    record["warnings"] = "\n".join(warnings)

    # Config: the summary's resolved flat config, else Hydra's composed config.
    config: dict[str, Any] = {}
    if summary_ok and isinstance(summary.get("config"), dict):
        config = _config_columns(summary["config"])
    elif (job_dir / HYDRA_DIR / "config.yaml").exists():
        raw = read_yaml(job_dir / HYDRA_DIR / "config.yaml", problems)
        if isinstance(raw, dict):
            config = {k: v for k, v in _config_columns(raw).items()
                      if not (isinstance(v, str) and "${" in v)}

    # Overrides: Hydra's record first, else the summary's copy.
    override_list: list[str] | None = None
    ov_path = job_dir / HYDRA_DIR / "overrides.yaml"
    if ov_path.exists():
        raw = read_yaml(ov_path, problems)
        if isinstance(raw, list):
            override_list = [str(x) for x in raw]
        elif raw is not None:
            problems.append(Problem(str(ov_path), "not a YAML list of overrides; ignored"))
    if override_list is None and summary_ok and isinstance(summary.get("overrides"), list):
        override_list = [str(x) for x in summary["overrides"]]
    overrides = parse_overrides(override_list or [])
    record["overrides"] = " ".join(override_list or [])

    # Results.
    base = summary.get("base") if summary_ok else None
    final = summary.get("final") if summary_ok else None
    for prefix, block in (("base", base), ("final", final)):
        if isinstance(block, dict):
            for k, v in block.items():
                if k in ("kind", "step"):
                    continue
                num = as_number(v)
                if num is not None:
                    record[f"{prefix}_{k}"] = num
    forgetting = as_number(summary.get("forgetting_pct")) if summary_ok else None
    if forgetting is None:
        b, f = record.get("base_raw_loss"), record.get("final_raw_loss")
        if b is not None and f is not None and b not in (0, 0.0) and math.isfinite(b):
            forgetting = forgetting_pct(b, f)
    record["forgetting_pct"] = forgetting
    record.update(item_counts(summary if summary_ok else {}))
    record.update(value_errors(summary if summary_ok else {}))
    record["steps"] = as_number(summary.get("steps")) if summary_ok else None
    # a job a search pruned: where it stopped, and what it would have run
    record["stopped_at_step"] = as_number(summary.get("stopped_at_step")) if summary_ok else None
    record["steps_planned"] = as_number(summary.get("steps_planned")) if summary_ok else None
    base_model = summary.get("base_model") if summary_ok else None
    # which cached base the job tuned: a sweep over base-model settings has one base each
    record["base_model"] = str(base_model["key"]) if isinstance(base_model, dict) and base_model.get("key") else None
    timings = summary.get("timings") if summary_ok else None
    if isinstance(timings, dict):
        for k, v in timings.items():
            num = as_number(v)
            if num is not None:
                record[f"time_{k}" if k.endswith("_s") else f"time_{k}_s"] = num

    # Curves.
    curves: dict[str, list] = {c: [] for c in CURVE_COLUMNS}
    mpath = job_dir / "metrics.jsonl"
    last_train: dict[str, Any] = {}
    last_eval: dict[str, Any] = {}
    if os.path.lexists(mpath):
        for row in read_jsonl_rows(mpath, problems, tolerate_partial_tail=(status == RUNNING)):
            kind = str(row.get("kind", "")).strip() or "unknown"
            step = as_number(row.get("step"))
            if step is None:
                problems.append(Problem(str(mpath), f"a {kind!r} row has no numeric 'step'; skipped"))
                continue
            for k, v in row.items():
                if k in ("kind", "step"):
                    continue
                num = as_number(v)
                if num is None:
                    continue
                curves["job"].append(job_id)
                curves["step"].append(step)
                curves["kind"].append(kind)
                curves["metric"].append(k)
                curves["value"].append(num)
            if kind == "train" and step >= last_train.get("step", -math.inf):
                last_train = {"step": step, **row}
            elif kind == "eval" and step >= last_eval.get("step", -math.inf):
                last_eval = {"step": step, **row}
    elif status in DONE_STATUSES:
        problems.append(Problem(str(mpath), "missing although the job completed: its curves are absent"))
    record["last_step"] = last_train.get("step", last_eval.get("step"))
    record["last_epoch"] = as_number(last_train.get("epoch"))
    record["last_loss"] = as_number(last_train.get("loss"))
    record["last_eval_step"] = last_eval.get("step")
    record["last_eval_response_loss"] = as_number(last_eval.get("response_loss"))
    record["updated"] = _mtime(job_dir)
    record["path"] = str(job_dir)

    samples = []
    spath = job_dir / "samples.jsonl"
    if os.path.lexists(spath):
        for row in read_jsonl_rows(spath, problems, tolerate_partial_tail=(status == RUNNING)):
            samples.append({"job": job_id, **{k: as_text(row.get(k)) for k in SAMPLE_COLUMNS[1:]}})

    return JobFiles(record, config, set(overrides), overrides, curves, samples)


def item_counts(summary: dict) -> dict[str, float | None]:
    """How many held-out items each evaluation set scored, from what the job recorded: the
    world's item counts less the items skipped as too long, capped at ``eval.max_items``.
    Absent (None) when the job did not record them (own data, older jobs)."""
    data = summary.get("data") if isinstance(summary.get("data"), dict) else {}
    world = data.get("world") if isinstance(data.get("world"), dict) else {}
    skipped = data.get("eval_skipped_too_long") if isinstance(data.get("eval_skipped_too_long"), dict) else {}
    config = summary.get("config") if isinstance(summary.get("config"), dict) else {}
    cap = as_number(_dig_config(config, "eval", "max_items"))
    out: dict[str, float | None] = {}
    for name, key in (("answer", "n_eval_items"), ("knowledge", "n_probe_items")):
        total, skip = as_number(world.get(key)), as_number(skipped.get(name, 0))
        n = None if total is None or skip is None else total - skip
        if n is not None and cap is not None:
            n = min(n, cap)
        out[f"items_{name}"] = n if n is not None and n > 0 else None
    # Follow rate on own data is measured over the prompts whose reference fits (follow_rate_n);
    # on the world, over the answer items.
    final = summary.get("final") if isinstance(summary.get("final"), dict) else {}
    n_follow = as_number(final.get("follow_rate_n"))
    out["items_follow"] = n_follow if n_follow is not None and n_follow > 0 else out["items_answer"]
    out.update(scored_counts(summary, world))
    return out


def _count(block: Any, key: str) -> float | None:
    n = as_number(block.get(key)) if isinstance(block, dict) else None
    return n if n is not None and n >= 0 else None


def scored_counts(summary: dict, world: dict) -> dict[str, float | None]:
    """What the job's answer metrics counted (summary.json ``scored``), as columns:
    ``items_multi_turn`` (second turns scored), ``items_system_format`` (format-prompted
    questions scored) and, per format a system prompt sets, ``format_obeyed_<style>`` of
    ``items_format_<style>``. ``items_answer`` is the recorded count when the job recorded one.
    A job from before ``scored`` has no per-format or second-turn count (None); its
    format-prompted count is the world's (``n_system_format_eval``), as the job reported it."""
    scored = summary.get(SCORED) if isinstance(summary.get(SCORED), dict) else {}
    out: dict[str, float | None] = {}
    answer = _count(scored, "answer")
    if answer:
        out["items_answer"] = answer
    mt = _count(scored.get("multi_turn"), "n")
    out["items_multi_turn"] = mt if mt else None
    styles = scored.get("system_format") if isinstance(scored.get("system_format"), dict) else {}
    total = 0.0
    for st in styles:  # in the order the job recorded them (sft_sweep's FORMAT_STYLES)
        n, k = _count(styles.get(st), "n"), _count(styles.get(st), "obeyed")
        if n and k is not None and k <= n:
            out[f"items_format_{st}"], out[f"format_obeyed_{st}"] = n, k
            total += n
    old = as_number(world.get("n_system_format_eval")) if not scored else None
    out["items_system_format"] = total or (old if old else None)
    return out


def value_errors(summary: dict) -> dict[str, float | None]:
    """Standard errors the job recorded for its values over held-out items (``free_form``: the
    95% interval of forgetting over the held-out text windows, and of each model's ROUGE-L and
    response nats per byte over the held-out answers), as ``se_<value>`` columns."""
    free = summary.get("free_form") if isinstance(summary.get("free_form"), dict) else {}
    fg = free.get("forgetting_pct") if isinstance(free.get("forgetting_pct"), dict) else {}
    ci = fg.get("ci95")
    se = None
    if isinstance(ci, list) and len(ci) == 2 and all(as_number(v) is not None for v in ci):
        se = (as_number(ci[1]) - as_number(ci[0])) / (2 * 1.959964)
    out = {"se_forgetting_pct": se}
    # each model's free-form metrics over the held-out answers (they meet across tokenizers)
    for side in ("base", "final"):
        block = free.get(side) if isinstance(free.get(side), dict) else {}
        for m in ("rouge_l", "response_nats_per_byte"):
            iv = block.get(m) if isinstance(block.get(m), dict) else {}
            ci = iv.get("ci95")
            if isinstance(ci, list) and len(ci) == 2 and all(as_number(v) is not None for v in ci):
                out[f"se_{side}_{m}"] = (as_number(ci[1]) - as_number(ci[0])) / (2 * 1.959964)
    return out


def _dig_config(config: dict, *keys: str):
    """A value of the job's config, nested (``{"eval": {"max_items": 100}}``) or flat."""
    flat = config.get(".".join(keys))
    if flat is not None:
        return flat
    node: Any = config
    for k in keys:
        node = node.get(k) if isinstance(node, dict) else None
    return node


def parse_overrides(items: Iterable[str]) -> dict[str, Any]:
    """``["optim.lr=1e-4", "+mix.replay_ratio=0.05", "~x"]`` -> ``{"optim.lr": 1e-4, ...}``.

    Deletions (``~key``) and Hydra's own settings (``hydra.*``) are left out.
    """
    out: dict[str, Any] = {}
    for item in items:
        item = str(item).strip()
        if not item or item.startswith("~") or "=" not in item:
            continue
        key, value = item.split("=", 1)
        key = key.lstrip("+").strip()
        if "@" in key:  # group@package=option: keep the group
            key = key.split("@", 1)[0]
        if not key or key == "hydra" or key.startswith("hydra."):
            continue
        out[key] = parse_scalar(value)
    return out


def parse_scalar(text: str) -> Any:
    """An override value as Hydra would type it: int, float (``1e-4`` too), bool, null, or string."""
    s = str(text).strip()
    if len(s) >= 2 and s[0] == s[-1] and s[0] in "'\"":
        return s[1:-1]
    low = s.lower()
    if low in ("true", "false"):
        return low == "true"
    if low in ("null", "none", "~"):
        return None
    if re.fullmatch(r"[+-]?\d+", s):
        return int(s)
    try:
        f = float(s)
    except ValueError:
        return s
    return f if low not in ("nan", "inf", "-inf", "+inf", "infinity") else s


# The largest job files read: a job writes a summary of kilobytes and rows of a few megabytes;
# a bigger file is damaged or not a job's, and reading it whole would cost the report its memory.
JSON_MAX_BYTES = 64 << 20
JSONL_MAX_BYTES = 512 << 20


def read_bounded(path: Path, limit: int, problems: list[Problem]) -> str | None:
    """The text of ``path`` when it is a readable regular file of at most ``limit`` bytes; else
    None, with a problem saying why it was skipped (nothing for a file that is not there)."""
    try:
        st = path.stat()
    except FileNotFoundError:
        if os.path.islink(path):
            problems.append(Problem(str(path), "a link to nothing; ignored"))
        return None
    except OSError as exc:
        problems.append(Problem(str(path), f"cannot read: {exc.strerror or exc}; ignored"))
        return None
    if not stat.S_ISREG(st.st_mode):
        problems.append(Problem(str(path), "not a regular file; ignored"))
        return None
    if st.st_size > limit:
        problems.append(Problem(str(path), f"{st.st_size} bytes, more than the {limit} a job file may have; "
                                           "not read"))
        return None
    try:
        with open(path, encoding="utf-8", errors="replace") as f:
            return f.read(limit + 1)[:limit]
    except OSError as exc:
        problems.append(Problem(str(path), f"cannot read: {exc.strerror or exc}; ignored"))
        return None


def read_json_file(path: Path, problems: list[Problem]) -> Any:
    text = read_bounded(path, JSON_MAX_BYTES, problems)
    if text is None:
        return None
    if not text.strip():
        problems.append(Problem(str(path), "empty file; ignored"))
        return None
    try:
        return json.loads(text)
    except ValueError as exc:
        problems.append(Problem(str(path), f"not valid JSON (half-written?): {exc}; ignored"))
        return None


def read_jsonl_rows(path: Path, problems: list[Problem], *, tolerate_partial_tail: bool) -> list[dict]:
    """Objects of a JSON-lines file. Bad lines are reported and skipped.

    The last line of a file still being written may be cut off; for a running job that is
    expected and silently ignored.
    """
    text = read_bounded(path, JSONL_MAX_BYTES, problems)
    if text is None:
        return []
    lines = text.split("\n")
    partial_tail = not text.endswith("\n")
    rows, bad = [], []
    for i, line in enumerate(lines, 1):
        if not line.strip():
            continue
        try:
            obj = json.loads(line)
        except ValueError:
            is_tail = partial_tail and i == len(lines)
            if is_tail and tolerate_partial_tail:
                continue
            bad.append(f"{i}" + (" (cut off at the end)" if is_tail else ""))
            continue
        if not isinstance(obj, dict):
            bad.append(f"{i} (not an object)")
            continue
        rows.append(obj)
    if bad:
        shown = ", ".join(bad[:5]) + (f" and {len(bad) - 5} more" if len(bad) > 5 else "")
        problems.append(Problem(str(path), f"skipped unreadable line(s) {shown}"))
    return rows


def read_yaml(path: Path, problems: list[Problem]) -> Any:
    import yaml  # PyYAML comes with omegaconf / hydra-core

    try:
        return yaml.safe_load(path.read_text(encoding="utf-8", errors="replace"))
    except (OSError, yaml.YAMLError) as exc:
        msg = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        problems.append(Problem(str(path), f"not valid YAML: {msg}; ignored"))
        return None


def _config_columns(obj: dict) -> dict[str, Any]:
    """A config as table cells: dotted keys, lists as JSON text, empty mappings dropped."""
    out: dict[str, Any] = {}
    for key, v in flatten(obj).items():
        if isinstance(v, dict):
            continue
        if isinstance(v, (list, tuple)):
            out[key] = json.dumps(v, default=str)
        elif v is None or isinstance(v, (bool, int, float, str)):
            out[key] = v
        else:
            out[key] = str(v)
    return out


def as_number(v: Any) -> float | None:
    if isinstance(v, bool) or v is None:
        return None
    if isinstance(v, (int, float)):
        return float(v)
    return None


def as_text(v: Any) -> str:
    if v is None:
        return ""
    return v if isinstance(v, str) else json.dumps(v, default=str)


def _first_line(v: Any) -> str:
    """One line of an error message: the exception line of a traceback, else the first line."""
    lines = [ln for ln in as_text(v).strip().splitlines() if ln.strip()]
    if not lines:
        return ""
    return lines[-1].strip() if lines[0].startswith("Traceback") else lines[0].strip()


def _mtime(job_dir: Path) -> float | None:
    times = []
    for name in ("metrics.jsonl", "summary.json"):
        try:
            times.append((job_dir / name).stat().st_mtime)
        except OSError:
            pass
    return max(times) if times else None
