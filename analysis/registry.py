"""Every source of findings, in the order the report shows them.

A module that computes findings exposes one function ``RunSet -> list[Finding]`` (an empty
list when its sweep's metrics are absent) and is registered by one entry in
``FINDING_SOURCES``.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable

from analysis.collect import RunSet
from analysis.findings.core import core_findings
from analysis.findings.experiments import experiment_findings
from analysis.findings.free_form import free_form_findings
from analysis.findings.lessons import lesson_findings
from analysis.findings.story import story_findings
from analysis.findings.front import front_findings
from analysis.findings.tokenizers import tokenizer_findings
from analysis.groups import group_columns, split_runs
from analysis.verdicts import Finding

FINDING_SOURCES: tuple[Callable[[RunSet], list[Finding]], ...] = (
    story_findings,
    core_findings,
    free_form_findings,
    experiment_findings,
    lesson_findings,
    front_findings,
    tokenizer_findings,
)


def compute_findings(runs: RunSet) -> list[Finding]:
    """All findings for a sweep: each registered source's, in order. Sweeps on different data,
    models or templates are judged apart: each finding once per group, its claim naming it."""
    cols = group_columns(runs)
    if not cols:
        return [f for source in FINDING_SOURCES for f in source(runs)]
    out = []
    for label, part in split_runs(runs, cols):
        for source in FINDING_SOURCES:
            for f in source(part):
                out.append(dataclasses.replace(f, key=f"{f.key}[{label}]", claim=f"{label}: {f.claim}",
                                               numbers={**f.numbers, "group": label}))
    return out
