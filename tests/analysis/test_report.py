"""report.md and report.html: content, self-containment, escaping of every text from the data."""

from __future__ import annotations

import re

from analysis.report import md_code, md_escape, write_report
from analysis_helpers import BASE_CONFIG, BASE_EVAL, PLANTED, summary_for, write_job


def test_report_files_written(demo_report):
    assert demo_report.markdown.name == "report.md" and demo_report.html.name == "report.html"
    assert demo_report.markdown.exists() and demo_report.html.exists()
    assert {p.name for p in demo_report.tables} >= {"jobs.csv", "curves.csv"}
    md = demo_report.markdown.read_text()
    # every figure is referenced by a relative path that exists
    refs = re.findall(r"!\[[^\]]*\]\(([^)]+)\)", md)
    assert len(refs) == len(demo_report.plots) >= 6
    for ref in refs:
        assert (demo_report.out_dir / ref).exists()


def test_report_content(demo_report):
    md = demo_report.markdown.read_text()
    for section in ("## Findings", "## What was swept", "## Jobs", "## Summary per setting",
                    "## Pareto front", "## Figures", "## Base vs tuned generations"):
        assert section in md
    assert "12 jobs: 10 completed, 1 failed, 1 running" in md
    assert "NonFiniteLossError" in md  # the failed job is listed with its error
    assert "**SUPPORTED**: Forgetting rises with the learning rate" in md
    assert "| base model |" in md


def test_html_is_self_contained(demo_report):
    html = demo_report.html.read_text()
    assert html.count("data:image/png;base64,") == len(demo_report.plots)
    assert not re.search(r'(src|href)="(?!data:)', html)  # no link to a file beside it
    assert "Content-Security-Policy" in html


def test_html_escapes_planted_script(demo_report):
    html = demo_report.html.read_text()
    assert "<script" not in html.lower()
    assert "&lt;script&gt;alert(&quot;x&quot;)&lt;/script&gt;" in html


def test_markdown_keeps_generations_in_fences(demo_report):
    md = demo_report.markdown.read_text()
    # The planted generation (with a ``` run) sits in a longer fence, verbatim.
    assert "````text\n" + PLANTED + "\n````" in md
    outside = re.sub(r"(`{3,})text\n.*?\n\1", "", md, flags=re.S)
    assert "<script" not in outside


def test_escaping_everywhere(tmp_path, no_figures):
    """Text from the data in a parameter value, an error message and a directory name."""
    evil = "<script>bad()</script>"
    d = tmp_path / "sweep"
    for i, tmpl in enumerate(["chatml", evil]):
        ov = [f"template.name={tmpl}"]
        cfg = {**BASE_CONFIG, "template.name": tmpl}
        write_job(d / f"job{i}", overrides=ov, summary=summary_for(cfg, ov, BASE_EVAL, BASE_EVAL, steps=1),
                  samples=[{"task": evil, "prompt": evil, "reference": evil, "base": evil, "sft": evil}])
    ov = ["template.name=plain"]
    s = summary_for({**BASE_CONFIG, "template.name": "plain"}, ov, BASE_EVAL, BASE_EVAL, steps=1,
                    status="failed", error=f"ValueError: {evil}")
    write_job(d / f"{evil.replace('/', '_')}", overrides=ov, summary=s)
    paths = write_report(d)
    html = paths.html.read_text()
    assert "<script" not in html.lower()
    assert html.count("&lt;script&gt;") >= 5
    md = paths.markdown.read_text()
    outside = re.sub(r"(`{3,})text\n.*?\n\1", "", md, flags=re.S)
    assert "<script" not in outside and "&lt;script&gt;" in outside


def test_md_helpers():
    assert md_code("a ``` b") == "````text\na ``` b\n````"
    assert md_code("plain") == "```text\nplain\n```"
    assert md_escape("a|b <i> *x*\n# y") == r"a\|b &lt;i&gt; \*x\* # y"
    assert md_escape("- item") == r"\- item"


def test_out_dir_and_running_only_sweep(tmp_path, no_figures):
    d = tmp_path / "sweep"
    write_job(d / "0", overrides=["optim.lr=0.1"], metrics=[{"kind": "train", "step": 3, "loss": 2.0}])
    out = tmp_path / "elsewhere"
    paths = write_report(d, out)
    assert paths.html.parent == out and not (d / "report.html").exists()
    md = paths.markdown.read_text()
    assert "No job has completed yet" in md
    assert "| 0 | running |" in md


def test_several_sweeps_compared(tmp_path, no_figures):
    from analysis_helpers import make_sweep

    a = make_sweep(tmp_path / "runs" / "a", lrs=(1e-4,), epochs=(1,), seeds=(0,))
    b = make_sweep(tmp_path / "runs" / "b", lrs=(1e-3,), epochs=(1,), seeds=(0,))
    paths = write_report([a, b])
    assert paths.out_dir == (tmp_path / "runs" / "report-a+b").resolve()
    md = paths.markdown.read_text()
    assert "# Sweep report: a, b" in md and "| learning rate | optim.lr | 1e-4, 1e-3 |" in md


def test_only_some_metrics_measured(tmp_path):
    """Metrics that do not apply are absent: the report still works and says what was not tested."""
    d = tmp_path / "s"
    base = {"raw_loss": 1.2, "response_loss": 3.0}
    for i, lr in enumerate((1e-4, 1e-3)):
        final = {"raw_loss": 1.2 * (1 + 0.05 * (i + 1)), "response_loss": 2.0 - i}
        ov = [f"optim.lr={lr}"]
        write_job(d / str(i), overrides=ov, summary=summary_for({**BASE_CONFIG, "optim.lr": lr}, ov, base, final, steps=2),
                  metrics=[{"kind": "eval", "step": 0, **base}, {"kind": "eval", "step": 2, **final}])
    paths = write_report(d)
    by_key = {f.key: f for f in paths.findings}
    assert by_key["sft_teaches_following"].verdict == "not measurable"
    assert "absent" in by_key["sft_teaches_following"].evidence
    # one job per learning rate and a loss: no noise estimate, so no call
    assert by_key["forgetting_vs_lr"].verdict == "inconclusive"
    assert "no noise estimate" in by_key["forgetting_vs_lr"].evidence
    assert "tradeoff" not in paths.plots and "lr_comparison" in paths.plots
    assert not paths.problems


def test_a_failing_figure_is_reported_not_fatal(tmp_path, monkeypatch):
    from analysis import plots
    from analysis_helpers import make_sweep

    def broken(*_a, **_k):
        raise RuntimeError("boom")

    monkeypatch.setattr(plots, "PLOTS", [("broken", broken, "a figure that fails")] + plots.PLOTS[-1:])
    paths = write_report(make_sweep(tmp_path / "s", lrs=(1e-4,), epochs=(1,), seeds=(0,)))
    assert "base_vs_tuned" in paths.plots
    assert any("figure broken" in str(p) and "boom" in str(p) for p in paths.problems)
    assert "RuntimeError: boom" in paths.markdown.read_text()
