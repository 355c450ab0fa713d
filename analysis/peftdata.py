"""What a job records about how it was fine-tuned, and the weight blends it evaluated, as tables.

A completed job's ``summary.json`` may hold (see the README's "Job files" section):

- ``peft``: ``{"method": "full" | "lora" | "freeze", "trainable_params", "total_params"}``, plus
  ``rank``, ``alpha``, ``scale``, ``targets`` for LoRA and ``trainable_layers``,
  ``train_embeddings`` for freezing;
- ``weight_change``: ``{"energy", "effective_rank": {matrix: rank}, "median_effective_rank",
  "max_rank"}`` (full and LoRA jobs): the effective rank of each weight change ``W_tuned - W_base``,
  the number of singular values holding ``energy`` of its squared singular values;
- ``blends``: ``[{"t", "final": {metrics}, "forgetting_pct"}, ...]``: the weights
  ``(1 - t) * base + t * tuned`` evaluated like the final model (optionally with a ``free_form``
  block shaped like the job's, giving their intervals).

``peft_columns`` turns the first two into job columns (only what the job recorded: a job from before
these fields has none of them), ``weight_rank_rows`` the per-matrix ranks into rows of their own
table, and ``blend_rows`` each blend into a row of the blends table. Blends are never jobs: they
live in ``RunSet.blends`` only, so no finding or figure counts them as jobs unless it asks for them.
"""

from __future__ import annotations

import json
import math
from typing import Any

from analysis.dataview import free_form_columns
from analysis.jobdir import as_number
from sft_sweep.jobfiles import BLENDS, PEFT, WEIGHT_CHANGE, forgetting_pct

#: Job columns from ``summary["peft"]`` (column -> key in the block).
PEFT_COLUMNS = {"peft_method": "method", "trainable_params": "trainable_params", "total_params": "total_params",
                "lora_rank": "rank", "lora_alpha": "alpha", "lora_scale": "scale", "lora_targets": "targets",
                "freeze_trainable_layers": "trainable_layers", "freeze_train_embeddings": "train_embeddings"}
#: Job columns from ``summary["weight_change"]``.
WEIGHT_CHANGE_COLUMNS = {"weight_change_median_rank": "median_effective_rank",
                         "weight_change_max_rank": "max_rank", "weight_change_energy": "energy"}
#: Columns of the per-matrix weight-change table (``RunSet.weight_ranks``).
WEIGHT_RANK_COLUMNS = ["job", "matrix", "effective_rank", "max_rank"]
#: Columns every blends table has (``RunSet.blends``); the swept settings, metrics and intervals follow.
BLEND_KEY_COLUMNS = ["job", "sweep", "t"]


def _block(summary: dict, key: str) -> dict:
    value = summary.get(key) if isinstance(summary, dict) else None
    return value if isinstance(value, dict) else {}


def peft_columns(summary: dict[str, Any]) -> dict[str, Any]:
    """Job columns from the job's ``peft`` and ``weight_change`` records; empty when it has none."""
    out: dict[str, Any] = {}
    peft = _block(summary, PEFT)
    for col, key in PEFT_COLUMNS.items():
        v = peft.get(key)
        if v is None:
            continue
        if isinstance(v, bool) or isinstance(v, str):
            out[col] = v
        elif isinstance(v, (list, tuple)):
            out[col] = ",".join(str(x) for x in v)
        elif as_number(v) is not None:
            out[col] = as_number(v)
    if "trainable_params" in out and out.get("total_params"):
        out["trainable_share"] = out["trainable_params"] / out["total_params"]
    change = _block(summary, WEIGHT_CHANGE)
    for col, key in WEIGHT_CHANGE_COLUMNS.items():
        num = as_number(change.get(key))
        if num is not None:
            out[col] = num
    if "weight_change_median_rank" not in out:  # older writers: the median of the per-matrix ranks
        ranks = sorted(r for r in (as_number(v) for v in _block(change, "effective_rank").values()) if r is not None)
        if ranks:
            mid = len(ranks) // 2
            out["weight_change_median_rank"] = ranks[mid] if len(ranks) % 2 else (ranks[mid - 1] + ranks[mid]) / 2
    return out


def weight_rank_rows(summary: dict[str, Any], job: str) -> list[dict[str, Any]]:
    """One row per weight matrix of ``weight_change.effective_rank``."""
    change = _block(summary, WEIGHT_CHANGE)
    max_rank = as_number(change.get("max_rank"))
    rows = []
    for matrix, rank in _block(change, "effective_rank").items():
        num = as_number(rank)
        if num is not None:
            rows.append({"job": job, "matrix": str(matrix), "effective_rank": num, "max_rank": max_rank})
    return rows


def blend_rows(summary: dict[str, Any], job: dict[str, Any]) -> list[dict[str, Any]]:
    """One row per recorded blend of a completed job: ``job``, ``sweep``, ``t``, ``final_<metric>``,
    ``forgetting_pct`` (from the blend's raw-text loss when it did not record it), the job's item
    counts (a blend is scored on the same held-out items), and the blend's own intervals when it
    recorded a ``free_form`` block (``forgetting_lo`` / ``_hi``, ``se_forgetting_pct``, ``paired_<m>``)."""
    blends = summary.get(BLENDS) if isinstance(summary, dict) else None
    if not isinstance(blends, list):
        return []
    base = _block(summary, "base")
    rows = []
    for b in blends:
        if not isinstance(b, dict) or as_number(b.get("t")) is None:
            continue
        row: dict[str, Any] = {"job": job["job"], "sweep": job.get("sweep"), "t": as_number(b["t"])}
        for k, v in _block(b, "final").items():
            num = as_number(v)
            if num is not None and k not in ("kind", "step"):
                row[f"final_{k}"] = num
        fg = as_number(b.get("forgetting_pct"))
        braw, fraw = as_number(base.get("raw_loss")), row.get("final_raw_loss")
        if fg is None and braw and fraw is not None and math.isfinite(braw):
            fg = forgetting_pct(braw, fraw)
        row["forgetting_pct"] = fg
        for k, v in job.items():
            if k.startswith("items_"):
                row[k] = v
        free = free_form_columns({"free_form": b["free_form"]}) if isinstance(b.get("free_form"), dict) else {}
        row.update(free)
        if "forgetting_lo" in free:
            row["se_forgetting_pct"] = (free["forgetting_hi"] - free["forgetting_lo"]) / (2 * 1.959964)
        rows.append(row)
    return rows


def targets_text(value: Any) -> str:
    """LoRA targets as the jobs table holds them (comma-joined), from a list or its JSON text."""
    if isinstance(value, str) and value.startswith("["):
        try:
            value = json.loads(value)
        except ValueError:
            return value
    if isinstance(value, (list, tuple)):
        return ",".join(str(v) for v in value)
    return "" if value is None else str(value)
