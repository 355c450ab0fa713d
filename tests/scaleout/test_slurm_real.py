"""hydra/launcher=slurm on a real single-node Slurm (slurm_cluster.py brings it up from Debian's
packages, without accounting): one job array that completes and writes its report; a cancelled task
ends the sweep with one line naming it, the rest reported, and the same command resumes it; a failed
job is a FAILED task; a task past its time limit is requeued from its checkpoint. Slow; CI runs
them as root. test_slurm_accounting.py repeats the cancelled task with accounting (slurmdbd)."""

import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.conftest import REPO

from .conftest import summaries
from .slurm_cluster import SlurmCluster

pytestmark = pytest.mark.slow
pytest.importorskip("hydra_plugins.hydra_submitit_launcher", reason='needs pip install -e ".[launchers]"')
if not (shutil.which("slurmctld") or (os.geteuid() == 0 and shutil.which("apt-get"))):
    pytest.skip("Slurm is not installed and cannot be (not root)", allow_module_level=True)

LAUNCHER = ["hydra/launcher=slurm", "hydra.launcher.partition=debug", "hydra.launcher.cpus_per_task=1",
            "hydra.launcher.mem_gb=1", "train.threads=1"]


@pytest.fixture(scope="module")
def cluster(tmp_path_factory):
    with SlurmCluster(tmp_path_factory.mktemp("slurm")) as c:
        yield c


@pytest.fixture(scope="module")
def slurm_cache(tmp_path_factory):
    return tmp_path_factory.mktemp("slurm_cache")


def command(sweep_dir, cache_dir, *overrides):
    return [sys.executable, "-m", "sft_sweep.cli", "-m", "experiment=smoke", f"pretrain.cache_dir={cache_dir}",
            f"hydra.sweep.dir={sweep_dir}", *LAUNCHER, *overrides]


def sweep_env(cluster):
    env = {**cluster.env, "MPLBACKEND": "Agg"}
    env.pop("HYDRA_FULL_ERROR", None)
    return env


def run(cluster, cmd, timeout=600, rc=0):
    r = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True, env=sweep_env(cluster), timeout=timeout)
    assert r.returncode == rc, f"{' '.join(cmd)}\n{r.stdout[-2000:]}\n{r.stderr[-4000:]}"
    return r


def array_ids(sweep_dir: Path) -> set[str]:
    """The Slurm job ids of the sweep, from submitit's folder: ``<array>_<task>`` per task of an array,
    ``<job>`` for a sweep of one job (submitit submits that as a plain job)."""
    return {p.name.split("_")[0] for p in (sweep_dir / ".submitit").iterdir()
            if re.fullmatch(r"\d+(_\d+)?", p.name)}


def job_fields(cluster, job_id: str) -> list[dict[str, str]]:
    """``scontrol show job`` of every task of ``job_id`` as key=value dicts (no accounting here)."""
    out = cluster.run("scontrol", "show", "job", "-o", job_id)
    return [dict(kv.split("=", 1) for kv in line.split() if "=" in kv) for line in out.splitlines() if line.strip()]


def test_a_sweep_is_one_job_array_that_completes_with_its_report(cluster, slurm_cache, tmp_path):
    sweep = tmp_path / "sweep"
    run(cluster, command(sweep, slurm_cache, "hydra.launcher.timeout_min=20"))
    jobs = summaries(sweep)
    assert sorted(jobs) == ["optim.lr=0.0003", "optim.lr=0.003"]
    assert all(s["status"] == "completed" for s in jobs.values()), jobs
    assert (sweep / "report.md").is_file() and (sweep / "report.html").is_file()
    (array,) = array_ids(sweep)  # both tasks belong to one array
    tasks = job_fields(cluster, array)
    print(cluster.run("scontrol", "show", "job", array))
    assert sorted(t["ArrayTaskId"] for t in tasks) == ["0", "1"]
    assert {t["JobState"] for t in tasks} == {"COMPLETED"} and {t["ArrayJobId"] for t in tasks} == {array}
    script = next((sweep / ".submitit").glob(".submission_file_*.sh")).read_text()
    assert "#SBATCH --signal=USR2@120" in script  # the warning signal the preset documents


# One job (lr fixed on the command line) that trains long enough to be cancelled or timed out.
LONG_JOB = ["optim.lr=3e-3", "train.epochs=1000", "train.eval_interval=100000"]


def job_dir_of(sweep: Path) -> Path | None:
    """The sweep's one job directory (its name lists the command line's overrides)."""
    return next((d for d in sweep.glob("optim.lr=0.003*") if d.is_dir()), None)


def _wait_for(predicate, timeout, what):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(1)
    pytest.fail(f"timed out after {timeout} s waiting for {what}")


def _train_steps(job_dir: Path) -> list[int]:
    rows = [json.loads(line) for line in (job_dir / "metrics.jsonl").read_text().splitlines()]
    return [r["step"] for r in rows if r["kind"] == "train"]


def slurm_lines(cluster, array: str) -> str:
    """What Slurm says of the sweep's tasks: ``sacct`` with accounting, else ``scontrol show job``."""
    acct = cluster.run("sacct", "-X", "-j", array, "-o", "JobID,JobName,State,ExitCode,Elapsed")
    if acct.strip():
        return acct
    return "".join(" ".join(f"{k}={t[k]}" for k in ("JobId", "ArrayJobId", "ArrayTaskId", "JobState", "ExitCode",
                                                      "RunTime") if k in t) + "\n" for t in job_fields(cluster, array))


def test_a_cancelled_task_ends_the_sweep_in_one_line_and_the_same_command_resumes_it(cluster, slurm_cache,
                                                                                         tmp_path):
    cancelled_task_ends_the_sweep(cluster, slurm_cache, tmp_path, resume=True)


def cancelled_task_ends_the_sweep(cluster, cache, tmp_path, resume: bool) -> None:
    """Two tasks: a short job that completes, and a long one cancelled after its first checkpoint.
    The sweep ends by itself: one line names the cancelled task, the report covers the other, the
    command fails, no task is left in the queue; the same command then resumes the cancelled job."""
    sweep = tmp_path / "sweep"
    cmd = command(sweep, cache, *LONG_JOB, "train.max_steps=40,400", "train.checkpoint_interval=10",
                  "hydra.launcher.timeout_min=20")
    proc = subprocess.Popen(cmd, cwd=REPO, env=sweep_env(cluster), stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True, start_new_session=True)
    try:
        long_job = lambda: next((d for d in sweep.glob("*max_steps=400*") if d.is_dir()), None)  # noqa: E731
        _wait_for(lambda: long_job() and (long_job() / "checkpoint.npz").exists(), 300, "the long job's checkpoint")
        (array,) = array_ids(sweep)
        cancelled = f"{array}_1"  # the second task of the array: train.max_steps=400
        print(cluster.run("squeue", "-r", "-j", array))
        cluster.run("scancel", cancelled)
        out, err = proc.communicate(timeout=300)  # the sweep ends by itself
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGTERM)
            proc.wait(timeout=60)
    print(out[-3000:], err[-3000:], sep="\n")
    print(slurm_lines(cluster, array))
    assert proc.returncode == 1, err[-3000:]
    assert "Traceback" not in out + err and "Bypassing sacct error" not in out + err
    final = [line for line in err.splitlines() if cancelled in line]
    assert len(final) == 1 and "max_steps=400" in final[0] and "CANCELLED" in final[0], err[-3000:]
    assert err.rstrip().splitlines()[-1] == final[0]  # the sweep's last word
    assert not cluster.run("squeue", "-h", "-j", array).strip()  # nothing left running unwatched
    jobs = summaries(sweep)
    short = next(s for name, s in jobs.items() if name.endswith("max_steps=40"))
    assert short["status"] == "completed", short.get("error")
    assert (sweep / "report.md").is_file() and (sweep / "report.html").is_file()
    outcome = json.loads((sweep / "sweep_outcome.json").read_text())
    assert outcome["failed"] == [] and len(outcome["lost"]) == 1 and cancelled in outcome["lost"][0][1], outcome
    if not resume:
        return
    job_dir = long_job()
    steps_before = _train_steps(job_dir)
    assert steps_before and steps_before[-1] < 400
    r = run(cluster, cmd)
    assert json.loads((job_dir / "summary.json").read_text())["status"] == "completed"
    steps = _train_steps(job_dir)
    assert steps[-1] == 400 and len(steps) == len(set(steps))  # resumed, no step logged twice
    log = "".join(p.read_text() for p in (sweep / ".submitit").glob("*/*_log.*"))
    assert "resuming from step" in log + r.stderr


def test_a_failed_job_is_a_failed_slurm_task_without_a_traceback(cluster, slurm_cache, tmp_path):
    sweep = tmp_path / "sweep"
    # lr=1e3 without clipping diverges at once: a failed job; lr=3e-3 completes.
    r = run(cluster, command(sweep, slurm_cache, "optim.lr=3e-3,1e3", "optim.grad_clip=0",
                             "hydra.launcher.timeout_min=20"), rc=1)
    (array,) = array_ids(sweep)
    print(slurm_lines(cluster, array))
    assert "Traceback" not in r.stdout + r.stderr
    assert "1 of 2 jobs failed" in r.stderr
    states = {t["ArrayTaskId"]: (t["JobState"], t["ExitCode"]) for t in job_fields(cluster, array)}
    assert states == {"0": ("COMPLETED", "0:0"), "1": ("FAILED", "1:0")}, states
    jobs = summaries(sweep)
    assert sorted(s["status"] for s in jobs.values()) == ["completed", "failed"]
    assert (sweep / "report.md").is_file()
    assert json.loads((sweep / "sweep_outcome.json").read_text())["lost"] == []


def test_a_task_past_its_time_limit_is_requeued_and_resumes(cluster, slurm_cache, tmp_path):
    sweep = tmp_path / "sweep"
    # A 2-minute limit with the warning 30 s before it (Slurm sends it up to a minute early), for a job
    # that needs more than one allocation however fast the machine: 3000 steps of the tiny model take
    # about 3 minutes on an idle 2-core machine (600 took 39 s there and fitted in one allocation).
    # Slurm holds a requeued job a while before it starts again.
    cmd = command(sweep, slurm_cache, *LONG_JOB, "train.max_steps=3000", "train.checkpoint_interval=20",
                  "hydra.launcher.timeout_min=2", "hydra.launcher.signal_delay_s=30", "hydra.launcher.max_num_timeout=20")
    t0 = time.monotonic()
    run(cluster, cmd, timeout=1200)
    job_dir = job_dir_of(sweep)
    summary = json.loads((job_dir / "summary.json").read_text())
    assert summary["status"] == "completed", summary.get("error")
    steps = _train_steps(job_dir)
    assert steps[-1] == 3000 and len(steps) == len(set(steps))
    (array,) = array_ids(sweep)
    (task,) = job_fields(cluster, array)
    print(f"requeue sweep: {time.monotonic() - t0:.0f} s; " + cluster.run("scontrol", "show", "job", array))
    assert int(task["Restarts"]) >= 1, task  # it was requeued
    log = "".join(p.read_text() for p in (sweep / ".submitit").glob("*/*_log.*"))
    assert "resuming from step" in log


def test_a_task_past_its_limit_with_no_requeue_left_ends_the_sweep_failed(cluster, slurm_cache, tmp_path):
    sweep = tmp_path / "sweep"
    # One job far longer than its 1-minute limit, with no requeue allowed. Slurm's warning signal
    # comes at any time in the first minute: once submitit handles it, its handler raises inside
    # the job ("timed-out too many times"), which the job records as its failure; before that the
    # signal ends the process with no result, a lost task. Either way: a FAILED task, one line
    # naming the job, exit status 1, no traceback, nothing left in the queue.
    cmd = command(sweep, slurm_cache, *LONG_JOB, "train.max_steps=100000", "train.checkpoint_interval=50",
                  "hydra.launcher.timeout_min=1", "hydra.launcher.signal_delay_s=30",
                  "hydra.launcher.max_num_timeout=0")
    r = run(cluster, cmd, timeout=600, rc=1)
    (array,) = array_ids(sweep)
    print(r.stderr[-1500:], slurm_lines(cluster, array), sep="\n")
    assert "Traceback" not in r.stdout + r.stderr
    (task,) = job_fields(cluster, array)
    assert task["JobState"] == "FAILED", task
    assert not cluster.run("squeue", "-h", "-j", array).strip()
    outcome = json.loads((sweep / "sweep_outcome.json").read_text())
    named = [line for line in r.stderr.splitlines() if "max_steps=100000" in line]
    if outcome["failed"]:  # the job recorded the timeout
        assert "1 of 1 jobs failed" in r.stderr and "timed-out too many times" in named[-1], r.stderr[-2000:]
        assert json.loads((job_dir_of(sweep) / "summary.json").read_text())["status"] == "failed"
    else:  # the signal came first
        assert len(outcome["lost"]) == 1 and len(named) == 1 and "ended without a result" in named[0], r.stderr
