"""How many cores this process may compute on, and how many threads a job's two phases use."""

from __future__ import annotations

import os
from dataclasses import dataclass


def available_cores() -> int:
    """The CPUs this process may use: its affinity mask (e.g. a Slurm allocation), not the machine's."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        return os.cpu_count() or 1


def threads_per_job(launcher: dict | None, multirun: bool) -> int:
    """A job's share of the CPUs this process may use (its affinity mask, e.g. a Slurm
    allocation), given the Hydra launcher that runs jobs beside it.

    joblib runs ``n_jobs`` jobs on this machine (-1: one per core); submitit gives each task
    ``cpus_per_task`` (submitit_local, which starts all jobs at once: 1 unless set); Ray each task
    ``ray.remote.num_cpus`` (Ray's default: 1). A launcher preset cannot set ``train.threads``
    itself (Hydra merges the app's config after its own), hence this.
    """
    cores = available_cores()
    if not multirun:
        return cores
    launcher = launcher or {}
    target = str(launcher.get("_target_", ""))
    per_job = cores
    if "joblib" in target:
        n = int(launcher.get("n_jobs") or 1)
        per_job = cores // (n if n > 0 else max(1, cores + 1 + n))  # joblib: -1 = all cores, -2 = all but one
    elif "submitit" in target:
        # Slurm: the task's allocation; submitit_local starts every job at once: 1 unless told.
        per_job = int(launcher.get("cpus_per_task") or (1 if "LocalLauncher" in target else cores))
    elif "ray" in target:
        per_job = int((launcher.get("ray") or {}).get("remote", {}).get("num_cpus") or 1)
    return max(1, min(cores, per_job))


@dataclass(frozen=True)
class Threads:
    """Compute threads of a job: ``sft`` for fine-tuning and evaluation, ``pretrain`` for building
    the base model (while one job pre-trains, the sweep's other jobs that need the same base wait
    on its lock, so pre-training may use every core, not just this job's share)."""

    sft: int
    pretrain: int


def job_threads(train_threads: int, pretrain_threads: int) -> Threads:
    """The thread counts of a job (0: every core this process may use), decided once per job.

    BLAS gets one thread: the model splits its batch over its own worker threads, each with one
    BLAS thread, and N jobs x N BLAS threads on N cores would oversubscribe the machine. It is
    set here, inside the job, because launchers such as joblib reuse worker processes: a limit
    set by the launcher's parent would not reach them.
    """
    from threadpoolctl import threadpool_limits

    threadpool_limits(limits=1)
    cores = available_cores()
    return Threads(sft=train_threads or cores, pretrain=pretrain_threads or cores)
