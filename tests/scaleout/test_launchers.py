"""Launchers: the same 2-job smoke sweep through joblib (2 workers) and submitit_local; the presets."""

import os

import pytest
from hydra import compose, initialize_config_dir

from sft_sweep.config import register_configs
from tests.conftest import CONF_DIR

from .conftest import assert_completed_job, summaries, sweep

register_configs()
pytest.importorskip("hydra_plugins.hydra_joblib_launcher", reason='needs pip install -e ".[launchers]"')
pytest.importorskip("hydra_plugins.hydra_submitit_launcher", reason='needs pip install -e ".[launchers]"')


def hydra_cfg(*overrides):
    with initialize_config_dir(config_dir=str(CONF_DIR), version_base=None):
        return compose("config", overrides=list(overrides), return_hydra_config=True)


@pytest.mark.slow
def test_joblib_two_workers_complete_with_one_thread_each(tmp_path, cache_dir):
    r = sweep(tmp_path / "sweep", cache_dir, "hydra/launcher=local_parallel", "hydra.launcher.n_jobs=2")
    assert "Joblib.Parallel(n_jobs=2" in r.stdout + r.stderr  # the joblib launcher ran the jobs
    jobs = summaries(tmp_path / "sweep")
    assert sorted(jobs) == ["optim.lr=0.0003", "optim.lr=0.003"]
    for name, s in jobs.items():
        assert_completed_job(tmp_path / "sweep" / name, s)
        # train.threads=0 resolved to cores / n_jobs: 2 jobs on a 2-core machine never oversubscribe.
        assert s["threads"] == max(1, len(os.sched_getaffinity(0)) // 2)
        assert s["config"]["train.threads"] == s["threads"]


@pytest.mark.slow
def test_submitit_local_completes(tmp_path, cache_dir):
    sweep(tmp_path / "sweep", cache_dir, "hydra/launcher=submitit_local", "hydra.launcher.timeout_min=10")
    jobs = summaries(tmp_path / "sweep")
    assert len(jobs) == 2
    for name, s in jobs.items():
        assert_completed_job(tmp_path / "sweep" / name, s)
        assert s["threads"] == 1  # submitit_local starts both jobs at once: one thread each
    # submitit's own records of the two tasks (stdout/stderr logs, pickled results)
    assert len(list((tmp_path / "sweep" / ".submitit").glob("*/*_result.pkl"))) == 2


def test_presets_compose_with_their_defaults():
    slurm = hydra_cfg("hydra/launcher=slurm").hydra.launcher
    assert slurm._target_ == "hydra_plugins.sft_sweep_slurm.launcher.SlurmLauncher"  # our wait for the tasks
    assert (slurm.timeout_min, slurm.cpus_per_task, slurm.mem_gb, slurm.array_parallelism) == (60, 2, 4, 64)
    assert slurm.max_num_timeout == 3  # requeued tasks resume from their checkpoint
    local = hydra_cfg("hydra/launcher=local_parallel").hydra.launcher
    assert local._target_.endswith("JoblibLauncher") and local.n_jobs == -1
    # the plugins' own names keep working as overrides
    assert hydra_cfg("hydra/launcher=joblib").hydra.launcher._target_.endswith("JoblibLauncher")
    assert hydra_cfg("hydra/launcher=submitit_local").hydra.launcher._target_.endswith("LocalLauncher")
    assert hydra_cfg("hydra/launcher=submitit_slurm").hydra.launcher._target_.endswith("SlurmLauncher")


def test_our_slurm_launcher_is_a_hydra_plugin_over_submitits():
    from hydra.core.plugins import Plugins
    from hydra.plugins.launcher import Launcher
    from hydra_plugins.hydra_submitit_launcher.submitit_launcher import SlurmLauncher as Submitit
    from hydra_plugins.sft_sweep_slurm.launcher import SlurmLauncher

    # Hydra's scan loads the plugin modules anew: the classes are compared by name
    def name(c):
        return f"{c.__module__}.{c.__name__}"

    assert name(SlurmLauncher) in {name(c) for c in Plugins.instance().discover(Launcher)}
    assert name(Submitit) in {name(c) for c in SlurmLauncher.__mro__}


def test_a_slurm_task_exits_nonzero_when_its_job_failed(tmp_path):
    """The task's exit status follows the job's summary.json (or an exception in the task)."""
    from hydra.core.utils import JobReturn, JobStatus
    from omegaconf import OmegaConf

    from hydra_plugins.sft_sweep_slurm._task import job_failed

    def ret(status, summary=None):
        job_dir = tmp_path / status.name / str(summary)
        job_dir.mkdir(parents=True)
        if summary:
            (job_dir / "summary.json").write_text(summary)
        return JobReturn(status=status, hydra_cfg=OmegaConf.create({"hydra": {"runtime": {"output_dir": str(job_dir)}}}))

    assert job_failed(ret(JobStatus.COMPLETED, '{"status": "failed", "error": "diverged"}'))
    assert not job_failed(ret(JobStatus.COMPLETED, '{"status": "completed"}'))
    assert not job_failed(ret(JobStatus.COMPLETED, '{"status": "interrupted"}'))  # resumes: not a failure
    assert not job_failed(ret(JobStatus.COMPLETED))  # no summary (a refused config): nothing to say
    assert job_failed(ret(JobStatus.FAILED))  # the task function raised


def test_a_lost_task_is_in_this_commands_sweep_outcome_only(tmp_path, monkeypatch):
    from sft_sweep.jobfiles import SWEEP_OUTCOME_ENV, record_lost_task, write_sweep_outcome

    monkeypatch.setenv(SWEEP_OUTCOME_ENV, str(tmp_path / "earlier.json"))
    record_lost_task(tmp_path, "optim.lr=0.1", "Slurm job 3_0 CANCELLED, exit code 0:15")  # an earlier command's
    monkeypatch.setenv(SWEEP_OUTCOME_ENV, str(tmp_path / "this.json"))
    record_lost_task(tmp_path, "optim.lr=0.003", "Slurm job 7_1 CANCELLED, exit code 0:15")
    outcome = write_sweep_outcome(tmp_path, 2, [], None)
    assert outcome["lost"] == [["optim.lr=0.003", "Slurm job 7_1 CANCELLED, exit code 0:15"]]
    assert outcome["failed"] == [] and outcome["refused"] == []
