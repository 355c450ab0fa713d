"""The report on damaged and diverged jobs: a deleted metrics file is a problem, warnings of the
jobs are shown (escaped), and a diverged job counts as failed and stays out of every finding."""

from __future__ import annotations

import pytest

from analysis.collect import collect_runs
from analysis.report import write_report
from analysis_helpers import BASE_CONFIG, BASE_EVAL, summary_for, write_job


def _row(step, **m):
    return {"kind": "eval", "step": step, **m}


def _sweep(tmp_path):
    d = tmp_path / "sweep"
    final = {**BASE_EVAL, "raw_loss": 1.3}
    for i, lr in enumerate((1e-4, 3e-4)):
        ov = [f"optim.lr={lr}"]
        s = summary_for({**BASE_CONFIG, "optim.lr": lr}, ov, BASE_EVAL, final, steps=10)
        if i == 1:
            s["warnings"] = ["dataset 'main': skipped 3 of 40 records <script>x</script>"]
        write_job(d / str(i), overrides=ov, summary=s,
                  metrics=[_row(0, **BASE_EVAL), _row(10, **final)])
    ov = ["optim.lr=1000.0"]
    blown = {**BASE_EVAL, "raw_loss": 68382665.0}
    s = summary_for({**BASE_CONFIG, "optim.lr": 1e3}, ov, BASE_EVAL, blown, steps=3, status="failed",
                    error="DivergedError: diverged at step 3: loss 6.8e+07 > 11.12 (train.diverge_factor x ln(vocab_size))")
    s.update(reason="diverged", diverged={"metric": "loss", "value": 6.8e7, "step": 3, "bound": 11.12})
    del s["final"], s["forgetting_pct"]
    write_job(d / "2", overrides=ov, summary=s, metrics=[_row(0, **BASE_EVAL)])
    return d


def test_deleted_metrics_file_of_a_completed_job_is_a_problem(tmp_path):
    d = _sweep(tmp_path)
    (d / "1" / "metrics.jsonl").unlink()
    runs = collect_runs(d)
    text = "\n".join(str(p) for p in runs.problems)
    assert "1/metrics.jsonl" in text and "missing" in text, text
    assert "0/metrics.jsonl" not in text


def test_report_shows_warnings_and_counts_diverged_as_failed(tmp_path):
    d = _sweep(tmp_path)
    runs = collect_runs(d)
    jobs = runs.jobs.set_index("job")
    assert jobs.loc["2", "status"] == "failed" and not jobs.loc["2", "done"]
    assert jobs.loc["1", "n_warnings"] == 1 and jobs.loc["0", "n_warnings"] == 0
    paths = write_report([d])
    md = paths.markdown.read_text()
    html = paths.html.read_text()
    assert "## Warnings" in md and "skipped 3 of 40 records" in md
    assert "<script>x</script>" not in html and "skipped 3 of 40 records" in html
    assert "2 of 3 jobs completed" in md and "DivergedError" in md
    assert "68382665" not in md and "6838266" not in md  # the blown-up loss is in no table or finding


def _self_link(path):
    path.unlink()
    path.symlink_to(path.name)


def _huge(path):
    with open(path, "ab") as f:
        f.truncate(64 << 20)  # sparse: 64 MiB that cost nothing to make


# (file damaged in job "1", damage, status of job "1", words in the problem)
BOUNDED = [
    ("summary.json", _self_link, "unreadable", ["1/summary.json", "cannot read", "symbolic links"]),
    ("summary.json", _huge, "unreadable", ["1/summary.json", "67108864 bytes", "more than", "not read"]),
    ("metrics.jsonl", _huge, "completed", ["1/metrics.jsonl", "67108864 bytes", "more than", "not read"]),
]


@pytest.mark.parametrize("name,damage,status,words", BOUNDED, ids=["summary_loop", "summary_huge", "metrics_huge"])
def test_job_files_are_read_with_a_size_bound_and_skips_are_listed(tmp_path, monkeypatch, name, damage, status, words):
    import analysis.jobdir as jobdir

    monkeypatch.setattr(jobdir, "JSON_MAX_BYTES", 1 << 20, raising=False)
    monkeypatch.setattr(jobdir, "JSONL_MAX_BYTES", 1 << 20, raising=False)
    d = _sweep(tmp_path)
    damage(d / "1" / name)
    runs = collect_runs(d)
    jobs = runs.jobs.set_index("job")
    assert jobs.loc["1", "status"] == status and jobs.loc["0", "status"] == "completed"
    (problem,) = [str(p) for p in runs.problems if "1/" in str(p)]
    assert all(w in problem for w in words), problem
