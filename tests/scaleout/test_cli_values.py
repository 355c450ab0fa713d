"""What a job hands to its launcher and sweeper: thread count under each launcher, sweeper values."""

import math
import os

from hydra.types import RunMode
from omegaconf import OmegaConf

from sft_sweep.cli import default_threads, sweeper_value

CORES = len(os.sched_getaffinity(0))


def hc(target="", mode=RunMode.MULTIRUN, **launcher):
    return OmegaConf.create({"mode": mode, "launcher": {"_target_": target, **launcher}})


JOBLIB = "hydra_plugins.hydra_joblib_launcher.joblib_launcher.JoblibLauncher"
SLURM = "hydra_plugins.hydra_submitit_launcher.submitit_launcher.SlurmLauncher"
LOCAL = "hydra_plugins.hydra_submitit_launcher.submitit_launcher.LocalLauncher"
RAY = "hydra_plugins.hydra_ray_launcher.ray_launcher.RayLauncher"
BASIC = "hydra._internal.core_plugins.basic_launcher.BasicLauncher"


def test_default_threads_share_the_cores_among_parallel_jobs():
    assert default_threads(hc(BASIC, mode=RunMode.RUN)) == CORES
    assert default_threads(hc(BASIC)) == CORES                       # one job at a time
    assert default_threads(hc(JOBLIB, n_jobs=-1)) == 1               # one job per core
    assert default_threads(hc(JOBLIB, n_jobs=2)) == max(1, CORES // 2)
    assert default_threads(hc(JOBLIB, n_jobs=64)) == 1
    assert default_threads(hc(SLURM, cpus_per_task=1)) == 1
    assert default_threads(hc(SLURM, cpus_per_task=None)) == CORES   # the allocation (affinity mask)
    assert default_threads(hc(LOCAL, cpus_per_task=None)) == 1       # all local jobs start at once
    assert default_threads(hc(RAY, ray={"init": {"address": None}, "remote": {}})) == 1
    assert default_threads(hc(RAY, ray={"remote": {"num_cpus": 1}})) == 1


def test_sweeper_value_single_and_multi_objective_and_failures():
    summary = {"status": "completed", "final": {"answer_mc_acc": 0.5, "follow_rate": 0.25}, "forgetting_pct": 3.0}
    one = OmegaConf.create({"eval": {"objective": "final.answer_mc_acc", "objectives": []}})
    many = OmegaConf.create({"eval": {"objective": "final.answer_mc_acc",
                                      "objectives": ["final.follow_rate", "forgetting_pct"]}})
    assert sweeper_value(summary, one) == 0.5
    assert sweeper_value(summary, many) == [0.25, 3.0]
    # no usable value -> None (Optuna: a FAIL trial, the search goes on; NaN would stop it)
    assert sweeper_value({**summary, "status": "failed"}, one) is None
    assert sweeper_value({**summary, "status": "failed"}, many) is None
    assert sweeper_value({**summary, "forgetting_pct": None}, many) is None
    assert sweeper_value({**summary, "final": {"answer_mc_acc": math.nan}}, one) is None
    assert sweeper_value({"status": "completed", "final": {}}, one) is None
