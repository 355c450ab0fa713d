"""Optuna search through our sweeper, end to end on the tiny model: pruning, resume, Pareto set,
failed trials, two searches on one storage."""

import json
import math
import os
import signal
import subprocess
import sys
import time

import pytest
import yaml

from tests.conftest import REPO

from .conftest import SMOKE, summaries, sweep

optuna = pytest.importorskip("optuna", reason='needs pip install -e ".[search]"')
from optuna.trial import TrialState  # noqa: E402

from sft_sweep.train.trial import open_storage  # noqa: E402

# response loss (minimize) moves with the learning rate even on the tiny model, whose answer accuracy is 0
PRUNABLE = ["eval.objective=final.response_loss", "hydra.sweeper.direction=minimize",
            "hydra/sweeper/pruner=median", "hydra.sweeper.pruner.n_startup_trials=2",
            "hydra.sweeper.sampler.n_startup_trials=6"]


def load(sweep_dir, name="smoke-answer_acc"):
    return optuna.load_study(study_name=name, storage=open_storage(str(sweep_dir / "optuna.journal")))


def jobs_by_lr(sweep_dir) -> dict[float, dict]:
    return {s["config"]["optim.lr"]: {**s, "dir": sweep_dir / name} for name, s in summaries(sweep_dir).items()}


@pytest.mark.slow
def test_six_trial_search_prunes_and_the_job_files_say_so(tmp_path, cache_dir):
    sweep(tmp_path / "sweep", cache_dir, "hparams_search=answer_acc", "hydra.sweeper.n_trials=6", *PRUNABLE,
          timeout=900)
    study = load(tmp_path / "sweep")
    assert len(study.trials) == 6 and all(t.state.is_finished() for t in study.trials)
    pruned = [t for t in study.trials if t.state == TrialState.PRUNED]
    assert pruned, "no trial was pruned"
    jobs = jobs_by_lr(tmp_path / "sweep")
    assert len(jobs) == 6
    for t in study.trials:
        job = jobs[t.params["optim.lr"]]
        rows = [json.loads(x) for x in (job["dir"] / "metrics.jsonl").read_text().splitlines()]
        evals = {r["step"]: r["response_loss"] for r in rows if r["kind"] == "eval" and r["step"] > 0}
        assert evals == pytest.approx(t.intermediate_values)  # every evaluation was reported
        if t.state == TrialState.PRUNED:
            stop = t.user_attrs["pruned_at_step"]
            assert job["status"] == "pruned" and job["stopped_at_step"] == stop == job["steps"] == max(evals)
            assert job["steps_planned"] == 12 and stop < 12
            assert job["last_eval"]["response_loss"] == pytest.approx(evals[stop]) and "final" not in job
            assert max(r["step"] for r in rows) == stop  # no training past the stop
            assert not (job["dir"] / "model.npz").exists() and not (job["dir"] / "checkpoint.npz").exists()
        else:
            assert t.state == TrialState.COMPLETE and job["status"] == "completed"
            assert t.value == pytest.approx(job["final"]["response_loss"])
    result = yaml.safe_load((tmp_path / "sweep" / "optimization_results.yaml").read_text())
    assert result["trials"]["pruned"] == len(pruned) and result["n_trials"] == 6
    assert result["best_value"] == pytest.approx(min(t.value for t in study.trials if t.value is not None
                                                     and t.state == TrialState.COMPLETE))


def _finished(sweep_dir) -> int:
    try:
        return sum(t.state.is_finished() for t in load(sweep_dir).trials)
    except Exception:  # not created yet
        return 0


@pytest.mark.slow
def test_interrupted_search_resumes_to_n_trials_without_rerunning_finished_trials(tmp_path, cache_dir):
    sweep_dir = tmp_path / "sweep"
    args = ["hparams_search=answer_acc", "hydra.sweeper.n_trials=6", *PRUNABLE]
    cmd = [sys.executable, "-m", "sft_sweep.cli", "-m", *SMOKE, f"pretrain.cache_dir={cache_dir}",
           f"hydra.sweep.dir={sweep_dir}", *args]
    env = {k: v for k, v in os.environ.items() if k != "HYDRA_FULL_ERROR"}
    proc = subprocess.Popen(cmd, cwd=REPO, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                            start_new_session=True)
    deadline = time.monotonic() + 600
    try:
        while _finished(sweep_dir) < 3 and proc.poll() is None and time.monotonic() < deadline:
            time.sleep(0.2)
    finally:
        os.killpg(proc.pid, signal.SIGKILL)  # the sweeper and its job, mid-trial
        proc.wait()
    first = load(sweep_dir).trials
    done_before = {t.number: t for t in first if t.state.is_finished()}
    assert 3 <= len(done_before) < 6, [t.state for t in first]
    summaries_before = {lr: (j["dir"] / "summary.json").read_text() for lr, j in jobs_by_lr(sweep_dir).items()
                        if j["status"] in ("completed", "pruned")}

    sweep(sweep_dir, cache_dir, *args, timeout=900)
    study = load(sweep_dir)
    assert len(study.trials) == 6 and all(t.state.is_finished() for t in study.trials)
    for number, t in done_before.items():  # the finished trials were not asked or run again
        assert study.trials[number].state == t.state and study.trials[number].params == t.params
    after = jobs_by_lr(sweep_dir)
    for lr, text in summaries_before.items():
        assert (after[lr]["dir"] / "summary.json").read_text() == text, "a finished job ran again"
    assert len(after) == 6 and all(j["status"] in ("completed", "pruned") for j in after.values())


@pytest.mark.slow
def test_failing_trial_is_a_fail_trial_and_the_search_goes_on(tmp_path, cache_dir):
    # optim.grad_clip=-1 is invalid: those jobs fail; TPE's random start with seed 0 draws it in 4 trials
    sweep(tmp_path / "sweep", cache_dir, "hparams_search=answer_acc", "hydra.sweeper.n_trials=4",
          "hydra.sweeper.sampler.n_startup_trials=10", "optim.grad_clip=choice(1.0,-1.0)",
          timeout=900)
    study = load(tmp_path / "sweep")
    states = [t.state for t in study.trials]
    assert len(states) == 4 and TrialState.FAIL in states and TrialState.COMPLETE in states, states
    jobs = jobs_by_lr(tmp_path / "sweep")
    for t in study.trials:
        job = jobs[t.params["optim.lr"]]
        if t.state == TrialState.FAIL:
            assert t.params["optim.grad_clip"] == -1.0 and job["status"] == "failed"
            assert "optim.grad_clip" in job["error"]
        else:
            assert t.params["optim.grad_clip"] == 1.0 and job["status"] == "completed"
    result = yaml.safe_load((tmp_path / "sweep" / "optimization_results.yaml").read_text())
    assert result["best_params"]["optim.grad_clip"] == 1.0 and result["trials"]["fail"] == states.count(TrialState.FAIL)
    assert result["best_value"] == max(j["final"]["answer_mc_acc"] for j in jobs.values() if j["status"] == "completed")


@pytest.mark.slow
def test_multi_objective_search_returns_the_pareto_set_of_the_job_files(tmp_path, cache_dir):
    from analysis import collect_runs, pareto_front

    sweep(tmp_path / "sweep", cache_dir, "hparams_search=tradeoff", "hydra.sweeper.n_trials=4", timeout=900)
    jobs = summaries(tmp_path / "sweep")
    assert len(jobs) == 4 and all(s["status"] == "completed" for s in jobs.values())
    result = yaml.safe_load((tmp_path / "sweep" / "optimization_results.yaml").read_text())
    front = {tuple(s["values"]) for s in result["solutions"]}
    assert front and all(len(v) == 3 and all(math.isfinite(x) for x in v) for v in front)
    for sol in result["solutions"]:
        assert set(sol["params"]) == {"optim.lr", "train.epochs", "mix.replay_ratio"}
    runs = collect_runs(tmp_path / "sweep")
    ours = pareto_front(runs.done_jobs(), maximize=["final_follow_rate", "final_answer_mc_acc"],
                        minimize=["forgetting_pct"])
    assert {(r.final_follow_rate, r.final_answer_mc_acc, r.forgetting_pct) for r in ours.itertuples()} == front


@pytest.mark.slow
def test_two_searches_on_one_storage_at_once_share_the_study_intact(tmp_path, cache_dir):
    storage = tmp_path / "shared" / "study.journal"
    env = {k: v for k, v in os.environ.items() if k != "HYDRA_FULL_ERROR"}
    procs = []
    for i in range(2):
        cmd = [sys.executable, "-m", "sft_sweep.cli", "-m", *SMOKE, f"pretrain.cache_dir={cache_dir}",
               f"hydra.sweep.dir={tmp_path / f'sweep{i}'}", "hparams_search=answer_acc", "hydra.sweeper.n_trials=6",
               f"hydra.sweeper.storage={storage}", "hydra.sweeper.study_name=shared", f"train.seed={i}", *PRUNABLE]
        procs.append(subprocess.Popen(cmd, cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True))
    outs = [p.communicate(timeout=900) for p in procs]
    assert all(p.returncode == 0 for p in procs), [o[1][-2000:] for o in outs]
    study = optuna.load_study(study_name="shared", storage=open_storage(str(storage)))
    trials = study.trials
    # both asked from the same count: together they reach n_trials, overshooting by at most one batch
    assert 6 <= len(trials) <= 7 and [t.number for t in trials] == list(range(len(trials)))
    assert all(t.state.is_finished() for t in trials)
    jobs = {**jobs_by_lr(tmp_path / "sweep0"), **jobs_by_lr(tmp_path / "sweep1")}
    assert len(jobs) == len(trials)
    for t in trials:  # each trial's values are its own job's
        job = jobs[t.params["optim.lr"]]
        rows = [json.loads(x) for x in (job["dir"] / "metrics.jsonl").read_text().splitlines()]
        assert {r["step"]: r["response_loss"] for r in rows if r["kind"] == "eval" and r["step"] > 0} == \
            pytest.approx(t.intermediate_values)
        if t.state == TrialState.COMPLETE:
            assert t.value == pytest.approx(job["final"]["response_loss"])


@pytest.mark.slow
def test_search_through_joblib_two_trials_at_a_time_reports_from_the_workers(tmp_path, cache_dir):
    pytest.importorskip("hydra_plugins.hydra_joblib_launcher", reason='needs pip install -e ".[launchers]"')
    sweep(tmp_path / "sweep", cache_dir, "hparams_search=answer_acc", "hydra.sweeper.n_trials=4",
          "hydra.sweeper.n_jobs=2", "hydra/launcher=joblib", "hydra.launcher.n_jobs=2", "train.threads=1",
          *PRUNABLE[:3], "hydra.sweeper.pruner.n_startup_trials=1", timeout=900)
    study = load(tmp_path / "sweep")
    assert len(study.trials) == 4 and all(t.state.is_finished() for t in study.trials)
    # every trial got its evaluations from its job, which ran in a joblib worker process
    assert all(6 in t.intermediate_values for t in study.trials)
    jobs = jobs_by_lr(tmp_path / "sweep")
    for t in study.trials:
        status = jobs[t.params["optim.lr"]]["status"]
        assert status == ("pruned" if t.state == TrialState.PRUNED else "completed")
