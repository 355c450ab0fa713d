"""Findings for the lesson's claims about how much and how long to train, and what is learnt:
memorisation over epochs, data size against quality, obeyed system prompts. (Second turns are
judged once, by ``findings.experiments.answers_second_turn``.)

Each finding is computed only when its sweep swept its axis and its jobs report its metric. They
read only the collected tables (the item counts each job recorded, ``items_*`` and
``format_obeyed_<style>``), never a job's files.
Verdicts come from intervals over the scored items: a Wilson 95% interval per share of items,
and Newcombe's interval (from the two Wilson intervals) for a difference of two shares. With
seeds, a setting's items are pooled over its seeds. An effect counts when its interval excludes
zero; no effect counts when the interval lies within :data:`NO_EFFECT` of zero.
"""

from __future__ import annotations

import math
from typing import Any

import pandas as pd

from analysis.collect import RunSet
from analysis.findings.common import config_value, has_values
from analysis.roles import key_of
from analysis.noise import Share, difference, share
from analysis.stats import strata
from analysis.verdicts import INCONCLUSIVE, NOT_MEASURABLE, NOT_SUPPORTED, SUPPORTED, Decision, Finding
from analysis.style import setting_label
from sft_sweep.data.world.items import FORMAT_STYLES

#: A difference of shares whose interval lies within this of zero counts as no effect. Not the
#: noise standard's 2-point smallest effect of a rate (``MIN_EFFECT["rate"]``): a Newcombe
#: interval fits within 2 points only with about 3,000 items a side, so at these experiments'
#: 100-250 items no absence could ever be called, and the verdicts the tests pin would change
#: (docs/report.md says why in full).
NO_EFFECT = 0.10
#: Share of the full set's answer accuracy that counts as "enough data".
ENOUGH = 0.9

EPOCHS, REPLAY = key_of("epochs"), key_of("replay")
SIZE, NOISE = key_of("data_size"), key_of("noise")
SYS_FRACTION = key_of("system_prompts")


def _diff_text(d: tuple[float, float, float]) -> str:
    return f"{100 * d[0]:+.0f} points (95% CI {100 * d[1]:+.0f} to {100 * d[2]:+.0f})"


def _diff_decision(what: str, d: tuple[float, float, float], a: Share, b: Share) -> Decision:
    """A difference of pooled shares as what decided a verdict (printed as ``_diff_text``)."""
    return Decision(what, f"{100 * d[0]:+.0f} points", f"{100 * d[1]:+.0f}", f"{100 * d[2]:+.0f}",
                    f"{a.n} vs {b.n} items", "item noise")


def _share_decision(what: str, s: Share, target: str = "") -> Decision:
    lo, hi = s.interval
    return Decision(what, f"{100 * s.p:.0f}%", f"{100 * lo:.0f}%", f"{100 * hi:.0f}%", f"{s.n} items",
                    "item noise", target)


def _others(runs: RunSet, *axes: str) -> list[str]:
    return [c for c in runs.params if c not in axes]


def _groups(df: pd.DataFrame, cols: list[str]):
    for _, part in strata(df, cols):
        yield (setting_label(part.iloc[0], cols) if cols else "all jobs"), part


def _pooled(part: pd.DataFrame, rate_col: str, n_of) -> Share | None:
    """Items of all the jobs in ``part`` (seeds of one setting) pooled; None if any is missing."""
    total = Share(0, 0)
    for _, row in part.iterrows():
        s = share(row.get(rate_col), n_of(row))
        if s is None:
            return None
        total = total + s
    return total if total.n else None


def _config(runs: RunSet, row: pd.Series, key: str, default: Any = None) -> Any:
    return config_value(runs, row.get("job"), key, default)


def _n_answer_items(row: pd.Series) -> Any:
    """Held-out questions the answer metrics were scored on (the jobs table's ``items_answer``)."""
    return row.get("items_answer")


# ---------------------------------------------------------------------------- memorisation

def memorisation_over_epochs(runs: RunSet) -> Finding | None:
    """Claim: from some number of epochs on, the model reproduces its training responses more
    often than it gives the right response to new prompts."""
    key = "memorisation_over_epochs"
    claim = ("Training more epochs on a small set makes the model reproduce its training answers "
             "verbatim more often than it answers new questions (memorisation)")
    tr, ho = "final_memorised_exact_train", "final_memorised_exact_heldout"
    if EPOCHS not in runs.params:
        return None
    done = runs.done_jobs()
    if not (has_values(done, tr) and has_values(done, ho)):
        return Finding(key, claim, NOT_MEASURABLE, "no completed job reports the memorisation "
                       "metrics (memorised_exact_train / memorised_exact_heldout).")
    others = _others(runs, EPOCHS)
    parts, onsets, small_everywhere, any_effect, measured = [], {}, True, False, []
    for label, group in _groups(done, others):
        rows, onset = [], None
        for epochs, part in sorted(group.groupby(EPOCHS), key=lambda t: float(t[0])):
            a = _pooled(part, tr, lambda r: r.get("final_memorised_n_train"))
            b = _pooled(part, ho, lambda r: r.get("final_memorised_n_heldout"))
            if a is None or b is None:
                continue
            d = difference(a, b)
            gap = part["final_memorised_loss_gap"].mean() if has_values(part, "final_memorised_loss_gap") else math.nan
            rows.append((int(epochs), d))
            measured.append((label, int(epochs), _diff_decision(
                f"reproduced minus answered, {label}, {int(epochs)} epochs" if others else
                f"reproduced minus answered, {int(epochs)} epochs", d, a, b), d))
            loss = f", loss gap {gap:+.3f}" if not math.isnan(gap) else ""
            parts.append(f"{label}, {int(epochs)} epochs: training answers reproduced {a.text()}, held-out "
                         f"{b.text()}, gap {_diff_text(d)}{loss}")
            small_everywhere &= d[2] < NO_EFFECT and d[1] > -NO_EFFECT
        # the onset: the smallest epoch count from which every larger one shows the gap
        for i, (epochs, d) in enumerate(rows):
            if all(dd[1] > 0 for _, dd in rows[i:]):
                onset = epochs
                break
        if onset is not None:
            onsets[label] = onset
            any_effect = True
    evidence = "; ".join(parts) + "."
    numbers = {"onset_epoch": onsets}
    # what decides: the gap at the first onset, else the gap whose interval reaches highest
    onset = next(((lab, e) for lab, e in onsets.items()), None)
    decided = next((dec for lab, e, dec, _ in measured if (lab, e) == onset), None) if onset else \
        max(measured, key=lambda m: m[3][2])[2] if measured else None
    if any_effect:
        where = ", ".join(f"{lab}: from {e} epochs" for lab, e in onsets.items())
        return Finding(key, claim, SUPPORTED, f"the training answers are reproduced more than held-out "
                       f"ones are answered, beyond the 95% interval, {where}. {evidence}", numbers, decided)
    if small_everywhere:
        return Finding(key, claim, NOT_SUPPORTED, f"at no epoch count does the gap exceed "
                       f"{100 * NO_EFFECT:g} points (every interval within it). {evidence}", numbers, decided)
    return Finding(key, claim, INCONCLUSIVE, f"no epoch count from which the gap's interval stays above "
                   f"zero, nor one that bounds it under {100 * NO_EFFECT:g} points. {evidence}", numbers, decided)


# ---------------------------------------------------------------------------- data size

def _size(runs: RunSet, row: pd.Series) -> int:
    n = int(_config(runs, row, SIZE, 0) or 0)
    return n if n else int(_config(runs, row, key_of("train_conversations"), 450))


def _size_table(runs: RunSet, done: pd.DataFrame) -> dict[tuple, dict[int, dict[str, Share]]]:
    """(noise, other settings) -> size -> {"answer": Share, "follow": Share}."""
    out: dict[tuple, dict[int, dict[str, Share]]] = {}
    others = _others(runs, SIZE)
    done = done.assign(_size=[_size(runs, r) for _, r in done.iterrows()])
    for _, part in done.groupby(["_size"] + others, dropna=False, sort=True):
        row = part.iloc[0]
        ans = _pooled(part, "final_answer_acc", _n_answer_items)
        fol = _pooled(part, "final_follow_rate", _n_answer_items)
        if ans is None:
            continue
        key = tuple((c, row[c]) for c in others)
        out.setdefault(key, {})[int(row["_size"])] = {"answer": ans, **({"follow": fol} if fol else {})}
    return out


def _key_label(key: tuple) -> str:
    return ", ".join(setting_label({c: v}, [c]) for c, v in key) or "all jobs"


def answers_vs_data_size(runs: RunSet) -> list[Finding]:
    """The follow / answer curve against the number of training conversations; the smallest size
    that reaches 90% of the full set's answer accuracy; N clean against 3N noisy."""
    if SIZE not in runs.params:
        return []
    done = runs.done_jobs()
    if not has_values(done, "final_answer_acc"):
        return []
    table = _size_table(runs, done)
    curve_parts, enough_parts, enough_verdicts, numbers, decisions = [], [], [], {}, []
    for key, by_size in table.items():
        sizes = sorted(by_size)
        curve_parts.append(f"{_key_label(key)}: " + ", ".join(
            f"{s}: answer {by_size[s]['answer'].text()}"
            + (f", follow {by_size[s]['follow'].text()}" if "follow" in by_size[s] else "") for s in sizes))
        if len(sizes) < 2:
            continue  # nothing smaller to compare with the full set
        full = sizes[-1]
        target = ENOUGH * by_size[full]["answer"].p
        surely = [s for s in sizes[:-1] if by_size[s]["answer"].interval[0] >= target]
        maybe = [s for s in sizes[:-1] if by_size[s]["answer"].interval[1] >= target]
        point = [s for s in sizes if by_size[s]["answer"].p >= target]
        numbers[_key_label(key)] = {"smallest_at_point": point[0] if point else None,
                                    "smallest_surely": surely[0] if surely else None}
        enough_parts.append(
            f"{_key_label(key)}: 90% of the {full}-conversation accuracy is {100 * target:.0f}%; "
            f"reached at the point estimate from {point[0] if point else '-'} conversations, with its "
            f"whole interval from {surely[0] if surely else 'no smaller size'}")
        enough_verdicts.append(SUPPORTED if surely else (INCONCLUSIVE if maybe else NOT_SUPPORTED))
        # what decides: the smallest size surely there, else the smallest that may be
        size = (surely or maybe or sizes[-2:-1])[0]
        decisions.append(_share_decision(f"answer acc., {size} conversations ({_key_label(key)})",
                                         by_size[size]["answer"], f">= {100 * target:.0f}%"))
    # the curve is a measurement: SUPPORTED once it has two sizes to compare in some setting
    curve = Finding("answers_vs_data_size", "Answer accuracy and instruction following against the number "
                    "of training conversations",
                    SUPPORTED if any(len(v) >= 2 for v in table.values()) else INCONCLUSIVE,
                    "measured curve (Wilson 95% intervals): " + "; ".join(curve_parts) + ".",
                    {"sizes": {_key_label(k): sorted(v) for k, v in table.items()}})
    verdict = (SUPPORTED if enough_verdicts and all(v == SUPPORTED for v in enough_verdicts)
               else NOT_SUPPORTED if enough_verdicts and all(v == NOT_SUPPORTED for v in enough_verdicts)
               else INCONCLUSIVE)
    enough = Finding("few_examples_suffice", "A fraction of the training set reaches 90% of the full "
                     "set's answer accuracy", verdict, "; ".join(enough_parts) + ".", numbers,
                     decisions[0] if len(decisions) == 1 else None)
    return [curve, enough] + [f for f in (_clean_beats_noisy(table),) if f is not None]


def _clean_beats_noisy(table: dict[tuple, dict[int, dict[str, Share]]]) -> Finding | None:
    """N clean conversations against 3N with the planted low-quality responses."""
    key, claim = "clean_beats_noisy", ("N clean training conversations answer better than 3N of which "
                                       "30% have planted low-quality responses")
    clean = {k: v for k, v in table.items() if dict(k).get(NOISE, 0) in (0, 0.0)}
    pairs, parts, decisions = [], [], []
    for ck, by_size in clean.items():
        rest = tuple((c, v) for c, v in ck if c != NOISE)
        for nk, noisy in table.items():
            if nk == ck or tuple((c, v) for c, v in nk if c != NOISE) != rest:
                continue
            for n in sorted(by_size):
                if 3 * n in noisy:
                    d = difference(by_size[n]["answer"], noisy[3 * n]["answer"])
                    pairs.append(d)
                    decisions.append(_diff_decision(f"answer acc., {n} clean minus {3 * n} noisy", d,
                                                    by_size[n]["answer"], noisy[3 * n]["answer"]))
                    parts.append(f"{n} clean {by_size[n]['answer'].text()} vs {3 * n} with "
                                 f"{_key_label(((NOISE, dict(nk)[NOISE]),))} "
                                 f"{noisy[3 * n]['answer'].text()}: {_diff_text(d)}")
    if not pairs:
        return None
    above, below = [d for d in pairs if d[1] > 0], [d for d in pairs if d[2] < 0]
    if above and not below:
        verdict = SUPPORTED
    elif below and not above:
        verdict = NOT_SUPPORTED
    elif not above and not below and all(abs(d[1]) < NO_EFFECT and abs(d[2]) < NO_EFFECT for d in pairs):
        verdict = NOT_SUPPORTED
    else:
        verdict = INCONCLUSIVE
    lead = {SUPPORTED: f"the clean set answers better beyond the interval in {len(above)} of {len(pairs)} pairs",
            NOT_SUPPORTED: "no pair where the clean set is ahead beyond the interval",
            INCONCLUSIVE: f"clean ahead in {len(above)}, noisy ahead in {len(below)} of {len(pairs)} pairs "
                          "beyond the interval"}[verdict]
    # what decides: the pair furthest in the verdict's direction
    sign = -1 if verdict == NOT_SUPPORTED and below else 1
    decided = max(zip(pairs, decisions), key=lambda p: sign * p[0][0])[1]
    return Finding(key, claim, verdict, f"{lead}: " + "; ".join(parts) + ".",
                   {"pairs": len(pairs), "clean_ahead": len(above), "noisy_ahead": len(below)}, decided)


# ---------------------------------------------------------------------------- system prompts

def format_by_style(row: pd.Series) -> dict[str, Share] | None:
    """Obeyed system prompts per format, as the job counted them (summary.json's ``scored``, read
    into ``format_obeyed_<style>`` of ``items_format_<style>``); None for a job that did not
    record them (one from before ``scored``)."""
    out = {}
    for st in FORMAT_STYLES:
        k, n = row.get(f"format_obeyed_{st}"), row.get(f"items_format_{st}")
        if k is not None and n is not None and not pd.isna(k) and not pd.isna(n) and int(n) > 0:
            out[st] = Share(int(k), int(n))
    return out or None


def _pooled_styles(part: pd.DataFrame) -> dict[str, Share] | None:
    total: dict[str, Share] = {}
    for _, row in part.iterrows():
        by = format_by_style(row)
        if by is None:
            return None
        for st, s in by.items():
            total[st] = total.get(st, Share(0, 0)) + s
    return total or None


#: Why a setting's per-format shares are absent: its jobs did not record them.
NO_STYLES = ("per format: not measurable, a job did not record its per-format counts "
             "(summary.json's scored, jobs from before it)")


def obeys_system_prompts(runs: RunSet) -> Finding | None:
    """Claim: the tuned model obeys format-setting system prompts (>= 80% of held-out items)."""
    key = "obeys_system_prompts"
    claim = ("The tuned model answers in the format its system prompt sets (>= 80% of held-out items, "
             "and of each format where the jobs counted each format)")
    col = "final_system_format_acc"
    done = runs.done_jobs()
    if not has_values(done, col):
        return None
    n_of = lambda r: r.get("items_system_format")  # noqa: E731
    parts, best, best_styles, lacking = [], None, None, False
    for label, part in _groups(done[done[col].notna()], runs.params):
        s = _pooled(part, col, n_of)
        if s is None:
            continue
        styles = _pooled_styles(part)
        lacking |= styles is None
        per = (" (" + ", ".join(f"{st} {v.text()}" for st, v in styles.items()) + ")") if styles else ""
        parts.append(f"{label}: {s.text()}{per}")
        if best is None or s.p > best.p:
            best, best_styles = s, styles
    if best is None:
        return Finding(key, claim, NOT_MEASURABLE, "no job reports its number of system-prompt items.")
    if SYS_FRACTION in runs.params:  # trained with system prompts against without
        frac = done[SYS_FRACTION].astype(float)
        with_sp = _pooled(done[(frac > 0) & done[col].notna()], col, n_of) if (frac > 0).any() else None
        without = _pooled(done[(frac == 0) & done[col].notna()], col, n_of) if (frac == 0).any() else None
        if with_sp and without:
            parts.append(f"trained with system prompts minus without: {_diff_text(difference(with_sp, without))}")
    lo, hi = best.interval
    verdict = SUPPORTED if lo >= 0.8 else NOT_SUPPORTED if hi < 0.8 else INCONCLUSIVE
    # each format on its own: a model that obeys two formats and ignores the third does not
    # obey its system prompts, however high the pooled share
    if best_styles:
        if any(v.interval[1] < 0.8 for v in best_styles.values()):
            verdict = NOT_SUPPORTED
        elif verdict == SUPPORTED and any(v.p < 0.8 for v in best_styles.values()):
            verdict = INCONCLUSIVE
    worst_style = min(best_styles.items(), key=lambda kv: kv[1].p) if best_styles else None
    decided = _share_decision(f"format obeyed, {worst_style[0]} (best setting)", worst_style[1], ">= 80%") \
        if worst_style and verdict != SUPPORTED and any(v.p < 0.8 for v in best_styles.values()) else \
        _share_decision("format obeyed, best setting", best, ">= 80%")
    if lacking:
        parts.append(NO_STYLES)
    return Finding(key, claim, verdict, "; ".join(parts) + ".", {"best": best.p}, decided)


def lesson_findings(runs: RunSet) -> list[Finding]:
    out = [memorisation_over_epochs(runs), obeys_system_prompts(runs)]
    return [f for f in out if f is not None] + answers_vs_data_size(runs)
