"""Submitting a sweep as one Slurm job array and waiting for its tasks (``SlurmLauncher.launch``).

submitit learns a task's state from ``sacct``. Without Slurm accounting that command fails, and
a task cancelled before it wrote its result is waited for forever; with accounting, the first such
task raises and the sweep stops with the other tasks still running, unwatched, and no report.
This wait reads the results submitit's tasks write, and asks ``squeue`` (which every cluster
has) which tasks are still queued or running. A task gone from the queue without a result is
lost: its last state comes from ``sacct`` when accounting is on, else ``scontrol show job``; it
is named in one line and recorded for the sweep's outcome (``jobfiles.record_lost_task``), which
makes the command fail after the report, and the other tasks are waited for as before.
"""

from __future__ import annotations

import logging
import os
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Sequence

from hydra.core.singleton import Singleton
from hydra.core.utils import JobReturn, JobStatus, filter_overrides
from omegaconf import OmegaConf

from sft_sweep.dirnames import sweep_dir_of
from sft_sweep.jobfiles import record_lost_task

log = logging.getLogger(__name__)

#: Seconds between two looks at the queue: short at first, then longer (a big sweep waits hours,
#: and each look is one call to the scheduler for all its tasks).
FIRST_POLL_S = 2.0
MAX_POLL_S = 30.0
#: How long a task may be gone from the queue before its result must be there: a file written on
#: another node shows up on a shared file system with a delay. A task that ended by itself
#: (COMPLETED, or FAILED: a failed job's task writes its result, then exits 1) gets longer.
RESULT_GRACE_S = 15.0
RESULT_GRACE_ENDED_S = 120.0


@dataclass
class Task:
    idx: int
    label: str  # the job's overrides, as Hydra lists them
    overrides: list[str]
    job: Any  # submitit's SlurmJob
    gone_since: float | None = None

    @property
    def slurm_id(self) -> str:
        return str(self.job.job_id)  # <array>_<task>, or <job> for a sweep of one job


def launch(launcher: Any, job_overrides: Sequence[Sequence[str]], initial_job_idx: int) -> list[JobReturn]:
    """Submit the jobs as one array with the launcher's settings and wait for every task."""
    import submitit
    from hydra_plugins.hydra_submitit_launcher.config import BaseQueueConf

    config = launcher.config
    settings = dict(launcher.params)
    executor = submitit.AutoExecutor(cluster="slurm", folder=settings.pop("submitit_folder"),
                                     slurm_max_num_timeout=settings.pop("max_num_timeout"))
    # the settings every submitit executor knows keep their names, the Slurm ones take a prefix
    shared = set(OmegaConf.structured(BaseQueueConf).keys())
    executor.update_parameters(**{(k if k in shared else f"slurm_{k}"): v for k, v in settings.items()})

    sweep_dir = Path(str(config.hydra.sweep.dir))
    sweep_dir.mkdir(parents=True, exist_ok=True)
    if "mode" in config.hydra.sweep:
        os.chmod(sweep_dir, mode=int(str(config.hydra.sweep.mode), 8))
    log.info(f"Slurm sweep output dir : {sweep_dir}")
    labels, calls = [], []
    for idx, overrides in enumerate(job_overrides, start=initial_job_idx):
        labels.append(" ".join(filter_overrides(overrides)) or f"#{idx}")
        log.info(f"\t#{idx} : {labels[-1]}")
        calls.append((list(overrides), "hydra.sweep.dir", idx, f"job_id_for_{idx}", Singleton.get_state()))
    jobs = executor.map_array(launcher, *zip(*calls))
    tasks = [Task(c[2], label, c[0], job) for c, label, job in zip(calls, labels, jobs)]
    log.info("submitted: Slurm job %s", ", ".join(sorted({t.slurm_id.split("_")[0] for t in tasks})))
    return wait(tasks, sweep_dir_of(config), lambda t: job_dir_name(launcher, t))


def job_dir_name(launcher: Any, task: Task) -> str:
    """The task's job directory under the sweep directory (the name the report shows), else its
    overrides. Composed only for a lost task: a config costs tens of milliseconds."""
    try:
        cfg = launcher.hydra_context.config_loader.load_sweep_config(launcher.config, list(task.overrides))
        return str(OmegaConf.select(cfg, "hydra.sweep.subdir")) or task.label
    except Exception:  # noqa: BLE001 - the overrides name the task too
        return task.label


def wait(tasks: list[Task], sweep_dir: Path, name: Callable[[Task], str] = lambda t: t.label,
         clock: Callable[[], float] = time.monotonic, sleep: Callable[[float], None] = time.sleep) -> list[JobReturn]:
    """Each task's JobReturn once every task has a result or is lost (see the module docstring);
    ``name(task)`` names a lost task."""
    results: dict[int, JobReturn] = {}
    waiting = list(tasks)
    delay = FIRST_POLL_S
    next_look = clock() + delay
    try:
        while waiting:
            for t in list(waiting):
                if has_result(t):
                    results[t.idx] = result_of(t, sweep_dir, name)
                    waiting.remove(t)
            if waiting and clock() >= next_look:
                queued = queued_ids(t.slurm_id for t in waiting)
                now = clock()
                for t in list(waiting):
                    if queued is None or t.slurm_id in queued:  # no answer from Slurm: ask again later
                        t.gone_since = None
                        continue
                    t.gone_since = t.gone_since if t.gone_since is not None else now
                    gone_for = now - t.gone_since
                    if gone_for < RESULT_GRACE_S or has_result(t, refresh=True):
                        continue
                    state = final_state(t.slurm_id)
                    if state.startswith(("COMPLETED", "FAILED")) and gone_for < RESULT_GRACE_ENDED_S:
                        continue
                    waiting.remove(t)
                    results[t.idx] = lost(t, name(t), f"Slurm job {t.slurm_id} {state}", sweep_dir, len(waiting))
                delay = min(delay * 2, MAX_POLL_S)
                gone = any(t.gone_since is not None for t in waiting)
                next_look = now + (FIRST_POLL_S if gone else delay)
            if waiting:
                sleep(1)
    except KeyboardInterrupt:
        if waiting:
            arrays = ",".join(sorted({t.slurm_id.split("_")[0] for t in waiting}))
            log.warning("%d task(s) still in Slurm (job %s): `scancel %s` stops them; the same command "
                        "again resumes what they leave unfinished", len(waiting), arrays, arrays)
        raise
    return [results[t.idx] for t in tasks]


def has_result(task: Task, refresh: bool = False) -> bool:
    """Whether the task's result file is there. ``refresh``: change its folder's mode (to the same
    mode) first, which makes an NFS client look again instead of answering from its cache."""
    folder = task.job.paths.result_pickle.parent
    if refresh:
        try:
            folder.chmod(folder.stat().st_mode)
        except OSError:
            pass
    return task.job.paths.result_pickle.exists()


def result_of(task: Task, sweep_dir: Path, name: Callable[[Task], str]) -> JobReturn:
    """The JobReturn the task wrote; a task whose code raised outside the job (submitit records
    that as an error) is lost, named with the error's last line."""
    from submitit.core.utils import FailedJobError, UncompletedJobError, pickle_load

    try:
        return task.job.results()[0]
    except (FailedJobError, UncompletedJobError) as err:
        try:
            _, trace = pickle_load(task.job.paths.result_pickle)
        except Exception:  # noqa: BLE001 - the message below stands without it
            trace = str(err)
        last = [line for line in str(trace).splitlines() if line.strip()][-1:] or ["no error recorded"]
        reason = f"Slurm job {task.slurm_id} raised {last[0].strip()}; its log: {task.job.paths.stderr}"
        return lost(task, name(task), reason, sweep_dir, None)


def lost(task: Task, name: str, reason: str, sweep_dir: Path, others: int | None) -> JobReturn:
    """Record a task that ended without a result, and the JobReturn the sweeper gets for it."""
    after = f"; waiting for the other {others} task(s)" if others else ""
    log.error(f"task #{task.idx} ({name}) ended without a result: {reason}{after}")
    record_lost_task(sweep_dir, name, reason)
    # COMPLETED with no value, as a job that failed returns in a multirun: Hydra's basic sweeper
    # raises on a FAILED return, which would end the sweep before its report; a search sweeper
    # takes None as a trial without a value (FAIL).
    return JobReturn(overrides=task.overrides, status=JobStatus.COMPLETED, _return_value=None)


def _slurm(*cmd: str) -> subprocess.CompletedProcess | None:
    try:
        return subprocess.run(list(cmd), capture_output=True, text=True, timeout=60)
    except (OSError, subprocess.SubprocessError) as err:
        log.debug("%s: %s", " ".join(cmd), err)
        return None


def queued_ids(slurm_ids) -> set[str] | None:
    """The ids among the sweep's tasks that Slurm still has queued or running (``squeue``), one
    per array task; None when ``squeue`` gave no answer."""
    arrays = sorted({i.split("_")[0] for i in slurm_ids})
    r = _slurm("squeue", "--noheader", "--array", "--format=%i", "--jobs=" + ",".join(arrays))
    if r is None:
        return None
    if r.returncode != 0:
        if "Invalid job id" in r.stderr:  # none of them known any more: all left the queue
            return set()
        log.debug("squeue failed: %s", r.stderr.strip())
        return None
    return {line.strip() for line in r.stdout.splitlines() if line.strip()}


def final_state(slurm_id: str) -> str:
    """The task's last state: ``sacct`` (Slurm accounting), else ``scontrol show job`` (which
    knows a job for MinJobAge after its end), else unknown."""
    r = _slurm("sacct", "--noheader", "--parsable2", "--allocations", "--format=JobID,State,ExitCode",
               "--jobs=" + slurm_id)
    if r is not None and r.returncode == 0:
        for line in r.stdout.splitlines():
            fields = line.split("|")
            if len(fields) == 3 and fields[0] == slurm_id:
                return f"{fields[1]}, exit code {fields[2]}"
    r = _slurm("scontrol", "show", "job", "--oneliner", slurm_id)
    if r is not None and r.returncode == 0:
        fields = dict(kv.split("=", 1) for kv in r.stdout.split() if "=" in kv)
        if "JobState" in fields:
            return f"{fields['JobState']}, exit code {fields.get('ExitCode', '?')}"
    return "in an unknown state (neither sacct nor scontrol knows it)"
