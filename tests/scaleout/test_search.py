"""Optuna search through Hydra's sweeper: 3 trials on the tiny model; the multi-objective Pareto set."""

import math

import pytest
import yaml

from .conftest import summaries, sweep

pytest.importorskip("hydra_plugins.hydra_optuna_sweeper", reason='needs pip install -e ".[search]"')


@pytest.mark.slow
def test_single_objective_search_of_3_trials_goes_on_after_a_failed_trial(tmp_path, cache_dir):
    # optim.grad_clip=-1 is invalid: that trial fails (seed 0 draws it for trial 3 of 3). The failed job
    # returns None, Optuna records a FAIL trial and the search ends normally with the best of the others.
    sweep(tmp_path / "sweep", cache_dir, "hparams_search=answer_acc", "hydra.sweeper.n_trials=3",
          "optim.grad_clip=choice(1.0,-1.0)")
    jobs = summaries(tmp_path / "sweep")
    assert len(jobs) == 3
    done = {n: s for n, s in jobs.items() if s["status"] == "completed"}
    failed = [s for s in jobs.values() if s["status"] == "failed"]
    assert done and all("optim.grad_clip" in s["error"] for s in failed)
    assert failed, "no trial drew the invalid grad_clip: pick another sampler seed for this test"
    result = yaml.safe_load((tmp_path / "sweep" / "optimization_results.yaml").read_text())
    assert set(result["best_params"]) == {"optim.lr", "train.epochs", "optim.warmup_steps", "optim.grad_clip"}
    assert result["best_params"]["optim.grad_clip"] == 1.0
    assert 3e-5 <= result["best_params"]["optim.lr"] <= 1e-2
    # the best value is the best job's final.answer_mc_acc (eval.objective of this search)
    assert result["best_value"] == max(s["final"]["answer_mc_acc"] for s in done.values())


@pytest.mark.slow
def test_multi_objective_search_returns_the_pareto_set(tmp_path, cache_dir):
    from analysis import collect_runs, pareto_front

    sweep(tmp_path / "sweep", cache_dir, "hparams_search=tradeoff", "hydra.sweeper.n_trials=4")
    jobs = summaries(tmp_path / "sweep")
    assert len(jobs) == 4 and all(s["status"] == "completed" for s in jobs.values())
    result = yaml.safe_load((tmp_path / "sweep" / "optimization_results.yaml").read_text())
    front = result["solutions"]
    assert front, "no Pareto solution"
    # values in the order of eval.objectives: follow rate, answer accuracy (max), forgetting (min)
    points = {(s["final"]["follow_rate"], s["final"]["answer_mc_acc"], s["forgetting_pct"]) for s in jobs.values()}
    for sol in front:
        assert len(sol["values"]) == 3 and all(math.isfinite(v) for v in sol["values"])
        assert tuple(sol["values"]) in points
        assert set(sol["params"]) == {"optim.lr", "train.epochs", "mix.replay_ratio"}

    def dominates(a, b):
        a, b = (a[0], a[1], -a[2]), (b[0], b[1], -b[2])
        return all(x >= y for x, y in zip(a, b)) and any(x > y for x, y in zip(a, b))

    for sol in front:  # nothing dominates a solution, and every undominated job is on the front
        assert not any(dominates(p, tuple(sol["values"])) for p in points)
    undominated = {p for p in points if not any(dominates(q, p) for q in points)}
    assert undominated == {tuple(s["values"]) for s in front}
    # our analysis finds the same front in the job files
    runs = collect_runs(tmp_path / "sweep")
    ours = pareto_front(runs.done_jobs(), maximize=["final_follow_rate", "final_answer_mc_acc"],
                        minimize=["forgetting_pct"])
    assert {(r.final_follow_rate, r.final_answer_mc_acc, r.forgetting_pct) for r in ours.itertuples()} == undominated
