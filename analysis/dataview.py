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

import yaml
from omegaconf import OmegaConf

from analysis.jobdir import HYDRA_DIR
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
    asked = (config or {}).get("mix.replay_ratio")
    if isinstance(asked, (int, float)) and not isinstance(asked, bool):
        counts.replay_ratio_asked = float(asked)
    return counts


def read_summary(job_dir: str | Path) -> dict[str, Any]:
    try:
        raw = json.loads((Path(job_dir) / "summary.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
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


__all__ = ["DataCounts", "RenderedExample", "data_counts", "read_summary", "render_example"]
