"""The report's account of a sweep: every sweep command that made its jobs, the Pareto table in
formatted values, the recommended job among the generations."""

from __future__ import annotations

import os

import pytest

from analysis.collect import collect_runs
from analysis.registry import compute_findings
from analysis.report import pareto_table, pick_samples, write_report
from analysis.sweepcmds import sweep_commands
from analysis_helpers import BASE_CONFIG, BASE_EVAL, make_results_sweep, summary_for, write_job

CONFIG_SWEEP = {"optim.lr": "3e-4,3e-3"}


def _hydra_job(sweep, name, task, num, *, params=None, started=0.0, epochs=1, mode="MULTIRUN"):
    """A job directory as a Hydra multirun writes it: .hydra/ records and the job's files."""
    lr = float(next(o for o in task if o.startswith("optim.lr=")).split("=", 1)[1])
    config = {**BASE_CONFIG, "optim.lr": lr, "train.epochs": epochs}
    final = {**BASE_EVAL, "raw_loss": BASE_EVAL["raw_loss"] * (1 + lr * 30), "follow_rate": 0.5}
    job = write_job(sweep / name, overrides=task, summary=summary_for(config, task, dict(BASE_EVAL), final, steps=10),
                    metrics=[{"kind": "eval", "step": 0, **BASE_EVAL}, {"kind": "eval", "step": 10, **final}])
    params_yaml = "".join(f"      {k}: {v}\n" for k, v in (params or {}).items())
    (job / ".hydra" / "hydra.yaml").write_text(
        "hydra:\n  overrides:\n    hydra:\n    - hydra.mode=MULTIRUN\n    task:\n"
        + "".join(f"    - {t}\n" for t in task)
        + "  sweeper:\n    params:" + ("\n" + params_yaml if params else " null\n")
        + f"  mode: {mode}\n  job:\n    name: cli\n    num: {num}\n")
    os.utime(job / ".hydra" / "hydra.yaml", (started, started))
    return job


def _multirun(sweep, task):
    (sweep / "multirun.yaml").write_text("hydra:\n  overrides:\n    task:\n" + "".join(f"    - {t}\n" for t in task))


@pytest.fixture
def two_command_sweep(tmp_path):
    """`-m experiment=smoke` (lrs from the config's sweeper), then `-m experiment=smoke
    optim.lr=1e-3,1e-2 train.epochs=2` into the same directory: multirun.yaml has the second."""
    sweep = tmp_path / "smoke"
    fixed = ["experiment=smoke", "train.threads=1"]
    for num, lr in enumerate(("0.0003", "0.003")):
        _hydra_job(sweep, f"optim.lr={lr}", [f"optim.lr={lr}", *fixed], num, params=CONFIG_SWEEP, started=1000 + num)
    for num, lr in enumerate(("0.001", "0.01")):
        _hydra_job(sweep, f"optim.lr={lr},train.epochs=2", [f"optim.lr={lr}", "experiment=smoke", "train.epochs=2",
                                                            "train.threads=1"],
                   num, params=CONFIG_SWEEP, started=2000 + num, epochs=2)
    _multirun(sweep, ["experiment=smoke", "optim.lr=1e-3,1e-2", "train.epochs=2", "train.threads=1"])
    return sweep


def test_every_sweep_command_is_listed(two_command_sweep, tmp_path, no_figures):
    md = write_report(two_command_sweep, tmp_path / "out").markdown.read_text()
    assert "holds jobs from 2 sweep commands" in md
    assert "Jobs from several sweep commands: 2 commands in smoke" in md
    first = "- sft-sweep -m experiment=smoke train.threads=1 (2 jobs; the config sweeps optim.lr=3e-4,3e-3;"
    second = "- sft-sweep -m experiment=smoke optim.lr=1e-3,1e-2 train.epochs=2 train.threads=1 (2 jobs)"
    assert first in md
    assert second in md
    assert md.index(first) < md.index(second)  # in the order they ran
    html = (tmp_path / "out" / "report.html").read_text()
    assert "<code>sft-sweep -m experiment=smoke optim.lr=1e-3,1e-2 train.epochs=2 train.threads=1</code>" in html


def test_commands_of_the_same_shape_are_told_apart(tmp_path):
    """Two `-m optim.lr=...` runs into one directory: the job numbers start again at 0."""
    sweep = tmp_path / "lr"
    for i, lr in enumerate(("0.0001", "0.001")):
        _hydra_job(sweep, f"a{i}", [f"optim.lr={lr}", "train.threads=1"], i, started=100 + i)
    for i, lr in enumerate(("0.01", "0.1", "0.3")):
        _hydra_job(sweep, f"b{i}", [f"optim.lr={lr}", "train.threads=1"], i, started=200 + i)
    _multirun(sweep, ["optim.lr=1e-2,1e-1,0.3", "train.threads=1"])
    jobs = [(p.name, p) for p in sorted(sweep.iterdir()) if p.is_dir()]
    cmds = sweep_commands(sweep, jobs)
    assert [c.jobs for c in cmds] == [["a0", "a1"], ["b0", "b1", "b2"]]
    assert cmds[0].text() == "sft-sweep -m optim.lr=0.0001,0.001 train.threads=1" and not cmds[0].typed
    assert cmds[1].text() == "sft-sweep -m optim.lr=1e-2,1e-1,0.3 train.threads=1" and cmds[1].typed


def test_one_command_is_listed_once(tmp_path, no_figures):
    sweep = tmp_path / "one"
    for num, lr in enumerate(("0.0003", "0.003")):
        _hydra_job(sweep, f"optim.lr={lr}", [f"optim.lr={lr}", "experiment=smoke"], num, params=CONFIG_SWEEP)
    _multirun(sweep, ["experiment=smoke"])
    md = write_report(sweep, tmp_path / "out").markdown.read_text()
    assert "Sweep command:\n\n- sft-sweep -m experiment=smoke (2 jobs; the config sweeps optim.lr=3e-4,3e-3)" in md
    assert "several sweep commands" not in md


def _results(tmp_path, rows):
    jobs = [{"params": {"optim.lr": lr},
             "final": {"raw_loss": BASE_EVAL["raw_loss"] * (1 + forget / 100), "follow_rate": follow}}
            for lr, forget, follow in rows]
    return collect_runs(make_results_sweep(tmp_path / "sweep", jobs))


def test_pareto_table_names_jobs_by_their_formatted_values(tmp_path):
    runs = _results(tmp_path, [(1e-5, 1.0, 0.05), (1e-4, 5.0, 0.9), (1e-3, 40.0, 0.95)])
    header, rows, _ = pareto_table(runs)
    assert header[:2] == ["learning rate", "forgetting"]
    assert [r[:3] for r in rows] == [["1e-5", "+1.0%", "5%"], ["1e-4", "+5.0%", "90%"], ["1e-3", "+40.0%", "95%"]]
    dirs = set(runs.jobs["job"])
    assert not any(cell in dirs for r in rows for cell in r)


def _tuned_labels(runs):
    return [label for label, _text in pick_samples(runs, compute_findings(runs))[0]["tuned"]]


def test_generations_show_the_recommended_job(tmp_path):
    # The recommended lr 1e-4 is neither the least nor the most forgetting job.
    runs = _results(tmp_path, [(1e-5, 1.0, 0.05), (1e-4, 5.0, 0.9), (1e-3, 40.0, 0.95)])
    labels = _tuned_labels(runs)
    assert labels[0] == "recommended setting — lr 1e-4 (forgetting +5.0%)"
    assert labels[1:] == ["least forgetting — lr 1e-5 (forgetting +1.0%)",
                          "most forgetting — lr 1e-3 (forgetting +40.0%)"]


def test_generations_show_the_best_of_the_pareto_front_without_a_recommendation(tmp_path):
    # Everything forgets more than the budget: no recommendation; the front's best job that
    # learnt the format with the least forgetting is lr 3e-4.
    runs = _results(tmp_path, [(1e-4, 20.0, 0.1), (3e-4, 50.0, 0.9), (1e-3, 80.0, 0.95), (3e-3, 300.0, 0.97)])
    assert _tuned_labels(runs)[0] == "best on the Pareto front — lr 3e-4 (forgetting +50.0%)"


def test_a_single_run_is_not_called_a_sweep(tmp_path):
    job = _hydra_job(tmp_path / "single", "job", ["optim.lr=0.001", "experiment=smoke"], 0, params=CONFIG_SWEEP,
                     mode="RUN")
    (cmd,) = sweep_commands(job.parent, [("job", job)])
    assert cmd.text() == "sft-sweep optim.lr=0.001 experiment=smoke"


def test_typed_values_inside_the_configs_sweep_are_commands_of_their_own(tmp_path):
    """`-m experiment=smoke optim.lr=1e-3`, then `-m experiment=smoke optim.lr=3e-3` into one
    directory, where the config sweeps optim.lr=3e-4,3e-3: each command typed one value (3e-3 is
    also in the config's list), so each made one job, and neither is "no job of it found"."""
    sweep = tmp_path / "smoke"
    for i, lr in enumerate(("0.001", "0.003")):
        _hydra_job(sweep, f"optim.lr={lr}", [f"optim.lr={lr}", "experiment=smoke"], 0, params=CONFIG_SWEEP,
                   started=1000 + i)
    _multirun(sweep, ["experiment=smoke", "optim.lr=3e-3"])
    jobs = [(p.name, p) for p in sorted(sweep.iterdir()) if p.is_dir()]
    cmds = sweep_commands(sweep, jobs)
    assert [c.jobs for c in cmds] == [["optim.lr=0.001"], ["optim.lr=0.003"]]
    assert cmds[0].text() == "sft-sweep -m optim.lr=0.001 experiment=smoke" and not cmds[0].config_sweeps
    assert cmds[1].text() == "sft-sweep -m experiment=smoke optim.lr=3e-3" and cmds[1].typed
    assert not cmds[1].config_sweeps
