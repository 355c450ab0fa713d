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
VERDICTS = (SUPPORTED, NOT_SUPPORTED, INCONCLUSIVE)


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
