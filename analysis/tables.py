"""The report's tables of numbers: the summary per setting (the base model's rows first, one per
base when a sweep has several; own-data sweeps with their free-form metrics and paired changes) and
the follow-rate / forgetting Pareto front. Pure functions of the collected runs."""

from __future__ import annotations

from typing import Any

import pandas as pd

from analysis.collect import RunSet
from analysis.dataview import absent_reasons, is_free_form
from analysis.stats import mean_ci, pareto_front, strata
from analysis.style import col_name, fmt_metric, fmt_num, fmt_value

SUMMARY_METRICS = ("forgetting_pct", "final_follow_rate", "final_answer_acc", "final_knowledge_mc_acc",
                   "final_response_loss", "final_raw_loss")


def base_rows(done: pd.DataFrame, params: list[str], groups: list, n_labels: int, show_n: bool
              ) -> list[tuple[list[str], pd.DataFrame]]:
    """The base model's rows of a summary table, as (label cells, the jobs tuned from it): one row
    when the jobs share a base (or do not say which), else one per base model (a sweep over the
    tokenizer, the model or the pre-training has several), labelled by the settings that tell
    the bases apart and in the order of the tuned rows, so no base's numbers are averaged with
    another's."""
    keys = done["base_model"].dropna().unique() if "base_model" in done else []
    if len(keys) <= 1:
        parts = [(None, done)]
    else:
        first_row = {k: min(i for i, (_, part) in enumerate(groups) if (part["base_model"] == k).any())
                     for k in keys}
        parts = [(k, done[done["base_model"] == k]) for k in sorted(keys, key=first_row.get)]
    rows = []
    for key, jobs in parts:
        values = []
        for c in params:
            same = key is not None and jobs[c].nunique(dropna=False) == 1 and done[c].nunique(dropna=False) > 1
            values.append(fmt_value(c, jobs[c].iloc[0]) if same else "")
        if not params:
            values = [""] * n_labels
        first = "base model" + (f": {values[0]}" if values and values[0] else "")
        rows.append(([first] + values[1:] + (["—"] if show_n else []), jobs))
    return rows


def summary_table(runs: RunSet) -> tuple[list[str], list[list[str]]]:
    """Per setting (seed-averaged): parameters, n, and the final metrics; the base model first.
    On own data (free-form answers) the free-form metrics follow their own rules
    (``_free_form_cell``)."""
    done = runs.done_jobs()
    if is_free_form(done):
        return _free_form_table(runs, done)
    metrics = [m for m in SUMMARY_METRICS if m in done and done[m].notna().any()]
    params = runs.params
    groups = strata(done, params)
    show_n = any(len(part) > 1 for _, part in groups)
    label_cols = [col_name(c) for c in params] or ["setting"]
    header = label_cols + (["n"] if show_n else []) + [_metric_header(m) for m in metrics]

    rows = []
    for cells, jobs in base_rows(done, params, groups, len(label_cols), show_n):
        for m in metrics:
            b = m.replace("final_", "base_", 1)
            ok = m.startswith("final_") and b in jobs and jobs[b].notna().any()
            cells.append(fmt_metric(b, jobs[b].mean()) if ok else "—")
        rows.append(cells)
    for key, part in groups:
        row = [fmt_value(c, key[c]) for c in params] or [f"all {len(part)} jobs"]
        if show_n:
            row.append(str(len(part)))
        for m in metrics:
            mc = mean_ci(part[m])
            row.append(fmt_metric(m, mc.mean, ci=mc.half if mc.n >= 2 else None))
        rows.append(row)
    return header, rows


#: The own-data table's metrics, in order: follow rate (of the prompts whose reference fits),
#: ROUGE-L and response nats/byte (with the paired change against the base), forgetting.
FREE_FORM_COLUMNS = ("final_follow_rate", "final_rouge_l", "final_response_nats_per_byte", "forgetting_pct",
                     "final_raw_nats_per_byte", "final_raw_loss")
_FREE_FORM_HEADERS = {"final_follow_rate": "follow rate (of fitting prompts)",
                      "final_rouge_l": "ROUGE-L (paired change vs base [95%])",
                      "final_response_nats_per_byte": "response nats/byte (paired change vs base [95%])",
                      "forgetting_pct": "forgetting [95%]",
                      "final_raw_nats_per_byte": "held-out text nats/byte", "final_raw_loss": "raw-text loss"}
NOT_MEASURED = "not measured"


def _signed3(v: float) -> str:
    return f"{v:+.3f}"


def _free_form_value(m: str, v: Any, n: Any = None) -> str:
    if pd.isna(v):
        return "—"
    if m.endswith("follow_rate"):
        return fmt_metric(m, v) + (f" of {fmt_num(n)}" if n is not None and not pd.isna(n) else "")
    if m.endswith(("rouge_l", "nats_per_byte")):
        return f"{float(v):.3f}"
    return fmt_metric(m, v)


def _free_form_cell(m: str, part: pd.DataFrame) -> str:
    """One job: its value with the interval it recorded (the paired change for ROUGE-L and
    nats/byte, the window interval for forgetting); several (seeds): mean ± 95% CI over them."""
    vals = part[m].dropna() if m in part else pd.Series(dtype=float)
    if vals.empty:  # measured in other settings, not in this one: say so when the jobs said why
        why = f"not_measured_{m.replace('final_', '', 1)}"
        return NOT_MEASURED if why in part and part[why].notna().any() else "—"
    if len(vals) > 1:
        mc = mean_ci(vals)
        if m.endswith("follow_rate") or m == "forgetting_pct":
            return fmt_metric(m, mc.mean, ci=mc.half)
        return f"{mc.mean:.3f} ± {mc.half:.3f}"
    row = part.loc[vals.index[0]]
    if m == "forgetting_pct":
        lo, hi = row.get("forgetting_lo"), row.get("forgetting_hi")
        ci = f" [{lo:+.1f}, {hi:+.1f}]" if lo is not None and not pd.isna(lo) else ""
        return fmt_metric(m, row[m]) + ci
    if m.endswith("follow_rate"):
        return _free_form_value(m, row[m], row.get("final_follow_rate_n"))
    key = m.replace("final_", "paired_", 1)
    cell = _free_form_value(m, row[m])
    if key in row and not pd.isna(row[key]):
        cell += f" ({_signed3(row[key])} [{_signed3(row[key + '_lo'])}, {_signed3(row[key + '_hi'])}])"
    return cell


def _free_form_table(runs: RunSet, done: pd.DataFrame) -> tuple[list[str], list[list[str]]]:
    absent = absent_reasons(done)
    metrics = [m for m in FREE_FORM_COLUMNS
               if (m in done and done[m].notna().any()) or m.replace("final_", "", 1) in absent]
    params = runs.params
    groups = strata(done, params)
    show_n = any(len(part) > 1 for _, part in groups)
    label_cols = [col_name(c) for c in params] or ["setting"]
    header = label_cols + (["n"] if show_n else []) + [_FREE_FORM_HEADERS[m] for m in metrics]
    rows = []
    for base, jobs in base_rows(done, params, groups, len(label_cols), show_n):
        for m in metrics:
            b = m.replace("final_", "base_", 1)
            if m.replace("final_", "", 1) in absent:
                base.append(NOT_MEASURED)
            elif m.startswith("final_") and b in jobs and jobs[b].notna().any():
                n = jobs[b + "_n"].mean() if b + "_n" in jobs else None
                base.append(_free_form_value(b, jobs[b].mean(), n if m.endswith("follow_rate") else None))
            else:
                base.append("—")
        rows.append(base)
    for key, part in groups:
        row = [fmt_value(c, key[c]) for c in params] or [f"all {len(part)} jobs"]
        if show_n:
            row.append(str(len(part)))
        row += [NOT_MEASURED if m.replace("final_", "", 1) in absent else _free_form_cell(m, part) for m in metrics]
        rows.append(row)
    return header, rows


def pareto_table(runs: RunSet) -> tuple[list[str], list[list[str]], str] | None:
    """Jobs on the follow-rate (else answer-accuracy) vs forgetting Pareto front."""
    done = runs.done_jobs()
    metric = next((m for m in ("final_follow_rate", "final_answer_acc")
                   if m in done and done[["forgetting_pct", m]].dropna().shape[0] >= 2), None) \
        if "forgetting_pct" in done else None
    if metric is None:
        return None
    front = pareto_front(done, maximize=[metric], minimize=["forgetting_pct"]).sort_values("forgetting_pct")
    cols = runs.swept
    metrics = ["forgetting_pct", metric] + [m for m in ("final_answer_acc", "final_response_loss")
                                            if m != metric and m in done and done[m].notna().any()]
    # A job is named by its swept values; its directory name only when nothing was swept.
    header = ([col_name(c) for c in cols] or ["job"]) + [_metric_header(m) for m in metrics]
    rows = [([fmt_value(c, r[c]) for c in cols] or [str(r["job"])]) + [fmt_metric(m, r[m]) for m in metrics]
            for _, r in front.iterrows()]
    return header, rows, _metric_header(metric)


def _metric_header(m: str) -> str:
    return {"forgetting_pct": "forgetting", "final_follow_rate": "follow rate", "final_answer_acc": "answer acc.",
            "final_knowledge_mc_acc": "knowledge MC acc.", "final_response_loss": "response loss",
            "final_raw_loss": "raw-text loss"}.get(m, m)
