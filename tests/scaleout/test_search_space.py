"""The search sweeper's pieces that need no job: sweep syntax, job-side reporting and pruning, study ownership."""

import os
import socket

import pytest

optuna = pytest.importorskip("optuna", reason='needs pip install -e ".[search]"')

from optuna.distributions import CategoricalDistribution, FloatDistribution, IntDistribution  # noqa: E402
from optuna.trial import TrialState  # noqa: E402

from hydra_plugins.sft_sweep_optuna import _study  # noqa: E402
from hydra_plugins.sft_sweep_optuna._search import override_value, quoted  # noqa: E402
from hydra_plugins.sft_sweep_optuna._search_space import SearchSpaceError, parse  # noqa: E402
from sft_sweep.train import trial as trial_mod  # noqa: E402


def test_sweep_syntax_maps_to_optuna_distributions():
    space = parse(["optim.lr=tag(log, interval(3e-5, 1e-2))", "train.epochs=choice(1, 2, 3)",
                   "optim.warmup_steps=range(0, 50, 10)", "mix.replay_ratio=interval(0.0, 0.2)",
                   "train.batch_size=tag(int, log, interval(4, 64))", "template=chatml,alpaca",
                   "train.seed=shuffle(range(3))", "name=fixed"])
    d = space.distributions
    assert d["optim.lr"] == FloatDistribution(3e-5, 1e-2, log=True)
    assert d["train.epochs"] == CategoricalDistribution([1, 2, 3])
    # range() stops before its stop value, as Hydra's basic sweeper expands it
    assert d["optim.warmup_steps"] == IntDistribution(0, 40, step=10)
    assert d["mix.replay_ratio"] == FloatDistribution(0.0, 0.2)
    assert d["train.batch_size"] == IntDistribution(4, 64, log=True)
    assert d["template"] == CategoricalDistribution(["chatml", "alpaca"])
    assert d["train.seed"] == CategoricalDistribution([0, 1, 2])
    assert space.fixed == {"name": "fixed"}
    # a later override of the same key wins (command line after the config's params)
    again = parse(["optim.lr=tag(log, interval(3e-5, 1e-2))", "optim.lr=1e-3"])
    assert again.distributions == {} and again.fixed == {"optim.lr": "0.001"}


def test_grid_lists_every_value_and_refuses_continuous_dimensions():
    space = parse(["a=choice(x, y)", "b=range(1, 4)", "c=range(0.5, 1.0, 0.25)"])
    assert space.grid() == {"a": ["x", "y"], "b": [1, 2, 3], "c": [0.5, 0.75]}
    with pytest.raises(SearchSpaceError, match="lr"):
        parse(["lr=interval(0.1, 0.2)"]).grid()


@pytest.mark.parametrize("bad, words", [("lr=tag(log, interval(0, 1))", "log-scale"),
                                        ("lr=interval(2, 1)", "low < high"),
                                        ("n=tag(int, interval(1.5, 4))", "whole")])
def test_unusable_dimensions_are_named(bad, words):
    with pytest.raises(SearchSpaceError, match=words) as e:
        parse([bad])
    assert bad.split("=")[0] in str(e.value)


def test_sampled_values_go_back_as_hydra_override_values():
    assert [override_value(v) for v in (None, True, False, 3, 1e-5, "chatml")] == \
        ["null", "true", "false", "3", "1e-05", "chatml"]
    assert quoted("/a b/it's\\x") == "'/a b/it\\'s\\\\x'"


def _study_in(tmp_path, pruner: dict | None, direction="minimize"):
    tmp_path.mkdir(parents=True, exist_ok=True)
    storage = str(tmp_path / "s.journal")
    study = optuna.create_study(storage=trial_mod.open_storage(storage), study_name="s", direction=direction)
    study.set_user_attr(trial_mod.PRUNER_ATTR, pruner)
    return storage, study


def _reporter(monkeypatch, storage, trial, base=None, objective="final.response_loss"):
    monkeypatch.setenv(trial_mod.ENV_STORAGE, storage)
    monkeypatch.setenv(trial_mod.ENV_STUDY, "s")
    monkeypatch.setenv(trial_mod.ENV_TRIAL_ID, str(trial._trial_id))
    return trial_mod.TrialReporter.from_env(objective, False, base or {"raw_loss": 2.0}, 30, "job")


def test_job_reports_each_evaluation_and_stops_when_the_median_pruner_says_so(tmp_path, monkeypatch):
    storage, study = _study_in(tmp_path, {"_target_": "optuna.pruners.MedianPruner", "n_startup_trials": 2})
    for loss in (1.0, 1.2):  # two finished trials set the median at step 10: 1.1
        t = study.ask()
        t.report(loss, 10)
        study.tell(t, loss)
    good = study.ask()
    rep = _reporter(monkeypatch, storage, good)
    rep.report(10, {"response_loss": 1.05, "raw_loss": 2.2}, final=False)  # better than the median: goes on
    bad = study.ask()
    rep = _reporter(monkeypatch, storage, bad)
    rep.report(0, {"response_loss": 9.0}, final=False)  # step 0 is the base model: not a report
    with pytest.raises(trial_mod.Pruned) as e:
        rep.report(10, {"response_loss": 1.5, "raw_loss": 2.5}, final=False)
    assert e.value.step == 10
    f = e.value.fields
    assert (f["stopped_at_step"], f["steps_planned"], f["objective_at_stop"]) == (10, 30, 1.5)
    assert f["last_eval"] == {"response_loss": 1.5, "raw_loss": 2.5} and f["base"] == {"raw_loss": 2.0}
    fresh = optuna.load_study(study_name="s", storage=trial_mod.open_storage(storage))
    assert fresh.trials[3].intermediate_values == {10: 1.5}
    assert fresh.trials[3].user_attrs[trial_mod.PRUNED_AT_ATTR] == 10
    assert fresh.trials[2].intermediate_values == {10: 1.05}
    assert trial_mod.PRUNED_AT_ATTR not in fresh.trials[2].user_attrs


def test_last_evaluation_is_never_pruned_and_no_pruner_never_prunes(tmp_path, monkeypatch):
    storage, study = _study_in(tmp_path, {"_target_": "optuna.pruners.MedianPruner", "n_startup_trials": 1})
    t = study.ask()
    t.report(1.0, 10)
    study.tell(t, 1.0)
    rep = _reporter(monkeypatch, storage, study.ask())
    rep.report(10, {"response_loss": 5.0}, final=True)  # worse than the median, but the job is done
    storage2, study2 = _study_in(tmp_path / "b", None)
    t = study2.ask()
    t.report(1.0, 10)
    study2.tell(t, 1.0)
    _reporter(monkeypatch, storage2, study2.ask()).report(10, {"response_loss": 5.0}, final=False)


def test_forgetting_objective_is_computed_at_every_evaluation(tmp_path, monkeypatch):
    storage, study = _study_in(tmp_path, None)
    t = study.ask()
    _reporter(monkeypatch, storage, t, base={"raw_loss": 2.0}, objective="forgetting_pct").report(
        5, {"raw_loss": 2.5}, final=False)
    assert study.trials[0].intermediate_values == {5: pytest.approx(25.0)}


def test_no_search_environment_no_reporter_and_unreachable_study_only_warns(tmp_path, monkeypatch, caplog):
    for var in (trial_mod.ENV_STORAGE, trial_mod.ENV_STUDY, trial_mod.ENV_TRIAL_ID):
        monkeypatch.delenv(var, raising=False)
    assert trial_mod.TrialReporter.from_env("final.x", False, {}, 10, "job") is None
    monkeypatch.setenv(trial_mod.ENV_STORAGE, str(tmp_path / "none.journal"))
    monkeypatch.setenv(trial_mod.ENV_STUDY, "missing")
    monkeypatch.setenv(trial_mod.ENV_TRIAL_ID, "0")
    assert trial_mod.TrialReporter.from_env("final.x", False, {}, 10, "job") is None
    assert "no pruning for this job" in caplog.text
    # multi-objective: Optuna has no intermediate values there, so nothing is reported
    assert trial_mod.TrialReporter.from_env("final.x", True, {}, 10, "job") is None


def test_running_trials_of_a_dead_sweeper_on_this_host_are_abandoned(tmp_path):
    _, study = _study_in(tmp_path, None)
    host = socket.gethostname()
    mine, live_other_host, dead, ownerless, done = (study.ask() for _ in range(5))
    mine.set_user_attr(_study.OWNER_ATTR, f"{host}:{os.getpid()}")
    live_other_host.set_user_attr(_study.OWNER_ATTR, "elsewhere.example:1")
    pid = os.fork()
    if pid == 0:
        os._exit(0)
    os.waitpid(pid, 0)  # a process id that no longer runs
    dead.set_user_attr(_study.OWNER_ATTR, f"{host}:{pid}")
    done.set_user_attr(_study.OWNER_ATTR, f"{host}:{pid}")
    study.tell(done, 1.0)
    states = {t.number: _study.abandoned(t) for t in study.get_trials()}
    assert states == {0: False, 1: False, 2: True, 3: True, 4: False}
    assert study.trials[4].state == TrialState.COMPLETE


def test_storage_that_cannot_be_opened_is_one_error(tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("")
    with pytest.raises(_study.StudyError, match="cannot open the study storage") as e:
        _study.open_study(str(blocker / "optuna.journal"), "s", ["minimize"], sampler=None)
    assert "\n" not in str(e.value)
    with pytest.raises(_study.StudyError, match="is a directory"):
        _study.open_study(str(tmp_path), "s", ["minimize"], sampler=None)
    _study.open_study(str(tmp_path / "ok.journal"), "s", ["minimize"], sampler=None)
    with pytest.raises(_study.StudyError, match="directions"):
        _study.open_study(str(tmp_path / "ok.journal"), "s", ["maximize"], sampler=None)


def test_abandoned_trials_are_launched_again_unless_their_job_was_pruned(tmp_path):
    _, study = _study_in(tmp_path, None)
    pid = os.fork()
    if pid == 0:
        os._exit(0)
    os.waitpid(pid, 0)
    dead = f"{socket.gethostname()}:{pid}"
    pruned, cut_short, live = (study.ask({"x": FloatDistribution(0, 1)}) for _ in range(3))
    half_drawn = study.ask()  # its sweeper died before drawing x: cannot be launched as it was
    half_drawn.set_user_attr(_study.OWNER_ATTR, dead)
    for t in (pruned, cut_short):
        t.set_user_attr(_study.OWNER_ATTR, dead)
        t.report(0.5, 6)
    pruned.set_user_attr(trial_mod.PRUNED_AT_ATTR, 6)
    live.set_user_attr(_study.OWNER_ATTR, f"{socket.gethostname()}:{os.getpid()}")
    again = _study.settle_abandoned(study, {"x"})
    assert [(r.number, r.params, r.adopted) for r in again] == [(1, cut_short.params, True)]
    assert [t.state for t in study.get_trials()] == [TrialState.PRUNED, TrialState.RUNNING, TrialState.RUNNING,
                                                     TrialState.FAIL]


def test_ask_lock_left_by_a_killed_sweeper_is_broken(tmp_path, monkeypatch):
    import time

    spec = str(tmp_path / "s.journal")
    with _study.asking(spec, str(tmp_path)):
        pass
    # a sweeper killed inside the lock leaves the symlink behind; its target is old
    os.symlink(spec + ".ask", spec + ".ask.lock")
    old = time.time() - 3600
    os.utime(spec + ".ask", (old, old))
    monkeypatch.setattr("optuna.storages.journal._file.JournalFileSymlinkLock.__init__.__defaults__", (1,))
    t0 = time.monotonic()
    with _study.asking(spec, str(tmp_path)) as number:
        assert number(_study_in(tmp_path / "x", None)[1]) == 0
    assert time.monotonic() - t0 < 10
