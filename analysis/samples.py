"""Which jobs' generations the report shows: the recommended job (or the best on the Pareto
front) first, then the jobs with the least and the most forgetting, on a few held-out prompts
(one per evaluation set first)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import pandas as pd

from analysis.collect import RunSet
from analysis.stats import pareto_front
from analysis.style import fmt_metric, setting_label
from analysis.verdicts import SUPPORTED, Finding

SAMPLE_PROMPTS = 3
MAX_SAMPLE_CHARS = 600


def _gain_metric(done: pd.DataFrame) -> str | None:
    """What the trade-off weighs against forgetting: the follow rate, else answer accuracy."""
    if "forgetting_pct" not in done:
        return None
    return next((m for m in ("final_follow_rate", "final_answer_acc")
                 if m in done and done[["forgetting_pct", m]].dropna().shape[0] >= 1), None)


def recommended_job(runs: RunSet, findings: Sequence[Finding] = ()) -> tuple[pd.Series, str] | None:
    """The job to show first: one of the recommended setting when the findings name one, else
    the best job on the Pareto front (the least forgetting among the front's jobs that learnt
    the format, i.e. reach half the best follow rate and 10 points over the base model)."""
    done = runs.done_jobs()
    if done.empty:
        return None
    with_samples = done[done["job"].isin(set(runs.samples["job"]))] if not runs.samples.empty else done
    pool = with_samples if not with_samples.empty else done
    rec = next((f for f in findings if f.key == "recommended_setting" and f.verdict == SUPPORTED), None)
    best = rec.numbers.get("best") if rec is not None else None
    if isinstance(best, dict) and best:
        match = pool
        for col, value in best.items():
            if col in match:
                match = match[match[col] == value]
        if not match.empty:
            return match.iloc[0], "recommended setting"
    metric = _gain_metric(pool)
    if metric is None:
        return None
    scored = pool.dropna(subset=["forgetting_pct", metric])
    if scored.empty:
        return None
    front = pareto_front(scored, maximize=[metric], minimize=["forgetting_pct"]).sort_values("forgetting_pct")
    base_col = metric.replace("final_", "base_", 1)
    base = float(scored[base_col].mean()) if base_col in scored and scored[base_col].notna().any() else 0.0
    need = max(0.5 * float(scored[metric].max()), base + 0.10)
    learnt = front[front[metric] >= need]
    pick = learnt.iloc[0] if not learnt.empty else front.sort_values(metric, ascending=False).iloc[0]
    return pick, "best on the Pareto front"


def pick_samples(runs: RunSet, findings: Sequence[Finding] = ()) -> list[dict[str, Any]]:
    """Up to ``SAMPLE_PROMPTS`` prompts, each with the base output and the outputs of the
    recommended job (``recommended_job``) and two contrasting completed jobs (lowest and
    highest forgetting)."""
    if runs.samples.empty:
        return []
    done = runs.done_jobs()
    with_samples = done[done["job"].isin(set(runs.samples["job"]))]
    if with_samples.empty:
        return []
    picks: list[tuple[pd.Series, str]] = []
    chosen_job = recommended_job(runs, findings)
    if chosen_job is not None and chosen_job[0]["job"] in set(with_samples["job"]):
        picks.append(chosen_job)
    if "forgetting_pct" in with_samples and with_samples["forgetting_pct"].notna().any():
        ordered = with_samples.dropna(subset=["forgetting_pct"]).sort_values("forgetting_pct")
        picks += [(ordered.iloc[0], "least forgetting"), (ordered.iloc[-1], "most forgetting")]
    else:
        picks.append((with_samples.iloc[0], ""))
    seen: set[str] = set()
    picks = [(j, why) for j, why in picks if not (j["job"] in seen or seen.add(j["job"]))]
    first = runs.samples[runs.samples["job"] == picks[0][0]["job"]].drop_duplicates("prompt")
    # One prompt per evaluation set first (answer, knowledge, follow), then the rest in order.
    sets = first["set"].fillna("").tolist() if "set" in first else [""] * len(first)
    order = sorted(range(len(first)), key=lambda i: (sets[:i].count(sets[i]), i))
    chosen = first.iloc[order[:SAMPLE_PROMPTS]]
    out = []
    for _, s in chosen.iterrows():
        tuned = []
        for j, why in picks:
            rows = runs.samples[(runs.samples["job"] == j["job"]) & (runs.samples["prompt"] == s["prompt"])]
            if rows.empty:
                continue
            label = setting_label(j, runs.swept) if runs.swept else f"job {j['job']}"
            if "forgetting_pct" in j and pd.notna(j["forgetting_pct"]):
                label += f" (forgetting {fmt_metric('forgetting_pct', j['forgetting_pct'])})"
            if why:
                label = f"{why} — {label}"
            tuned.append((label, _clip(rows.iloc[0]["sft"])))
        title = " / ".join(t for t in (str(s.get("set") or ""), str(s["task"] or "")) if t) or "prompt"
        out.append({"task": title, "prompt": _clip(str(s["prompt"]).rstrip("\n")), "reference": _clip(s["reference"]),
                    "base": _clip(s["base"]), "tuned": tuned})
    return out


def _clip(text: Any) -> str:
    text = "" if text is None else str(text)
    return text if len(text) <= MAX_SAMPLE_CHARS else text[:MAX_SAMPLE_CHARS] + " …[cut]"


__all__ = ["pick_samples", "recommended_job", "SAMPLE_PROMPTS", "MAX_SAMPLE_CHARS"]
