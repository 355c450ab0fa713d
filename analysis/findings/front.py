"""Findings on the ways to fine-tune and to keep what the base knew, judged on the learning-forgetting
front (``analysis.front``):

- LoRA learns less and forgets less than full fine-tuning (each method at its best learning rate);
- full fine-tuning's weight change has a higher effective rank than the LoRA rank;
- blending the tuned weights with the base beats the training-time mitigations on the front;
- freezing the lower layers cuts forgetting;
- NEFTune changes nothing measurable here.

Each appears only when the sweep has what it needs (LoRA and full jobs, blends, freezing, NEFTune
jobs and their partners) and is a pure function of the collected tables. Every comparison goes
through the one noise standard (``analysis.noise``, via ``analysis.front.point_effect``): a setting's
seeds when it has replicates, else the held-out items its values were measured on. A claim the data
contradicts is NOT SUPPORTED, and the evidence says so with its numbers.
"""

from __future__ import annotations

import pandas as pd

from analysis.collect import RunSet
from analysis.front import (
    FREEZE, FULL, LORA, MIN_FORGETTING, Learning, best_setting, better_or_worse, fmt_level, front_points,
    group_label, learning_of, point_effect,
)
from analysis.noise import wilson
from analysis.style import fmt_num
from analysis.verdicts import INCONCLUSIVE, NOT_SUPPORTED, SUPPORTED, Decision, Finding

#: What a point shares with the points it is compared with (besides the learning rate).
_MITIGATION = ["context", "replay", "l2", "neftune"]
_WORD = {1: "beyond noise", 0: "no difference as large as the minimum effect", None: "within noise"}


def _jobs(runs: RunSet, learning: Learning) -> pd.DataFrame:
    pts = front_points(runs, learning)
    return pts[pts["kind"] == "job"].dropna(subset=["learning", "forgetting_pct"])


def _combine(calls: list[tuple[str, str]]) -> str:
    """One verdict from per-comparison verdicts: every one supported -> supported; none supported
    and one refuted -> not supported; otherwise inconclusive."""
    verdicts = [v for v, _ in calls]
    if verdicts and all(v == SUPPORTED for v in verdicts):
        return SUPPORTED
    if NOT_SUPPORTED in verdicts and SUPPORTED not in verdicts:
        return NOT_SUPPORTED
    return INCONCLUSIVE


def _diffs(learning: Learning, a: pd.DataFrame, b: pd.DataFrame):
    """How ``b`` compares with ``a``: learning (+1 learns more beyond noise), forgetting (+1 forgets
    less beyond noise), and the two effects in words."""
    le = point_effect(a, b, "learning")
    fe = point_effect(a, b, "forgetting_pct")
    lc = better_or_worse(le, learning.min_effect, learning.sign)
    fc = better_or_worse(fe, MIN_FORGETTING, -1)
    text = (f"{learning.name} {learning.fmt_diff(le)}, forgetting "
            f"{fe.describe(unit=' points')}")
    return lc, fc, text, le, fe


def _decided(calls: list[tuple[str, str]], decisions: list[Decision | None], verdict: str) -> Decision | None:
    """What decided the combined verdict: the first comparison whose own verdict is that one."""
    for (v, _), d in zip(calls, decisions):
        if v == verdict and d is not None:
            return d
    return None


def _forgetting_decision(fe, label: str) -> Decision:
    return fe.decision(f"forgetting, {label}", unit=" points")


def _learning_decision(le, learning: Learning, label: str) -> Decision:
    units = {"scale": 100, "unit": " points"} if learning.metric == "final_answer_acc" else {"digits": 3}
    return le.decision(f"{learning.name}, {label}", **units)


# ======================================================================================
# LoRA against full fine-tuning
# ======================================================================================


def _method_groups(jobs: pd.DataFrame):
    """(mitigation key, full points, {LoRA label: points}) for every group with both methods."""
    for key, part in jobs.groupby(_MITIGATION, dropna=False, sort=True):
        full = part[part["method"] == FULL]
        lora = part[part["method"] == LORA]
        if full.empty or lora.empty:
            continue
        yield key, full, {label: p for label, p in lora.groupby("method_label", sort=False)}


def lora_learns_less_forgets_less(runs: RunSet) -> Finding | None:
    key, claim = "lora_learns_less_forgets_less", "LoRA learns less and forgets less than full fine-tuning"
    learning = learning_of(runs)
    if learning is None:
        return None
    jobs = _jobs(runs, learning)
    groups = list(_method_groups(jobs))
    if not groups:
        return None
    calls, numbers, decisions = [], [], []
    for _gkey, full, loras in groups:
        fb = best_setting(full, learning)
        for label, lora in sorted(loras.items(), key=lambda kv: kv[1]["rank"].iloc[0]):
            lb = best_setting(lora, learning)
            lc, fc, text, le, fe = _diffs(learning, fb, lb)
            # the axis that decided: learning when it was what fell short (or went the other way)
            by_learning = (lc is None or lc in (0, 1)) and fc not in (0, -1)
            decisions.append(_learning_decision(le, learning, f"{label} vs full") if by_learning
                             else _forgetting_decision(fe, f"{label} vs full"))
            if lc == -1 and fc == 1:
                verdict, how = SUPPORTED, "learns less and forgets less, both beyond noise"
            elif lc in (0, 1) or fc in (0, -1):
                parts = []
                if lc in (0, 1):
                    parts.append("learns as much or more" if lc == 0 else "learns more")
                if fc in (0, -1):
                    parts.append("forgets as much" if fc == 0 else "forgets more")
                verdict, how = NOT_SUPPORTED, " and ".join(parts)
            else:
                verdict, how = INCONCLUSIVE, "not beyond noise on " + " and ".join(
                    w for w, c in (("learning", lc), ("forgetting", fc)) if c is None)
            calls.append((verdict, f"{group_label(lb)} ({fmt_level(lb, learning, share=True)}) against "
                                   f"{group_label(fb)} ({fmt_level(fb, learning)}): "
                                   f"{how}: {text}"))
            numbers.append({"lora": label, "lora_setting": lb["setting"].iloc[0], "full_setting": fb["setting"].iloc[0],
                            "learning_lora": float(lb["learning"].mean()), "learning_full": float(fb["learning"].mean()),
                            "forgetting_lora": float(lb["forgetting_pct"].mean()),
                            "forgetting_full": float(fb["forgetting_pct"].mean()), "verdict": verdict})
    verdict = _combine(calls)
    evidence = (f"each method at the learning rate where it learnt most ({learning.name}; the rate is picked on "
                "the same numbers it is judged on): " + "; ".join(text for _, text in calls) + ".")
    return Finding(key, claim, verdict, evidence, {"learning": learning.metric, "comparisons": numbers},
                   decided_by=_decided(calls, decisions, verdict))


# ======================================================================================
# The rank of the weight change
# ======================================================================================


def full_rank_above_lora_rank(runs: RunSet) -> Finding | None:
    """The matrices of the full jobs' weight change (at full fine-tuning's best learning rate) are
    the items: the claim holds when more than half of them have an effective rank above the
    largest LoRA rank of the sweep, beyond the Wilson interval of that share."""
    key = "full_rank_above_lora_rank"
    learning = learning_of(runs)
    if learning is None or runs.weight_ranks.empty:
        return None
    jobs = _jobs(runs, learning)
    ranks = jobs.loc[jobs["method"] == LORA, "rank"].dropna()
    full = jobs[jobs["method"] == FULL]
    full = full[full["job"].isin(set(runs.weight_ranks["job"]))]
    if ranks.empty or full.empty:
        return None
    r = float(ranks.max())
    claim = "Full fine-tuning's weight change has a higher effective rank than the LoRA rank"
    chosen = pd.concat([best_setting(p, learning) for _, p in full.groupby(_MITIGATION, dropna=False)])
    mats = runs.weight_ranks[runs.weight_ranks["job"].isin(set(chosen["job"]))]
    eff = mats["effective_rank"].astype(float)
    n, k = len(eff), int((eff > r).sum())
    lo, hi = wilson(k, n)
    median = float(eff.median())
    max_rank = mats["max_rank"].dropna()
    bound = f" of at most {fmt_num(float(max_rank.max()))}" if not max_rank.empty else ""
    lora_jobs = jobs[(jobs["method"] == LORA)]
    lora_mats = runs.weight_ranks[runs.weight_ranks["job"].isin(set(lora_jobs["job"]))]
    lora_text = ""
    if not lora_mats.empty:
        lora_text = (f"; for comparison the LoRA jobs' own changes have a median effective rank of "
                     f"{fmt_num(float(lora_mats['effective_rank'].median()))}")
    settings = ", ".join(sorted(set(chosen["setting"])))
    evidence = (f"full fine-tuning ({settings}): the median weight matrix's change has an effective rank of "
                f"{fmt_num(median)}{bound} (90% of the squared singular values), {median / r:.1f}x the largest "
                f"LoRA rank of the sweep, {fmt_num(r)}; {k} of {n} matrices exceed it (share {100 * k / n:.0f}%, "
                f"95% CI {100 * lo:.0f}–{100 * hi:.0f}%; the matrices are the items){lora_text}")
    if lo > 0.5:
        verdict = SUPPORTED
    elif hi < 0.5:
        verdict, evidence = NOT_SUPPORTED, "most matrices do not exceed the LoRA rank: " + evidence
    else:
        verdict = INCONCLUSIVE
        evidence += "; the share is not beyond noise from one half"
    decided = Decision(f"share of full fine-tuning's matrices above rank {fmt_num(r)}", f"{100 * k / n:.0f}%",
                       f"{100 * lo:.0f}%", f"{100 * hi:.0f}%", f"{n} matrices", "item noise (Wilson)", "> 50%")
    return Finding(key, claim, verdict, evidence + ".",
                   {"lora_rank": r, "median_effective_rank": median, "exceed": k, "matrices": n,
                    "share_low": lo, "share_high": hi}, decided_by=decided)


# ======================================================================================
# Blends against training-time mitigations
# ======================================================================================


def _is_mitigation(p: pd.Series, blended: pd.DataFrame) -> str | None:
    """What training-time mitigation a job is (its variant), or None: LoRA, freezing, replay, the
    pull toward the base, NEFTune, or plain full fine-tuning at a lower rate than a blended job."""
    if p["method"] != FULL or p["replay"] > 0 or p["l2"] > 0 or p["neftune"] > 0:
        return p["variant"]
    same = blended[(blended["context"] == p["context"]) & (blended["variant"] == p["variant"])]
    if not same.empty and p["lr"] < same["lr"].min():
        return f"{p['variant']}, a lower learning rate"
    return None


def blending_beats_mitigations(runs: RunSet) -> Finding | None:
    key = "blending_beats_mitigations"
    claim = "Blending the tuned weights with the base beats the training-time mitigations on the front"
    learning = learning_of(runs)
    if learning is None:
        return None
    pts = front_points(runs, learning).dropna(subset=["learning", "forgetting_pct"])
    blends = pts[pts["kind"] == "blend"]
    if blends.empty:
        return None
    jobs = pts[pts["kind"] == "job"]
    blended = jobs[jobs["job"].isin(set(blends["job"]))]
    jobs = jobs[~jobs["job"].isin(set(blends["job"]))]
    mitig = jobs.assign(what=[_is_mitigation(p, blended) for _, p in jobs.iterrows()]).dropna(subset=["what"])
    mitig = mitig[mitig["context"].isin(set(blends["context"]))]
    if mitig.empty:
        return None
    calls, numbers = [], []
    for setting, m in mitig.groupby("setting", sort=False):
        ctx_blends = blends[blends["context"] == m["context"].iloc[0]]
        beaten_by, beats = [], []
        for bset, b in ctx_blends.groupby("setting", sort=False):
            lc, fc, _text, _le, _fe = _diffs(learning, m, b)
            label = f"{group_label(b)} ({fmt_level(b, learning)})"
            # better on one axis beyond noise, not worse beyond noise on the other
            if 1 in (lc, fc) and -1 not in (lc, fc):
                beaten_by.append(label)
            elif -1 in (lc, fc) and 1 not in (lc, fc):
                beats.append(label)
        head = f"{group_label(m)} ({fmt_level(m, learning)})"
        if beaten_by:
            calls.append((SUPPORTED, f"{head}: beaten by " + ", ".join(beaten_by)))
        elif beats:
            calls.append((NOT_SUPPORTED, f"{head}: better than " + ", ".join(beats) + ", and no blend beats it"))
        else:
            calls.append((INCONCLUSIVE, f"{head}: no blend beats it nor it a blend beyond noise (a trade-off, "
                                        "or differences within noise)"))
        numbers.append({"mitigation": setting, "beaten_by": beaten_by, "beats": beats, "verdict": calls[-1][0]})
    verdicts = [v for v, _ in calls]
    verdict = SUPPORTED if all(v == SUPPORTED for v in verdicts) else \
        NOT_SUPPORTED if NOT_SUPPORTED in verdicts else INCONCLUSIVE
    n_blends = blends["setting"].nunique()
    lead = {SUPPORTED: "", NOT_SUPPORTED: "a training-time mitigation beats the blends: ",
            INCONCLUSIVE: "not every mitigation is beaten by a blend: "}[verdict]
    evidence = (f"{lead}{n_blends} blend{'s' if n_blends != 1 else ''} (1 − t) · base + t · tuned of "
                f"{', '.join(sorted(set(blended['setting'])))} against {len(calls)} mitigation"
                f"{'s' if len(calls) != 1 else ''}; a point beats another when it learns more or forgets less "
                f"beyond noise and is not worse beyond noise in the other: " + "; ".join(t for _, t in calls) + ".")
    beaten = sum(v == SUPPORTED for v in verdicts)
    decided = Decision("mitigations a blend beats beyond noise", f"{beaten} of {len(calls)}",
                       n=f"{n_blends} blend{'s' if n_blends != 1 else ''}", noise="item noise",
                       target=f"all {len(calls)}")
    return Finding(key, claim, verdict, evidence, {"learning": learning.metric, "mitigations": numbers},
                   decided_by=decided)


# ======================================================================================
# Freezing and NEFTune against their partners
# ======================================================================================


def _partners(jobs: pd.DataFrame, p: pd.DataFrame, **change) -> pd.DataFrame:
    """The jobs that differ from the setting ``p`` only in ``change`` (and the seed)."""
    first = p.iloc[0]
    want = {c: first[c] for c in ("context", "replay", "l2", "neftune")}
    want.update({k: v for k, v in change.items() if k in want})
    mask = pd.Series(True, index=jobs.index)
    for c, v in want.items():
        mask &= jobs[c] == v
    if change.get("method") is not None:
        mask &= jobs["method"] == change["method"]
    else:
        mask &= jobs["method_label"] == first["method_label"]
    mask &= (jobs["lr"] == first["lr"]) | (jobs["lr"].isna() & pd.isna(first["lr"]))
    return jobs[mask]


def freezing_cuts_forgetting(runs: RunSet) -> Finding | None:
    key, claim = "freezing_cuts_forgetting", "Freezing the lower layers cuts forgetting"
    learning = learning_of(runs)
    if learning is None:
        return None
    jobs = _jobs(runs, learning)
    frozen = jobs[(jobs["method"] == FREEZE) & (jobs["trainable_layers"] > 0)]
    if frozen.empty:
        return None
    calls, numbers, decisions = [], [], []
    for setting, f in frozen.groupby("setting", sort=False):
        full = _partners(jobs, f, method=FULL)
        head = f"{group_label(f)} ({fmt_level(f, learning)})"
        if full.empty:
            calls.append((INCONCLUSIVE, f"{head}: no full fine-tuning job at its learning rate and settings to "
                                        "compare with"))
            decisions.append(None)
            continue
        lc, fc, text, _le, fe = _diffs(learning, full, f)
        decisions.append(_forgetting_decision(fe, f"{group_label(f)} vs full"))
        verdict = {1: SUPPORTED, 0: NOT_SUPPORTED, -1: NOT_SUPPORTED}.get(fc, INCONCLUSIVE)
        how = {1: "forgets less beyond noise", 0: "forgets as much", -1: "forgets more"}.get(fc, "within noise")
        calls.append((verdict, f"{head} against {group_label(full)} ({fmt_level(full, learning)}): {how}: {text}"))
        numbers.append({"freeze": setting, "full": full["setting"].iloc[0], "verdict": verdict,
                        "forgetting_freeze": float(f["forgetting_pct"].mean()),
                        "forgetting_full": float(full["forgetting_pct"].mean())})
    verdict = _combine(calls)
    lead = "the opposite or no effect: " if verdict == NOT_SUPPORTED else ""
    return Finding(key, claim, verdict, lead + "at the same learning rate and settings: "
                   + "; ".join(t for _, t in calls) + ".", {"comparisons": numbers},
                   decided_by=_decided(calls, decisions, verdict))


def neftune_changes_nothing(runs: RunSet) -> Finding | None:
    key, claim = "neftune_changes_nothing", "NEFTune changes nothing measurable here"
    learning = learning_of(runs)
    if learning is None:
        return None
    jobs = _jobs(runs, learning)
    noisy = jobs[jobs["neftune"] > 0]
    if noisy.empty:
        return None
    calls, numbers, decisions = [], [], []
    for setting, n in noisy.groupby("setting", sort=False):
        plain = _partners(jobs, n, neftune=0.0)
        alpha = fmt_num(float(n["neftune"].iloc[0]))
        head = f"{group_label(n)} ({fmt_level(n, learning)})"
        if plain.empty:
            calls.append((INCONCLUSIVE, f"{head}: no job without NEFTune at its learning rate and settings"))
            decisions.append(None)
            continue
        lc, fc, text, le, fe = _diffs(learning, plain, n)
        label = f"NEFTune α={alpha} vs without"
        decisions.append(_learning_decision(le, learning, label) if lc in (1, -1) and fc not in (1, -1)
                         else _forgetting_decision(fe, label))
        changed = [w for w, c in (("learning", lc), ("forgetting", fc)) if c in (1, -1)]
        if changed:
            verdict, how = NOT_SUPPORTED, "it does change " + " and ".join(changed)
        elif lc == 0 and fc == 0:
            verdict, how = SUPPORTED, "no change as large as the minimum effect in either"
        else:
            verdict, how = INCONCLUSIVE, "within noise, a change of the minimum effect not ruled out"
        calls.append((verdict, f"NEFTune α={alpha}: {head} against {group_label(plain)} "
                               f"({fmt_level(plain, learning)}): {how}: {text}"))
        numbers.append({"neftune": setting, "plain": plain["setting"].iloc[0], "verdict": verdict})
    verdicts = [v for v, _ in calls]
    verdict = NOT_SUPPORTED if NOT_SUPPORTED in verdicts else SUPPORTED if all(v == SUPPORTED for v in verdicts) \
        else INCONCLUSIVE
    return Finding(key, claim, verdict, "; ".join(t for _, t in calls) + ".", {"comparisons": numbers},
                   decided_by=_decided(calls, decisions, verdict))


def front_findings(runs: RunSet) -> list[Finding]:
    """The findings on methods and mitigations this sweep has what it needs for (none otherwise)."""
    out = [lora_learns_less_forgets_less(runs), full_rank_above_lora_rank(runs), blending_beats_mitigations(runs),
           freezing_cuts_forgetting(runs), neftune_changes_nothing(runs)]
    return [f for f in out if f is not None]


__all__ = ["front_findings", "lora_learns_less_forgets_less", "full_rank_above_lora_rank",
           "blending_beats_mitigations", "freezing_cuts_forgetting", "neftune_changes_nothing"]
