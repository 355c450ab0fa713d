"""Findings of a sweep over tokenizers (experiment=tokenizers), per byte of text, never per token
(``analysis.per_byte`` keeps per-token losses out of such a sweep's tables).

:func:`tokenizer_findings` (registered): which tokenizer gives the better base at equal
  pre-training time (held-out bits per byte, with each base's standard error over the held-out
  windows), and the better tuned model by follow rate (held-out items), ROUGE-L and response nats
  per byte (each job's interval over the held-out answers; seeds when a tokenizer has several).
  They appear only when the tokenizer is the one setting the sweep varied (seeds aside), and every
  call goes through the noise standard (``analysis.noise``).
"""

from __future__ import annotations

import dataclasses
import math

import pandas as pd

from analysis.collect import RunSet
from analysis.noise import Z95, effect, judge
from analysis.per_byte import NAME, VOCAB, _num, pretrain_steps, tokenizer_labels
from analysis.verdicts import INCONCLUSIVE, NOT_MEASURABLE, NOT_SUPPORTED, SUPPORTED, Decision, Finding

LN2 = math.log(2)
#: Smallest effects of interest: held-out text (nats per byte), follow rate, ROUGE-L, response nats per byte.
#: The tokenizer's settings: a tokenizer sweep varies these alone (seeds aside).
TOKENIZER_SETTINGS = (NAME, VOCAB)
MIN_BASE_NATS = 0.02
TUNED = (("final_follow_rate", +1, 0.02, "follow rate"),
         ("final_rouge_l", +1, 0.02, "ROUGE-L"),
         ("final_response_nats_per_byte", -1, 0.02, "response nats per byte"))


def _tokenizer_sweep(runs: RunSet) -> pd.DataFrame | None:
    """The completed jobs with a ``tokenizer`` column, when the tokenizer is the one setting that
    varies (seeds aside) and at least two tokenizers completed; else None."""
    done = runs.done_jobs()
    if done.empty or any(c not in TOKENIZER_SETTINGS for c in runs.params):
        return None
    labels = tokenizer_labels(runs)
    done = done.assign(tokenizer=[labels.get(j, "bytes") for j in done["job"]])
    return done if done["tokenizer"].nunique() >= 2 else None


def _order(labels) -> list[str]:
    def key(t: str) -> tuple[int, int]:
        return (0, 0) if t == "bytes" else (1, int(t.split()[-1]) if t.split()[-1].isdigit() else 0)

    return sorted(set(labels), key=key)


def _bits(v: float) -> float:
    return v / LN2


def _base_finding(runs: RunSet, done: pd.DataFrame) -> Finding:
    key, what = "tokenizer_better_base", "held-out bits per byte of the base"
    col, se_col = "base_raw_nats_per_byte", "base_raw_nats_per_byte_se"
    if col not in done or done[col].isna().all():
        return Finding(key, "One tokenizer gives a better base at equal pre-training time", NOT_MEASURABLE,
                       "the jobs record no held-out loss per byte of their base (raw_nats_per_byte: jobs "
                       "from before it was measured); per-token losses do not compare across tokenizers.")
    rows = {}
    for tok in _order(done["tokenizer"]):
        part = done[done["tokenizer"] == tok].dropna(subset=[col])
        if part.empty:
            continue
        r = part.iloc[0]  # every job of a tokenizer starts from the same base
        cfg = runs.configs.get(r["job"], {})
        times = [t for t in part.get("time_pretrain_s", pd.Series(dtype=float)).dropna() if t > 0]
        rows[tok] = {"v": float(r[col]), "se": _num(r.get(se_col)), "steps": pretrain_steps(cfg),
                     "s": max(times) if times else None}
    best = min(rows, key=lambda t: rows[t]["v"])
    parts = []
    for tok, r in rows.items():
        ci = f" ± {_bits(Z95 * r['se']):.3f}" if r["se"] is not None else ""
        how = []
        if r["steps"] is not None:
            how.append(f"{r['steps']} steps")
        if r["s"] is not None:
            how.append(f"pre-trained in {r['s']:.0f} s here")
        parts.append(f"{tok}: {_bits(r['v']):.3f}{ci} bits/byte" + (f" ({', '.join(how)})" if how else ""))
    measured = [r["s"] for r in rows.values() if r["s"] is not None]
    timing = ""
    if len(measured) == len(rows) and len(rows) >= 2:
        timing = (f"; pre-training took {min(measured):.0f}-{max(measured):.0f} s of wall time "
                  "(on a shared machine the wall time also measures the others' load)")
    elif measured:
        timing = "; pre-training seconds only for the bases this sweep trained (the others came from the cache)"
    ref = "bytes" if "bytes" in rows and best != "bytes" else None
    others = [t for t in rows if t != best]
    if ref is None and not others:
        return Finding(key, "One tokenizer gives a better base at equal pre-training time", NOT_MEASURABLE,
                       "only one tokenizer's base has a held-out loss per byte.")
    if ref is None:  # bytes is best, or absent: the best against the runner-up
        ref = min(others, key=lambda t: rows[t]["v"])
    a, b = rows[ref], rows[best]
    e = effect([a["v"]], [b["v"]], se_a=[a["se"]] if a["se"] is not None else None,
               se_b=[b["se"]] if b["se"] is not None else None)
    call = judge(e, MIN_BASE_NATS)
    verdict = SUPPORTED if call else (NOT_SUPPORTED if call is False else INCONCLUSIVE)
    claim = (f"At equal pre-training time, {best} gives a better base than {ref} (held-out bits per byte)")
    diff = (f"{best} minus {ref}: {e.describe(scale=1 / LN2, unit=' bits/byte', digits=3)}"
            .replace("; item noise", "; held-out window noise"))
    word = {True: "beyond noise", False: "less than the smallest effect of interest "
            f"({_bits(MIN_BASE_NATS):.3f} bits/byte)", None: "within noise"}[call]
    extra = ""
    runner = min((t for t in rows if t not in (best, ref)), key=lambda t: rows[t]["v"], default=None)
    if runner is not None and rows[runner]["v"] < rows[ref]["v"]:  # the best against the next best too
        r2 = rows[runner]
        e2 = effect([r2["v"]], [b["v"]], se_a=[r2["se"]] if r2["se"] is not None else None,
                    se_b=[b["se"]] if b["se"] is not None else None)
        c2 = judge(e2, MIN_BASE_NATS)
        extra = (f" {best} minus the next best, {runner}: "
                 f"{e2.describe(scale=1 / LN2, unit=' bits/byte', digits=3).replace('; item noise', '; held-out window noise')}"
                 f": {_WORD[c2]}.")
    return Finding(key, claim, verdict,
                   f"{what} (95% interval over the held-out text windows): " + "; ".join(parts) + timing
                   + f". {diff}: {word}.{extra}",
                   {"best": best, "reference": ref, "bits_per_byte": {t: _bits(r["v"]) for t, r in rows.items()},
                    "diff_bits": _bits(e.diff)},
                   decided_by=_window_noise(e.decision(f"held-out bits per byte of the base, {best} minus {ref}",
                                                       scale=1 / LN2, unit=" bits/byte", digits=3)))


def _window_noise(d: Decision) -> Decision:
    """A base's interval comes from its held-out text windows (the effect calls them items)."""
    return dataclasses.replace(d, noise="held-out window noise") if d.noise == "item noise" else d


_WORD = {True: "beyond noise", False: "less than the smallest effect of interest", None: "within noise"}


def _se_of(part: pd.DataFrame, metric: str) -> list[float] | None:
    col = f"se_{metric}"
    if col not in part or part[col].isna().any():
        return None
    return [float(v) for v in part[col]]


def _tuned_finding(done: pd.DataFrame, metric: str, better: int, min_effect: float, what: str) -> Finding | None:
    if metric not in done or done[metric].isna().all():
        return None
    key = f"tokenizer_better_tuned_{metric.removeprefix('final_')}"
    groups = {t: done[done["tokenizer"] == t].dropna(subset=[metric]) for t in _order(done["tokenizer"])}
    groups = {t: g for t, g in groups.items() if not g.empty}
    if len(groups) < 2:
        return None
    means = {t: float(g[metric].mean()) for t, g in groups.items()}
    best = (max if better > 0 else min)(means, key=lambda t: means[t])
    runner = (max if better > 0 else min)((t for t in means if t != best), key=lambda t: means[t])
    rate = metric.endswith("follow_rate")

    def kwargs(g: pd.DataFrame, side: str) -> dict:
        if rate and "items_follow" in g and g["items_follow"].notna().all():
            return {f"items_{side}": list(g["items_follow"])}
        se = _se_of(g, metric)
        return {f"se_{side}": se} if se is not None else {}

    ga, gb = groups[runner], groups[best]
    e = effect(list(ga[metric]), list(gb[metric]), **kwargs(ga, "a"), **kwargs(gb, "b"))
    call = judge(e, min_effect)
    verdict = SUPPORTED if call else (NOT_SUPPORTED if call is False else INCONCLUSIVE)

    def fmt(t: str) -> str:
        g = groups[t]
        v = f"{100 * means[t]:.0f}%" if rate else f"{means[t]:.3f}"
        n = f" of {int(g['items_follow'].iloc[0])} fitting prompts" if (
            rate and "items_follow" in g and g["items_follow"].notna().all() and len(g) == 1) else ""
        seeds = f" (mean of {len(g)} jobs)" if len(g) > 1 else ""
        return f"{t}: {v}{n}{seeds}"

    scale, unit, digits = (100, " points", 1) if rate else (1, "", 3)
    word = {True: "beyond noise", False: "less than the smallest effect of interest", None: "within noise"}[call]
    direction = "higher" if better > 0 else "lower"
    extra = ""
    if "bytes" in groups and "bytes" not in (best, runner):
        gy = groups["bytes"]
        e3 = effect(list(gy[metric]), list(gb[metric]), **kwargs(gy, "a"), **kwargs(gb, "b"))
        extra = (f" {best} minus bytes: {e3.describe(scale=scale, unit=unit, digits=digits)}: "
                 f"{_WORD[judge(e3, min_effect)]}.")
    return Finding(key, f"{best} gives the better tuned model by {what} ({direction} is better)", verdict,
                   f"{what} of the tuned model per tokenizer: " + "; ".join(fmt(t) for t in groups)
                   + f". {best} minus the runner-up {runner}: {e.describe(scale=scale, unit=unit, digits=digits)}: "
                   f"{word}.{extra}", {"best": best, "runner_up": runner, "diff": e.diff},
                   decided_by=e.decision(f"{what}, {best} minus the runner-up {runner}", scale=scale, unit=unit,
                                         digits=digits))


def tokenizer_findings(runs: RunSet) -> list[Finding]:
    """On a sweep over tokenizers: the better base per pre-training time, the better tuned model."""
    done = _tokenizer_sweep(runs)
    if done is None:
        return []
    out = [_base_finding(runs, done)]
    for metric, better, min_effect, what in TUNED:
        f = _tuned_finding(done, metric, better, min_effect, what)
        if f is not None:
            out.append(f)
    return out
