"""The report opens with one findings table (verdict, claim, what decided it, n, noise); each
finding's evidence follows, in the HTML folded under its row."""

from __future__ import annotations

import math
import re

from analysis.noise import effect
from analysis.render import Block, render_html, render_markdown
from analysis.report import FINDINGS_HEADER, decision_cells
from analysis.verdicts import Decision


def test_every_finding_is_one_row_and_keeps_its_evidence_line(demo_report):
    md = demo_report.markdown.read_text()
    section = md.split("## Findings", 1)[1].split("\n## ", 1)[0]
    rows = [line for line in section.splitlines() if line.startswith("| ") and "---" not in line]
    assert rows[0] == "| " + " | ".join(FINDINGS_HEADER) + " |"
    assert len(rows) - 1 == len(demo_report.findings)
    for f, row in zip(demo_report.findings, rows[1:]):
        assert row.startswith(f"| {f.verdict.upper()} | ")
    evidence = [line for line in section.splitlines() if line.startswith("- **")]
    assert len(evidence) == len(demo_report.findings)
    html = demo_report.html.read_text()
    assert html.count("<details>") == len(demo_report.findings)


def test_a_trend_names_the_stratum_and_the_interval_that_decided_it(demo_report):
    f = next(f for f in demo_report.findings if f.key == "forgetting_vs_lr")
    d = f.decided_by
    assert d is not None and d.what.startswith("forgetting, lr ")
    assert d.value in f.evidence and f"95% CI {d.low} to {d.high}" in f.evidence
    assert d.noise in ("seed noise", "item noise")


def test_an_effect_decides_as_it_is_described():
    e = effect([0.2, 0.25], [0.6, 0.65])
    d = e.decision("answer acc.", scale=100, unit=" points")
    assert e.describe(scale=100, unit=" points").startswith(f"{d.value} (95% CI {d.low} to {d.high}; n = 2 vs 2 jobs")
    assert (d.n, d.noise) == ("2 vs 2 jobs", "seed noise")
    none = effect([0.2], [0.6]).decision("x")
    assert none.interval == "" and none.noise == "no noise estimate" and math.isfinite(float(none.value))


def test_cells_and_renderers():
    assert decision_cells(None) == ["—", "—", "—"]
    d = Decision("forgetting", "+4.8%", "+0.9%", "+8.7%", "1 job", "item noise", "<= +5%")
    assert decision_cells(d) == ["forgetting: +4.8% (+0.9% to +8.7%; target <= +5%)", "1 job", "item noise"]
    block = Block("findings", header=list(FINDINGS_HEADER), items=[
        {"verdict": "supported", "claim": "<b>claim</b>", "evidence": "a & b", "cells": decision_cells(d)}])
    md = render_markdown([block])
    assert "| SUPPORTED | &lt;b&gt;claim&lt;/b&gt; | forgetting: +4.8%" in md
    assert "- **SUPPORTED**: &lt;b&gt;claim&lt;/b&gt; — a &amp; b" in md
    html = render_html([block])
    assert re.search(r"<details><summary>evidence</summary><div class=\"evidence\">a &amp; b</div></details>", html)
    assert "<b>claim" not in html


def test_lesson_findings_say_what_decided_them(tmp_path):
    from test_lesson_findings import _findings, _memo, _sweep

    rates = {1: (0.5, 0.5), 2: (0.6, 0.5), 3: (0.9, 0.5), 5: (0.96, 0.5), 8: (1.0, 0.4)}
    m = _findings(_sweep(tmp_path, {"train.epochs": list(rates)},
                         lambda s: _memo(*rates[s["train.epochs"]])))["memorisation_over_epochs"]
    d = m.decided_by
    assert d.what == "reproduced minus answered, 3 epochs" and (d.n, d.noise) == ("50 vs 50 items", "item noise")
    assert f"{d.value} (95% CI {d.low} to {d.high})" in m.evidence
