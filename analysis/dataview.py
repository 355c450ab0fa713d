"""What a job trained on, for the report: one training example rendered with the job's own
template and loss mask, and the data counts the job recorded in ``summary.json`` (``data``).

The example is rebuilt from the job's ``.hydra/config.yaml`` with the package's data layer
(the built-in world, or the first data file of the job, resolved against the directory the job
was started from); the counts are read, never recomputed, so they are the job's own.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd
import yaml
from omegaconf import OmegaConf

from analysis.jobdir import HYDRA_DIR, JSON_MAX_BYTES, read_bounded
from analysis.roles import key_of
from sft_sweep.config import Config, to_object
from sft_sweep.data import fit_example, training_conversations

#: How far into the training set to look for an example with a system prompt (shows that
#: only the answer is trained).
SEARCH_EXAMPLES = 50


@dataclass
class RenderedExample:
    """A training sequence as (text, trained) runs: ``trained`` marks loss-mask targets."""

    spans: list[tuple[str, bool]]
    index: int
    source: str
    template: str
    mask_mode: str
    n_trained: int
    n_tokens: int
    status: str  # kept | truncated | dropped ...


@dataclass
class DataCounts:
    """The job's data counts (``None``: the job did not record it)."""

    training_examples: int | None = None
    filtered: int | None = None
    filtered_by_rule: dict[str, int] = field(default_factory=dict)
    deduplicated: int | None = None
    truncated: int | None = None
    dropped: int | None = None
    skipped_records: int | None = None
    replay_ratio: float | None = None  # achieved share of replayed raw text
    replay_ratio_asked: float | None = None
    n_replay: int | None = None

    def lines(self) -> list[str]:
        def num(v: Any) -> str:
            return "not recorded" if v is None else str(v)
        out = [f"training examples: {num(self.training_examples)}"]
        rules = ", ".join(f"{k} {v}" for k, v in self.filtered_by_rule.items() if v)
        out.append(f"filtered by the quality rules: {num(self.filtered)}" + (f" ({rules})" if rules else ""))
        out.append(f"deduplicated: {num(self.deduplicated)}")
        out.append(f"truncated: {num(self.truncated)}")
        out.append(f"dropped (too long or no trained token left): {num(self.dropped)}")
        if self.skipped_records is not None:
            out.append(f"records skipped while loading: {self.skipped_records}")
        if self.replay_ratio is None:
            out.append("replay ratio: not recorded")
        else:
            asked = f", asked {100 * self.replay_ratio_asked:.3g}%" if self.replay_ratio_asked is not None else ""
            n = num(self.n_replay)
            out.append(f"replay ratio: {100 * self.replay_ratio:.3g}% of the training sequences are raw text"
                       f" ({n} sequence{'' if n == '1' else 's'}{asked})")
        return out


def data_counts(summary: dict[str, Any], config: dict[str, Any] | None = None) -> DataCounts:
    """The counts of ``summary["data"]``, summed over the training data sets (the held-out
    split, ``length.val``, is not training data). Duplicates are counted where the job removed
    them: ``dedup.<set>`` (before the held-out split) or, in older jobs, the quality filter."""
    data = summary.get("data") if isinstance(summary, dict) else None
    counts = DataCounts()
    if not isinstance(data, dict):
        return counts
    if isinstance(data.get("n_train_examples"), int):
        counts.training_examples = data["n_train_examples"]
    for key, rep in data.items():
        if not isinstance(rep, dict):
            continue
        kind, _, name = key.partition(".")
        if kind == "quality" and isinstance(rep.get("removed"), dict):
            removed = {k: int(v) for k, v in rep["removed"].items() if isinstance(v, (int, float))}
            counts.deduplicated = (counts.deduplicated or 0) + removed.pop("duplicate", 0)
            counts.filtered = (counts.filtered or 0) + sum(removed.values())
            for k, v in removed.items():
                counts.filtered_by_rule[k] = counts.filtered_by_rule.get(k, 0) + v
        elif kind == "dedup" and isinstance(rep.get("duplicates"), (int, float)):
            counts.deduplicated = (counts.deduplicated or 0) + int(rep["duplicates"])
        elif kind == "length" and name != "val":
            counts.truncated = (counts.truncated or 0) + int(rep.get("truncated", 0))
            counts.dropped = (counts.dropped or 0) + int(rep.get("dropped_too_long", 0)) \
                + int(rep.get("dropped_no_trained_tokens", 0))
        elif kind == "load" and "skipped" in rep:
            counts.skipped_records = (counts.skipped_records or 0) + int(rep.get("skipped") or 0)
        elif key == "mix":
            if isinstance(rep.get("achieved_ratio"), (int, float)):
                counts.replay_ratio = float(rep["achieved_ratio"])
            if isinstance(rep.get("n_replay"), int):
                counts.n_replay = rep["n_replay"]
    asked = (config or {}).get(key_of("replay"))
    if isinstance(asked, (int, float)) and not isinstance(asked, bool):
        counts.replay_ratio_asked = float(asked)
    return counts


#: Free-form metrics of held-out conversations (own data), whose paired base -> tuned change
#: with its interval a job records in ``free_form.paired``.
FREE_FORM_METRICS = ("rouge_l", "response_nats_per_byte")
#: The metrics a job may record as not measured (``not_measured``), each a column of the tables.
ABSENT_METRICS = ("follow_rate", "rouge_l", "response_nats_per_byte")


def _interval(block: Any) -> tuple[float, float, float] | None:
    """(mean, lo, hi) of a recorded interval ``{"mean", "ci95": [lo, hi]}``, or None."""
    if not isinstance(block, dict):
        return None
    mean, ci = block.get("mean"), block.get("ci95")
    nums = [mean, *(ci if isinstance(ci, list) and len(ci) == 2 else [None, None])]
    if not all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in nums):
        return None
    return float(nums[0]), float(nums[1]), float(nums[2])


def free_form_columns(summary: dict[str, Any]) -> dict[str, Any]:
    """Table columns from a job's ``free_form`` and ``not_measured`` records: ``paired_<m>`` with
    ``paired_<m>_lo`` / ``_hi`` (the per-item base -> tuned change and its 95% interval),
    ``forgetting_lo`` / ``_hi`` (the forgetting interval over held-out text windows), and
    ``not_measured_<m>``: why a metric is absent. Only what the job recorded; nothing is filled in."""
    out: dict[str, Any] = {}
    free = summary.get("free_form") if isinstance(summary.get("free_form"), dict) else {}
    paired = free.get("paired") if isinstance(free.get("paired"), dict) else {}
    for m in FREE_FORM_METRICS:
        iv = _interval(paired.get(m))
        if iv is not None:
            out[f"paired_{m}"], out[f"paired_{m}_lo"], out[f"paired_{m}_hi"] = iv
    iv = _interval(free.get("forgetting_pct"))
    if iv is not None:
        out["forgetting_lo"], out["forgetting_hi"] = iv[1], iv[2]
    absent = summary.get("not_measured") if isinstance(summary.get("not_measured"), dict) else {}
    for m in ABSENT_METRICS:
        why = absent.get(m)
        if isinstance(why, str) and why:
            out[f"not_measured_{m}"] = why
    return out


def is_free_form(done: pd.DataFrame) -> bool:
    """Whether the jobs were evaluated on free-form answers (own data): a follow rate over the
    prompts whose reference fits, a ROUGE-L score, or one of them recorded as not measured."""
    cols = ("final_follow_rate_n", "final_rouge_l", "not_measured_follow_rate", "not_measured_rouge_l")
    return any(c in done and done[c].notna().any() for c in cols)


def absent_reason(done: pd.DataFrame, metric: str) -> str | None:
    """Why the jobs did not measure ``metric`` (their ``not_measured``): the first job's words."""
    col = f"not_measured_{metric}"
    if col not in done or done[col].isna().all():
        return None
    return str(done[col].dropna().iloc[0])


def absent_reasons(done: pd.DataFrame) -> dict[str, str]:
    """metric -> why the jobs did not measure it, for the metrics of ``ABSENT_METRICS`` that no
    completed job measured; the first job's words, with how many jobs said so."""
    out = {}
    for m in ABSENT_METRICS:
        why = absent_reason(done, m)
        if why is None or (f"final_{m}" in done and done[f"final_{m}"].notna().any()):
            continue
        n = int(done[f"not_measured_{m}"].notna().sum())
        out[m] = why + (f" ({n} of {len(done)} jobs)" if len(done) > 1 else "")
    return out


def read_summary(job_dir: str | Path) -> dict[str, Any]:
    """The job's summary, or {} (the collection of the jobs has listed why it is unusable)."""
    text = read_bounded(Path(job_dir) / "summary.json", JSON_MAX_BYTES, [])
    try:
        raw = json.loads(text) if text else {}
    except ValueError:
        return {}
    return raw if isinstance(raw, dict) else {}


def render_example(job_dir: str | Path) -> RenderedExample:
    """One training example of the job, rendered with its template, mask mode and length
    policy. Raises ``ValueError`` (or the data layer's own errors) when that is not possible,
    e.g. a data file that is not on this machine."""
    job_dir = Path(job_dir)
    cfg_path = job_dir / HYDRA_DIR / "config.yaml"
    if not cfg_path.exists():
        raise ValueError(f"{cfg_path} not found: the job's config is needed to render its data")
    raw = yaml.safe_load(cfg_path.read_text(encoding="utf-8")) or {}
    cfg = to_object(OmegaConf.merge(OmegaConf.structured(Config), raw))
    if cfg.data.source != "world" and not cfg.data.datasets:
        raise ValueError("the job names no data file")
    # the job's own loading (the first step of its data preparation)
    name, convs = next(iter(training_conversations(cfg, _start_dir(job_dir) or ".").items()))
    if cfg.data.source == "world":
        source = "the built-in world"
    else:
        source = f"data set {name} ({Path(cfg.data.datasets[name].path).name})"
    convs = convs[:SEARCH_EXAMPLES]
    if not convs:
        raise ValueError("the job's training data is empty")
    index = next((i for i, c in enumerate(convs) if any(t.role == "system" for t in c.turns)), 0)
    shown = fit_example(cfg, convs[index], source)
    status = {"kept": "kept whole", "truncated": "truncated to the model's block"}.get(
        shown.status, "dropped by the length policy")
    mask = shown.shown.mask
    spans = shown.spans()
    return RenderedExample(spans, index, source, cfg.template.name, cfg.template.mask,
                           int(mask[1:].sum()), len(mask), status)


def _start_dir(job_dir: Path) -> str | None:
    try:
        raw = yaml.safe_load((job_dir / HYDRA_DIR / "hydra.yaml").read_text(encoding="utf-8"))
        return raw["hydra"]["runtime"]["cwd"]
    except (OSError, KeyError, TypeError, yaml.YAMLError):
        return None


__all__ = ["ABSENT_METRICS", "DataCounts", "FREE_FORM_METRICS", "RenderedExample", "absent_reason",
           "absent_reasons", "data_counts", "free_form_columns", "is_free_form", "read_summary", "render_example"]
