"""Synthetic sweeps of fine-tuning methods and mitigations (full / LoRA / freeze, replay, a pull
toward the base, NEFTune, weight blends), with the ``peft``, ``weight_change`` and ``blends``
records a job writes into ``summary.json``."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from analysis_helpers import BASE_EVAL, make_results_sweep

BASE_RAW = BASE_EVAL["raw_loss"]
TOTAL = 100_000
MATRICES = [f"h.{i}.{m}.w" for i in range(2) for m in ("attn.qkv", "attn.proj", "mlp.fc", "mlp.proj")]


def final(acc: float, forgetting: float, **extra: float) -> dict[str, float]:
    """Final metrics with answer accuracy ``acc`` and ``forgetting`` (%) of the raw-text loss."""
    return {"answer_acc": acc, "raw_loss": BASE_RAW * (1 + forgetting / 100), "follow_rate": 0.9, **extra}


def peft_block(method: str, rank: int | None = None, targets: list[str] | None = None,
               layers: int | None = None) -> dict[str, Any]:
    if method == "lora":
        return {"method": "lora", "trainable_params": 1000 * rank, "total_params": TOTAL, "rank": rank,
                "alpha": 2.0 * rank, "scale": 2.0, "targets": targets or ["attn.qkv", "attn.proj", "mlp.fc", "mlp.proj"]}
    if method == "freeze":
        return {"method": "freeze", "trainable_params": 30_000, "total_params": TOTAL, "trainable_layers": layers,
                "train_embeddings": False}
    return {"method": "full", "trainable_params": TOTAL, "total_params": TOTAL}


def weight_change(ranks: list[int], max_rank: int = 64) -> dict[str, Any]:
    eff = dict(zip(MATRICES, ranks))
    ordered = sorted(ranks)
    mid = len(ordered) // 2
    median = ordered[mid] if len(ordered) % 2 else (ordered[mid - 1] + ordered[mid]) / 2
    return {"energy": 0.9, "effective_rank": eff, "median_effective_rank": float(median), "max_rank": max_rank}


def job(params: dict, acc: float, forgetting: float, *, peft: dict | None = None, change: dict | None = None,
        blends: list[tuple[float, float, float]] | None = None, se_forgetting: float | None = 0.5,
        **extra) -> dict[str, Any]:
    """One job of ``make_front_sweep``: its settings, results and new records. ``blends``: (t,
    answer accuracy, forgetting %) each. ``se_forgetting``: the job's standard error of forgetting
    over its held-out text windows (None: not recorded)."""
    out: dict[str, Any] = {"params": params, "final": final(acc, forgetting, **extra)}
    if se_forgetting is not None:
        h = 1.959964 * se_forgetting
        out["forgetting_ci"] = (forgetting - h, forgetting + h)
    out["_peft"], out["_change"], out["_blends"] = peft, change, blends
    return out


def make_front_sweep(root: Path, jobs: list[dict], *, items: int | None = 200,
                     blend_se: float | None = 0.5, base: dict | None = None) -> Path:
    """``make_results_sweep`` with each job's ``peft`` / ``weight_change`` / ``blends`` records added
    (``blend_se``: each blend's standard error of forgetting, recorded as its ``free_form``)."""
    make_results_sweep(root, [{k: v for k, v in j.items() if not k.startswith("_")} for j in jobs], items=items,
                       base=base)
    for num, j in enumerate(jobs):
        path = root / str(num) / "summary.json"
        summary = json.loads(path.read_text())
        if j.get("_peft") is not None:
            summary["peft"] = j["_peft"]
        if j.get("_change") is not None:
            summary["weight_change"] = j["_change"]
        if j.get("_blends") is not None:
            summary["blends"] = [{"t": t, "final": {**summary["base"], **final(acc, fg)}, "forgetting_pct": fg,
                                  **({"free_form": {"forgetting_pct": {"mean": fg, "ci95": [fg - blend_se * 1.959964,
                                                                                          fg + blend_se * 1.959964]}}}
                                     if blend_se is not None else {})}
                                 for t, acc, fg in j["_blends"]]
        path.write_text(json.dumps(summary, indent=1))
    return root
