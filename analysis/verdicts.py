"""A finding: one claim about SFT checked against a sweep's numbers, with its verdict.

Every module that computes findings (the core claims, the story of a learning-rate x replay
sweep, the per-experiment claims) builds them from this one type, so none of them needs
another's code.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

SUPPORTED = "supported"
NOT_SUPPORTED = "not supported"
INCONCLUSIVE = "inconclusive"
#: The claim could not be measured at all: its metric is absent for every job, or the base and
#: every tuned job sit at a bound the measurement cannot leave (the evidence says which).
NOT_MEASURABLE = "not measurable"
VERDICTS = (SUPPORTED, NOT_SUPPORTED, INCONCLUSIVE, NOT_MEASURABLE)


def at_bound(values: list[float], lo: float = 0.0, hi: float = 1.0) -> float | None:
    """The bound (``lo`` or ``hi``) every value sits at, or None."""
    if values and all(v == lo for v in values):
        return lo
    if values and all(v == hi for v in values):
        return hi
    return None


@dataclass(frozen=True)
class Decision:
    """What decided a verdict, as the report's findings table shows it: an effect or a value
    (against its target), its 95% interval, the jobs it rests on and the noise the interval
    comes from (``seed noise``, ``item noise``, or none)."""

    what: str  # the quantity and where it was measured: "forgetting, lr 3e-5 → 2e-3 (replay 0%)"
    value: str  # as the evidence prints it: "+737.7 points"
    low: str = ""  # the 95% interval's bounds as printed; empty without a noise estimate
    high: str = ""
    n: str = ""  # "1 vs 1 job", "3 jobs"
    noise: str = "no noise estimate"
    target: str = ""  # the target it was held against: "<= +5%"

    @property
    def interval(self) -> str:
        return f"{self.low} to {self.high}" if self.low and self.high else ""


@dataclass
class Finding:
    """One claim with its evidence and verdict, and what decided the verdict (when one number did)."""

    key: str
    claim: str
    verdict: str
    evidence: str
    numbers: dict[str, Any] = field(default_factory=dict)
    decided_by: Decision | None = None

    def __post_init__(self) -> None:
        if self.verdict not in VERDICTS:
            raise ValueError(f"unknown verdict {self.verdict!r}")

    def as_text(self) -> str:
        return f"[{self.verdict}] {self.claim}: {self.evidence}"
