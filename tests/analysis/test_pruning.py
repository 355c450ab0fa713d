"""Jobs a search pruned: counted apart from failed ones, compute saved, out of final metrics, drawn to the stop."""

from analysis import collect_runs
from analysis.plots.lr import plot_lr_comparison
from analysis.pruning import compute_saved, pruned_jobs, saved_sentence
from analysis.report import write_report

from analysis_helpers import BASE_CONFIG, BASE_EVAL, simulate, summary_for, write_job


def _search_sweep(root):
    """Three completed trials, two pruned at steps 50 and 100 (of 200 planned), one failed."""
    for i, lr in enumerate((1e-4, 3e-4, 1e-3)):
        rows, final = simulate(lr, 2, 0)
        cfg = {**BASE_CONFIG, "optim.lr": lr, "train.epochs": 2}
        write_job(root / f"done{i}", overrides=[f"optim.lr={lr}"], metrics=rows,
                  summary=summary_for(cfg, [f"optim.lr={lr}"], BASE_EVAL, final, steps=200))
    for lr, stop in ((1e-5, 50), (3e-5, 100)):
        rows, last = simulate(lr, 2, 0, stop_at=stop)
        cfg = {**BASE_CONFIG, "optim.lr": lr, "train.epochs": 2}
        summary = summary_for(cfg, [f"optim.lr={lr}"], BASE_EVAL, last, steps=stop, status="pruned")
        del summary["final"], summary["forgetting_pct"]
        summary.update(last_eval=last, last_eval_step=stop, stopped_at_step=stop, steps_planned=200)
        write_job(root / f"pruned{stop}", overrides=[f"optim.lr={lr}"], metrics=rows, summary=summary)
    cfg = {**BASE_CONFIG, "optim.lr": 3e-3, "train.epochs": 2}
    failed = summary_for(cfg, ["optim.lr=3e-3"], BASE_EVAL, {"raw_loss": 1.0}, steps=0, status="failed",
                         error="NonFiniteLossError: boom")
    del failed["final"]
    write_job(root / "failed", overrides=["optim.lr=3e-3"], metrics=[], summary=failed)
    return collect_runs(root)


def test_pruned_jobs_are_counted_apart_and_kept_out_of_final_metrics(tmp_path):
    runs = _search_sweep(tmp_path / "s")
    assert runs.status_counts() == {"completed": 3, "pruned": 2, "failed": 1}
    assert set(pruned_jobs(runs)["job"]) == {"pruned50", "pruned100"}
    assert len(runs.done_jobs()) == 3
    p = runs.jobs.set_index("job")
    assert p.loc["pruned50", "stopped_at_step"] == 50 and p.loc["pruned100", "steps_planned"] == 200
    assert p.loc[["pruned50", "pruned100"], "final_answer_mc_acc"].isna().all()


def test_compute_saved_counts_the_steps_the_pruned_jobs_did_not_run(tmp_path):
    runs = _search_sweep(tmp_path / "s")
    s = compute_saved(runs)
    # planned: 3 x 200 completed + 2 x 200 pruned = 1000; run: 600 + 50 + 100 = 750
    assert (s["steps_planned"], s["steps_run"], s["steps_saved"]) == (1000, 750, 250)
    assert s["share_saved"] == 0.25 and s["n_pruned"] == 2
    assert "250 of 1000 planned SFT steps were not run (25% saved)" in saved_sentence(runs)
    report = write_report(tmp_path / "s")
    md = report.markdown.read_text()
    assert "1 failed" in md and "2 pruned" in md and "250 of 1000 planned SFT steps" in md


def test_no_pruned_job_no_compute_saved_line(tmp_path):
    import shutil

    _search_sweep(tmp_path / "s")
    for d in ("pruned50", "pruned100"):
        shutil.rmtree(tmp_path / "s" / d)
    runs = collect_runs(tmp_path / "s")
    assert compute_saved(runs) is None and saved_sentence(runs) is None


def test_lr_figure_draws_pruned_curves_up_to_the_stop(tmp_path, monkeypatch):
    import analysis.plots.lr as plots

    runs = _search_sweep(tmp_path / "s")
    drawn = []
    real = plots.draw_pruned

    def spy(ax, *args, **kwargs):
        values = real(ax, *args, **kwargs)
        drawn.append([(line.get_xdata()[-1], line.get_linestyle(), line.get_marker()) for line in ax.get_lines()])
        return values

    monkeypatch.setattr(plots, "draw_pruned", spy)
    assert plot_lr_comparison(runs, tmp_path / "fig") is not None
    ends = {(x, style, marker) for panel in drawn for x, style, marker in panel}
    assert (50, "--", "None") in ends and (100, "--", "None") in ends  # dashed curves end at the stops
    assert (50, "None", "x") in ends and (100, "None", "x") in ends  # a cross marks each stop
