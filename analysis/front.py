"""The learning-forgetting front: every job and every weight blend of a sweep as one point.

One table (``front_points``) puts each completed job and each blend it evaluated side by side:
how much it learnt (``learning``: answer accuracy on the world; on own data, where that is absent,
ROUGE-L, else the response nats per byte, where lower is better), how much it forgot
(``forgetting_pct``), and what it was: the fine-tuning method (full, LoRA at a rank and targets,
freezing) and the training-time mitigations it used (replay, a pull toward the base weights,
NEFTune), as one ``variant`` label; its learning rate; and the other swept settings
(``context``), so that points are compared only with points that share them.

The front figure (``analysis.plots.front``) and the findings on methods and mitigations
(``analysis.findings.front``) both read this table, so they agree on every label and number.
Effects between groups of points go through the one noise standard (``analysis.noise``): seeds
when a group has replicates, else the items each value was measured on (answer accuracy: the
held-out questions; forgetting: each job's interval over its held-out text windows; ROUGE-L and
nats per byte: each job's interval of its paired change over the held-out conversations).
"""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import pandas as pd

from analysis.collect import RunSet, find_axis
from analysis.roles import key_of
from analysis.noise import Z95, Effect, effect, items_column, judge
from analysis.style import fmt_num, fmt_value, setting_label
from sft_sweep.config import LORA_TARGETS, OFF_IS_ABSENT

#: What "learnt" means on the front, in order of preference: (column, +1 if higher is better).
LEARNING_METRICS = (("final_answer_acc", +1), ("final_rouge_l", +1), ("final_response_nats_per_byte", -1))
LEARNING_LABELS = {"final_answer_acc": "answer accuracy (%)", "final_rouge_l": "ROUGE-L of the greedy answer",
                   "final_response_nats_per_byte": "response loss (nats/byte)"}
#: Smallest difference that counts, per learning metric (as stored) and for forgetting (points).
MIN_LEARNING = {"final_answer_acc": 0.02, "final_rouge_l": 0.02, "final_response_nats_per_byte": 0.02}
MIN_FORGETTING = 1.0
#: The config group of ready-made ways to fine-tune (conf/method), swept as ``+method=...``.
METHOD_GROUP = "method"
#: Training-time mitigations that are settings of the job, by the role their schema description
#: gives them (role -> short name); each is off at its described "off" value. Replay is found by
#: its role too.
MITIGATION_ROLES = {"pull": "l2 pull", "neftune": "NEFTune"}
MITIGATION_KEYS = {key_of(role): name for role, name in MITIGATION_ROLES.items()}
#: The settings of what trains (the peft group), each by its role.
PEFT_KEYS = {role: key_of(role) for role in ("method", "rank", "lora_targets", "trainable_blocks",
                                            "train_embeddings")}
PEFT_GROUP = PEFT_KEYS["method"].rpartition(".")[0]
FULL, LORA, FREEZE = "full", "lora", "freeze"
ATTENTION, MLP = {"attn.qkv", "attn.proj"}, {"mlp.fc", "mlp.proj"}

POINT_COLUMNS = ["job", "kind", "t", "method", "method_label", "replay", "l2", "neftune", "variant", "lr",
                 "context", "setting", "learning", "se_learning", "items_learning", "forgetting_pct",
                 "se_forgetting_pct", "base_learning", "rank", "trainable_layers", "trainable_share"]


@dataclass(frozen=True)
class Learning:
    """The learning metric of a sweep: its column, direction (+1: higher is better) and label."""

    metric: str
    sign: int

    @property
    def label(self) -> str:
        text = LEARNING_LABELS.get(self.metric, self.metric)
        return text + (", lower is better" if self.sign < 0 else "")

    @property
    def name(self) -> str:
        return LEARNING_LABELS.get(self.metric, self.metric).split(" (")[0]

    @property
    def min_effect(self) -> float:
        return MIN_LEARNING.get(self.metric, 0.02)

    def fmt(self, v: float) -> str:
        if self.metric == "final_answer_acc":
            return f"{100 * v:.1f}%"
        return f"{v:.3f}"

    def fmt_diff(self, e: Effect) -> str:
        if self.metric == "final_answer_acc":
            return e.describe(scale=100, unit=" points")
        return e.describe(digits=3)


# ======================================================================================
# Reading what each job was
# ======================================================================================


def _cfg(runs: RunSet, job: str, key: str | None) -> Any:
    if key is None:
        return None
    conf = runs.configs.get(job)
    # a job that recorded its config and lacks the key ran before the setting existed: off
    return conf.get(key) if conf else runs.constants.get(key)


def _num(v: Any, default: float = 0.0) -> float:
    if isinstance(v, bool) or v is None:
        return default
    try:
        out = float(v)
    except (TypeError, ValueError):
        return default
    return out if math.isfinite(out) else default


def _present(row: pd.Series, col: str) -> bool:
    return col in row and not pd.isna(row[col])


def _targets(value: Any) -> list[str]:
    if isinstance(value, str):
        try:
            value = json.loads(value) if value.startswith("[") else value.split(",")
        except ValueError:
            value = value.split(",")
    return [str(v).strip() for v in value] if isinstance(value, (list, tuple)) else []


def _method(runs: RunSet, row: pd.Series) -> dict[str, Any]:
    """method, rank, targets, trainable layers and the method's label, from the job's ``peft``
    record, else its config (a job from before the peft group fine-tuned fully)."""
    job = row["job"]
    method = row["peft_method"] if _present(row, "peft_method") else _cfg(runs, job, PEFT_KEYS["method"]) or FULL
    out: dict[str, Any] = {"method": str(method), "rank": math.nan, "trainable_layers": math.nan,
                           "trainable_share": float(row["trainable_share"]) if _present(row, "trainable_share")
                           else math.nan}
    if method == LORA:
        rank = row["lora_rank"] if _present(row, "lora_rank") else _cfg(runs, job, PEFT_KEYS["rank"])
        targets = _targets(row["lora_targets"] if _present(row, "lora_targets") else _cfg(runs, job, PEFT_KEYS["lora_targets"]))
        out["rank"] = _num(rank, math.nan)
        label = f"LoRA r={fmt_num(out['rank'])}"
        tset = set(targets)
        if targets and tset != set(LORA_TARGETS):
            label += " (" + ("attention" if tset == ATTENTION else "MLP" if tset == MLP else "+".join(targets)) + ")"
        out["method_label"] = label
    elif method == FREEZE:
        n = row["freeze_trainable_layers"] if _present(row, "freeze_trainable_layers") \
            else _cfg(runs, job, PEFT_KEYS["trainable_blocks"])
        n = int(_num(n, 0))
        emb = row["freeze_train_embeddings"] if _present(row, "freeze_train_embeddings") \
            else _cfg(runs, job, PEFT_KEYS["train_embeddings"])
        out["trainable_layers"] = n
        out["method_label"] = (f"freeze: last {n} blocks train" if n > 0 else f"freeze: first {-n} blocks train") \
            + (" + embeddings" if emb is True else "")
    else:
        out["method_label"] = "full" if method == FULL else str(method)
    return out


def replay_key(runs: RunSet) -> str | None:
    keys = list(runs.swept) + [k for k in runs.constants if k not in runs.swept]
    for conf in runs.configs.values():
        keys += [k for k in conf if k not in keys]
    return find_axis(keys, "replay")


def lr_key(runs: RunSet) -> str | None:
    if runs.axis("lr"):
        return runs.axis("lr")
    keys = list(runs.constants) + [k for conf in runs.configs.values() for k in conf]
    return find_axis(list(dict.fromkeys(keys)), "lr")


def _not_context(runs: RunSet) -> set[str]:
    """Swept settings that are part of a point's variant or learning rate, not of its context."""
    out = {lr_key(runs), replay_key(runs), *MITIGATION_KEYS}
    # the peft group's keys, and the group itself when a command chose it (``peft=lora,full``)
    out |= {c for c in runs.swept if c in PEFT_KEYS.values() or c == PEFT_GROUP}
    # a ready-made way to fine-tune (``+method=lora_r4``) names the variant the keys it sets describe
    out.add(METHOD_GROUP)
    return {c for c in out if c}


def context_columns(runs: RunSet) -> list[str]:
    """The swept settings points must share to be compared (data, epochs, template, ...)."""
    skip = _not_context(runs)
    return [c for c in runs.params if c not in skip]


def variant_label(method_label: str, replay: float, l2: float, neftune: float) -> str:
    extras = []
    if replay > 0:
        extras.append(f"replay {100 * replay:.3g}%")
    if l2 > 0:
        extras.append(f"l2 pull {fmt_num(l2)}")
    if neftune > 0:
        extras.append(f"NEFTune α={fmt_num(neftune)}")
    return method_label + (" + " + ", ".join(extras) if extras else "")


# ======================================================================================
# The points
# ======================================================================================


def learning_of(runs: RunSet) -> Learning | None:
    """The learning metric: the first of ``LEARNING_METRICS`` that two or more points (jobs and
    blends) report together with their forgetting; None when there is none."""
    done = runs.done_jobs()
    blends = runs.blends[runs.blends["job"].isin(set(done["job"]))] if not runs.blends.empty else runs.blends
    for metric, sign in LEARNING_METRICS:
        n = 0
        for df in (done, blends):
            if metric in df and "forgetting_pct" in df:
                n += int(df[[metric, "forgetting_pct"]].dropna().shape[0])
        if n >= 2:
            return Learning(metric, sign)
    return None


def _se_from(row: pd.Series, lo: str, hi: str) -> float:
    if _present(row, lo) and _present(row, hi):
        return (float(row[hi]) - float(row[lo])) / (2 * Z95)
    return math.nan


def _point(runs: RunSet, row: pd.Series, info: dict, learning: Learning, ctx_cols: list[str],
           kind: str, t: float) -> dict[str, Any]:
    m = learning.metric
    short = m.removeprefix("final_")
    items_col = items_column(m)
    return {
        "job": row["job"], "kind": kind, "t": t, **info,
        "learning": float(row[m]) if _present(row, m) else math.nan,
        # a rate scored on held-out items carries its count; a score carries its paired interval
        "items_learning": float(row[items_col]) if items_col and _present(row, items_col) else math.nan,
        "se_learning": _se_from(row, f"paired_{short}_lo", f"paired_{short}_hi"),
        "forgetting_pct": float(row["forgetting_pct"]) if _present(row, "forgetting_pct") else math.nan,
        "se_forgetting_pct": float(row["se_forgetting_pct"]) if _present(row, "se_forgetting_pct") else math.nan,
        "context": setting_label(row, ctx_cols) if ctx_cols else "",
    }


def front_points(runs: RunSet, learning: Learning | None = None) -> pd.DataFrame:
    """One row per completed job (``kind`` "job", ``t`` 1) and per blend of one (``kind`` "blend"),
    with the columns of ``POINT_COLUMNS`` and the jobs' seed columns. Points without a learning or
    forgetting value are kept (NaN); the figure and the findings drop them where they need both."""
    learning = learning or learning_of(runs)
    done = runs.done_jobs()
    if learning is None or done.empty:
        return pd.DataFrame(columns=POINT_COLUMNS)
    ctx_cols = context_columns(runs)
    rp, lr = replay_key(runs), lr_key(runs)
    info_by_job, rows = {}, []
    for _, row in done.iterrows():
        job = row["job"]
        info = _method(runs, row)
        replay = _num(row[rp] if rp and _present(row, rp) else _cfg(runs, job, rp))
        pull_key, neftune_key = MITIGATION_KEYS
        l2 = _num(_cfg(runs, job, pull_key), OFF_IS_ABSENT[pull_key])
        nef = _num(_cfg(runs, job, neftune_key), OFF_IS_ABSENT[neftune_key])
        lr_value = _num(row[lr] if lr and _present(row, lr) else _cfg(runs, job, lr), math.nan)
        info.update(replay=replay, l2=l2, neftune=nef, lr=lr_value,
                    variant=variant_label(info["method_label"], replay, l2, nef))
        info["base_learning"] = float(row[f"base_{learning.metric.removeprefix('final_')}"]) \
            if _present(row, f"base_{learning.metric.removeprefix('final_')}") else math.nan
        for s in runs.seeds:
            info[s] = row[s] if s in row else None
        info_by_job[job] = (info, row)
        rows.append(_point(runs, row, info, learning, ctx_cols, "job", 1.0))
    for _, b in runs.blends.iterrows() if not runs.blends.empty else ():
        if b["job"] not in info_by_job:
            continue
        info, job_row = info_by_job[b["job"]]
        merged = pd.concat([job_row[[c for c in ctx_cols if c in job_row]], b])
        merged = merged[~merged.index.duplicated(keep="last")]
        rows.append(_point(runs, merged, info, learning, ctx_cols, "blend", float(b["t"])))
    out = pd.DataFrame(rows)
    out["setting"] = [_setting_key(r) for _, r in out.iterrows()]
    for c in POINT_COLUMNS:
        if c not in out:
            out[c] = math.nan
    return out


def _setting_key(r: pd.Series) -> str:
    """Points that are replicates of one setting (they differ in the seed alone) share this key."""
    lr = "" if pd.isna(r["lr"]) else f" @ lr {fmt_value(key_of('lr'), r['lr'])}"
    blend = f" blend t={fmt_num(r['t'])}" if r["kind"] == "blend" else ""
    ctx = f" [{r['context']}]" if r["context"] else ""
    return f"{r['variant']}{lr}{blend}{ctx}"


def front_applies(runs: RunSet) -> bool:
    """Whether the sweep compares ways to fine-tune or keep what the base knew: a job that is not
    full fine-tuning, or that pulls toward the base or adds NEFTune noise, or any weight blend.
    Replay and learning rates alone do not count: the trade-off figure covers those sweeps."""
    done = runs.done_jobs()
    if done.empty:
        return False
    if not runs.blends.empty and runs.blends["job"].isin(set(done["job"])).any():
        return True
    for _, row in done.iterrows():
        info = _method(runs, row)
        if info["method"] != FULL:
            return True
        if any(_num(_cfg(runs, row["job"], k), OFF_IS_ABSENT[k]) > 0 for k in MITIGATION_KEYS):
            return True
    return False


# ======================================================================================
# Comparing groups of points under the noise standard
# ======================================================================================


def point_effect(a: pd.DataFrame, b: pd.DataFrame, what: str) -> Effect:
    """The effect ``b - a`` in ``what`` ("learning" or "forgetting_pct") of two groups of points
    (replicates of one setting each, or single points), under the noise standard."""
    a, b = a[a[what].notna()], b[b[what].notna()]
    va, vb = a[what].astype(float).tolist(), b[what].astype(float).tolist()
    se = f"se_{what}"
    if what == "learning" and a["items_learning"].notna().all() and b["items_learning"].notna().all():
        return effect(va, vb, items_a=a["items_learning"].tolist(), items_b=b["items_learning"].tolist())
    return effect(va, vb, se_a=a[se].tolist(), se_b=b[se].tolist())


def better_or_worse(e: Effect, min_effect: float, sign: int) -> int | None:
    """+1: ``b`` better than ``a`` beyond noise (by ``sign``: +1 higher is better, -1 lower is);
    -1: worse beyond noise; 0: no difference of ``min_effect`` or more; None: cannot tell."""
    real = judge(e, min_effect)
    if real is None:
        return None
    if real is False:
        return 0
    return 1 if sign * e.diff > 0 else -1


def best_setting(points: pd.DataFrame, learning: Learning) -> pd.DataFrame:
    """The points of the setting (learning rate) that learnt most, by the seed mean."""
    means = points.groupby("setting")["learning"].mean() * learning.sign
    if means.dropna().empty:
        return points.iloc[0:0]
    return points[points["setting"] == means.idxmax()]


def group_label(points: pd.DataFrame) -> str:
    """``LoRA r=4 @ lr 3e-3`` (and ``n = 2 seeds`` with replicates)."""
    first = points.iloc[0]
    text = first["setting"]
    return text + (f" (n = {len(points)} seeds)" if len(points) > 1 else "")


def fmt_level(points: pd.DataFrame, learning: Learning, *, share: bool = False) -> str:
    """Learning and forgetting of a group of points (seed means); with ``share``, the share of
    the weights it trained first, when the jobs recorded it."""
    text = (f"{learning.name} {learning.fmt(points['learning'].mean())}, forgetting "
            f"{points['forgetting_pct'].mean():+.1f}%")
    trained = points["trainable_share"].dropna() if "trainable_share" in points else points.iloc[0:0]
    if share and not trained.empty:
        text = f"trains {100 * float(trained.mean()):.3g}% of the weights; " + text
    return text


def seeds_of(runs: RunSet) -> Sequence[str]:
    return runs.seeds
