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


@dataclass
class Finding:
    """One claim with its evidence and verdict."""

    key: str
    claim: str
    verdict: str
    evidence: str
    numbers: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.verdict not in VERDICTS:
            raise ValueError(f"unknown verdict {self.verdict!r}")

    def as_text(self) -> str:
        return f"[{self.verdict}] {self.claim}: {self.evidence}"
