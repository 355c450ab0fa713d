"""What the findings share: the smallest effects the report counts, an effect between two groups
of jobs under the noise standard (``analysis.noise``) and how it is written, and the names of
metrics and roles in sentences."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import pandas as pd

from analysis.collect import RunSet
from analysis.noise import Effect, effect, items_column, se_column
from analysis.roles import role_noun
from analysis.stats import mean_ci
from analysis.style import AGGRESSIVE_BAND, fmt_metric, setting_label
from analysis.verdicts import Decision


def has_values(df: pd.DataFrame, col: str) -> bool:
    """Whether ``df`` has the column ``col`` with at least one value."""
    return col in df and df[col].notna().any()


def config_value(runs: RunSet, job: str, key: str, default: Any = None) -> Any:
    """The value of the config key ``key`` in the job ``job`` (the sweep's constant when the job's
    own config lacks it)."""
    return (runs.configs.get(job) or {}).get(key, runs.constants.get(key, default))


#: Smallest difference that counts as an effect, per metric (units as stored).
MIN_EFFECT = {"forgetting_pct": 1.0, "rate": 0.02, "loss": 0.02}
#: Forgetting (%) above which a setting is "too aggressive".
FORGETTING_BUDGET = AGGRESSIVE_BAND[0]
#: Knowledge-probe gain (fraction) that would count as "SFT added knowledge".
KNOWLEDGE_GAIN = 0.05


def min_effect(metric: str) -> float:
    if metric == "forgetting_pct":
        return MIN_EFFECT["forgetting_pct"]
    return MIN_EFFECT["loss"] if metric.endswith("loss") else MIN_EFFECT["rate"]


def min_effect_text(metric: str) -> str:
    m = min_effect(metric)
    if metric == "forgetting_pct":
        return f"the {m:g}-point minimum effect"
    return f"the {100 * m:g}-point minimum effect" if not metric.endswith("loss") else f"the {m:g} minimum effect"


def job_effect(a: pd.DataFrame, b: pd.DataFrame, metric: str) -> Effect:
    """The effect in ``metric`` from jobs ``a`` to jobs ``b`` under the noise standard."""
    col = items_column(metric)
    a, b = a[a[metric].notna()], b[b[metric].notna()]
    items = lambda part: part[col].tolist() if col in part else None  # noqa: E731
    se_col = se_column(metric)
    se = lambda part: part[se_col].tolist() if se_col in part else None  # noqa: E731
    return effect(part_values(a, metric), part_values(b, metric), items_a=items(a), items_b=items(b),
                  se_a=se(a), se_b=se(b))


def part_values(part: pd.DataFrame, metric: str) -> list[float]:
    return part[metric].astype(float).tolist() if metric in part else []


def effect_text(metric: str, e: Effect) -> str:
    return e.describe(**effect_units(metric))


def effect_units(metric: str) -> dict[str, Any]:
    if metric == "forgetting_pct":
        return {"unit": " points of forgetting"}
    if metric.endswith("loss"):
        return {"digits": 3}
    return {"scale": 100, "unit": " points"}


def decision_of(metric: str, e: Effect, where: str, name: str | None = None) -> Decision:
    """The effect ``e`` in ``metric`` as what decided a verdict, measured ``where``."""
    return e.decision(f"{name or metric_name(metric)}, {where}", **effect_units(metric))


def setting_or_all(setting: Any, params: Sequence[str]) -> str:
    return setting_label(setting, params) if params else "all jobs"


def col_name_for(role: str) -> str:
    return role_noun(role)


def metric_name(metric: str) -> str:
    return {"forgetting_pct": "forgetting", "final_follow_rate": "follow rate",
            "final_response_loss": "held-out response loss", "final_answer_acc": "answer accuracy"}.get(
        metric, metric)


def fmt_level(metric: str, values: list[float], with_ci: bool) -> str:
    m = mean_ci(values)
    if with_ci and m.n >= 2:
        return f"{fmt_metric(metric, m.mean, ci=m.half)} (n={m.n})"
    return fmt_metric(metric, m.mean) + (f" (n={m.n})" if with_ci else "")
