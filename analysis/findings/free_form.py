"""Findings on free-form answers (a researcher's own data): ROUGE-L of the greedy answers and
the response loss per byte, each judged by the paired base -> tuned change the job measured over
the same held-out items and its 95% interval (``summary.json`` ``free_form.paired``), so item
difficulty cancels. A metric the jobs could not measure is "not measurable" with their reason.
"""

from __future__ import annotations

from analysis.collect import RunSet
from analysis.dataview import absent_reason, is_free_form
from analysis.findings.common import has_values
from analysis.style import setting_label
from analysis.verdicts import INCONCLUSIVE, NOT_MEASURABLE, NOT_SUPPORTED, SUPPORTED, Decision, Finding


def _paired_finding(runs: RunSet, key: str, claim: str, metric: str, better: int, what: str) -> Finding | None:
    """A free-form metric judged by each job's paired base -> tuned change over the same held-out
    items and its 95% interval (``free_form.paired``): supported when some setting improves with
    an interval that excludes no change and none worsens so; None when the jobs are not on
    free-form answers."""
    done = runs.done_jobs()
    col, lo, hi = f"paired_{metric}", f"paired_{metric}_lo", f"paired_{metric}_hi"
    why = absent_reason(done, metric)
    if not has_values(done, col):
        if why is None and not has_values(done, f"final_{metric}"):
            return None
        return Finding(key, claim, NOT_MEASURABLE,
                       f"{what} is not measured: {why}." if why else
                       f"the jobs record no paired base -> tuned change of {what} (an older base evaluation).")
    clauses, gains, losses, best = [], 0, 0, None
    rows = done.dropna(subset=[col, lo, hi])
    for _, r in rows.iterrows():
        label = setting_label(r, runs.params) if runs.params else f"job {r['job']}"
        clauses.append(f"{label}: {r[f'final_{metric}']:.3f} vs base {r[f'base_{metric}']:.3f}, paired change "
                       f"{r[col]:+.3f} [{r[lo]:+.3f}, {r[hi]:+.3f}]"
                       if has_values(rows, f"final_{metric}") and has_values(rows, f"base_{metric}") else
                       f"{label}: paired change {r[col]:+.3f} [{r[lo]:+.3f}, {r[hi]:+.3f}]")
        if best is None or better * r[col] > better * best[1][col]:
            best = (label, r)
        if better * r[lo] > 0 and better * r[hi] > 0:
            gains += 1
        elif -better * r[lo] > 0 and -better * r[hi] > 0:
            losses += 1
    n = len(rows)
    tail = (f"; {gains} of {n} setting{'s' if n != 1 else ''} improve with an interval that excludes no change"
            + (f", {losses} get worse so" if losses else ""))
    if gains and not losses:
        verdict = SUPPORTED
    elif losses and not gains:
        verdict = NOT_SUPPORTED
    else:
        verdict = INCONCLUSIVE
        if not gains:
            tail += " (every change is within its interval)"
    # what decides: the setting that improves most (each job's interval over its own items)
    decided = Decision(f"{what}, tuned minus base, {best[0]}", f"{best[1][col]:+.3f}", f"{best[1][lo]:+.3f}",
                       f"{best[1][hi]:+.3f}", "1 job, paired items", "item noise") if best is not None else None
    return Finding(key, claim, verdict,
                   f"{what} per held-out item, tuned minus base (95% interval): " + "; ".join(clauses) + tail + ".",
                   {"gains": gains, "losses": losses, "n": n}, decided)


def free_form_findings(runs: RunSet) -> list[Finding]:
    """On own data: ROUGE-L and response nats per byte, each by its paired interval (none on the
    built-in world)."""
    if not is_free_form(runs.done_jobs()):
        return []
    out = [_paired_finding(runs, "sft_closer_to_references", "SFT brings the answers closer to the reference "
                           "answers (ROUGE-L)", "rouge_l", +1, "ROUGE-L of the greedy answer"),
           _paired_finding(runs, "sft_lowers_response_nats_per_byte", "SFT lowers the response loss per byte of "
                           "the reference answers", "response_nats_per_byte", -1, "response nats per byte")]
    return [f for f in out if f is not None]
