"""Job-level faults: one writer per job directory, results that follow the files the job read,
signals that end a job like Ctrl-C, and a sweep whose report failed."""

import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from sft_sweep.joblock import JobDirInUse, job_dir_lock
from tests.app.test_job import SMOKE, cache_dir, run_job  # noqa: F401 (a fixture)
from tests.conftest import REPO, plant_report_leftovers

ENV = {k: v for k, v in os.environ.items() if k != "HYDRA_FULL_ERROR"}


def _holder(job_dir: Path) -> subprocess.Popen:
    """Another process holding the job directory's lock until it is killed."""
    code = textwrap.dedent(f"""
        import sys, time
        from sft_sweep.joblock import job_dir_lock
        with job_dir_lock({str(job_dir)!r}):
            print("locked", flush=True)
            time.sleep(600)
    """)
    p = subprocess.Popen([sys.executable, "-c", code], cwd=REPO, stdout=subprocess.PIPE, text=True, env=ENV)
    assert p.stdout.readline().strip() == "locked"
    return p


def test_a_second_writer_is_refused_naming_the_holder(tmp_path, cache_dir):
    job_dir = tmp_path / "job"
    holder = _holder(job_dir)
    try:
        r = subprocess.run([sys.executable, "-m", "sft_sweep.cli", *SMOKE, f"pretrain.cache_dir={cache_dir}",
                            f"hydra.run.dir={job_dir}"], cwd=REPO, capture_output=True, text=True, env=ENV,
                           timeout=300)
    finally:
        holder.kill()
        holder.wait()
    assert r.returncode == 1, r.stderr[-2000:]
    assert f"in use by pid {holder.pid} on " in r.stderr and "Traceback" not in r.stderr
    assert not (job_dir / "summary.json").exists() and not (job_dir / "metrics.jsonl").exists()


def test_a_sweep_whose_job_directory_is_in_use_exits_non_zero(tmp_path, cache_dir):
    sweep = tmp_path / "sweep"
    holder = _holder(sweep / "optim.lr=0.001")
    try:
        r = subprocess.run([sys.executable, "-m", "sft_sweep.cli", "-m", *SMOKE, f"pretrain.cache_dir={cache_dir}",
                            "optim.lr=1e-3", f"hydra.sweep.dir={sweep}"], cwd=REPO, capture_output=True, text=True,
                           env=ENV, timeout=300)
    finally:
        holder.kill()
        holder.wait()
    assert r.returncode == 1, r.stderr[-2000:]
    assert f"in use by pid {holder.pid}" in r.stderr + r.stdout
    assert "1 job(s) not run: another process was writing their directory" in r.stderr
    assert not (sweep / "optim.lr=0.001" / "metrics.jsonl").exists()


def test_a_lock_whose_holder_died_is_stale(tmp_path):
    job_dir = tmp_path / "job"
    holder = _holder(job_dir)
    with pytest.raises(JobDirInUse, match=f"pid {holder.pid}"):
        with job_dir_lock(job_dir):
            pass
    holder.send_signal(signal.SIGKILL)
    holder.wait()
    with job_dir_lock(job_dir):  # taken at once: the kernel dropped the dead holder's lock
        pass
    with job_dir_lock(job_dir):  # and released again on leaving the block
        pass


def test_a_sweep_of_duplicate_values_is_refused_before_any_job_runs(tmp_path):
    sweep = tmp_path / "sweep"
    r = subprocess.run([sys.executable, "-m", "sft_sweep.cli", "-m", *SMOKE, f"pretrain.cache_dir={tmp_path}/cache",
                        "optim.lr=1e-3,0.001", f"hydra.sweep.dir={sweep}"], cwd=REPO, capture_output=True,
                       text=True, env=ENV, timeout=300)
    assert r.returncode == 1, r.stderr[-2000:]
    assert "2 jobs of this sweep would write one directory 'optim.lr=0.001'" in r.stderr
    assert "Traceback" not in r.stderr
    assert not sweep.exists() and not (tmp_path / "cache").exists()


def _conv(q, a):
    return {"messages": [{"role": "user", "content": q}, {"role": "assistant", "content": a}]}


def _write_data(path: Path, answer: str) -> Path:
    path.write_text("".join(json.dumps(_conv(f"question {i}?", f"{answer} {i}.")) + "\n" for i in range(24)))
    return path


def test_a_completed_job_runs_again_when_what_it_read_changed(tmp_path, cache_dir, caplog):
    data = _write_data(tmp_path / "data.jsonl", "the answer is")
    extra = ["data=files", f"data.datasets.main.path={data}", "train.max_steps=2"]
    job, first = run_job(tmp_path, cache_dir, extra)
    assert first["status"] == "completed", first.get("error")
    inputs = first["inputs"]
    assert inputs["data.datasets.main.path"]["path"] == str(data)
    assert len(inputs["data.datasets.main.path"]["sha256"]) == 64 and "sha256" in inputs["base model"]

    _, again = run_job(tmp_path, cache_dir, extra)
    assert again.get("skipped") is True

    _write_data(data, "it is")  # same config, other bytes
    caplog.clear()
    with caplog.at_level("INFO", logger="sft_sweep"):
        _, changed = run_job(tmp_path, cache_dir, extra)
    assert not changed.get("skipped") and changed["status"] == "completed"
    assert "data.datasets.main.path" in caplog.text and "changed since" in caplog.text
    assert changed["inputs"]["data.datasets.main.path"]["sha256"] != inputs["data.datasets.main.path"]["sha256"]


@pytest.mark.parametrize("damage", ["truncated", "deleted"])
def test_a_completed_job_with_a_damaged_model_runs_again(tmp_path, cache_dir, caplog, damage):
    job, first = run_job(tmp_path, cache_dir, ["train.max_steps=2"])
    assert first["status"] == "completed", first.get("error")
    model = job.dir / "model.npz"
    if damage == "truncated":
        model.write_bytes(model.read_bytes()[:1000])
    else:
        model.unlink()
    with caplog.at_level("INFO", logger="sft_sweep"):
        _, again = run_job(tmp_path, cache_dir, ["train.max_steps=2"])
    assert not again.get("skipped") and again["status"] == "completed"
    assert "model file cannot be used" in caplog.text
    assert model.stat().st_size > 1000


def _wait_for(predicate, timeout=240.0):
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if predicate():
            return True
        time.sleep(0.2)
    return False


def _status(job_dir: Path):
    try:
        return json.loads((job_dir / "summary.json").read_text()).get("status")
    except (OSError, ValueError):
        return None


LONG_JOB = ["train.epochs=100", "train.max_steps=400", "train.eval_interval=400", "train.checkpoint_interval=2", "train.log_interval=1"]


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGHUP])
def test_a_signal_ends_a_job_as_interrupted_and_resumable(tmp_path, cache_dir, signum):
    job_dir = tmp_path / "job"
    cmd = [sys.executable, "-m", "sft_sweep.cli", *SMOKE, f"pretrain.cache_dir={cache_dir}", *LONG_JOB,
           f"hydra.run.dir={job_dir}"]
    p = subprocess.Popen(cmd, cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=ENV)
    assert _wait_for(lambda: (job_dir / "checkpoint.npz").exists()), "no checkpoint written"
    p.send_signal(signum)
    _, err = p.communicate(timeout=120)
    assert p.returncode == 128 + signum, err[-2000:]
    assert _status(job_dir) == "interrupted" and "Traceback" not in err
    assert "run the same command again to resume" in err


def _children(pid: int) -> set[int]:
    """Every live descendant of ``pid`` (Linux /proc)."""
    parents: dict[int, int] = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        parents[int(stat.parent.name)] = int(fields[1])
    found, frontier = set(), {pid}
    while frontier:
        frontier = {c for c, p in parents.items() if p in frontier} - found
        found |= frontier
    return found


def _alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"


@pytest.mark.slow
def test_sigterm_to_a_joblib_multirun_stops_its_workers(tmp_path, cache_dir):
    sweep = tmp_path / "sweep"
    cmd = [sys.executable, "-m", "sft_sweep.cli", "-m", *SMOKE, f"pretrain.cache_dir={cache_dir}", *LONG_JOB,
           "hydra/launcher=joblib", "hydra.launcher.n_jobs=2", "optim.lr=1e-4,2e-4", f"hydra.sweep.dir={sweep}"]
    p = subprocess.Popen(cmd, cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=ENV)
    def jobs():
        return sorted(sweep.glob("optim.lr=*"))

    assert _wait_for(lambda: len(jobs()) == 2 and all((j / "checkpoint.npz").exists() for j in jobs())), \
        "the jobs did not start"
    workers = _children(p.pid)
    assert workers
    p.send_signal(signal.SIGTERM)
    _, err = p.communicate(timeout=120)
    assert p.returncode == 128 + signal.SIGTERM, err[-2000:]
    assert _wait_for(lambda: not any(_alive(w) for w in workers), timeout=30), \
        [w for w in workers if _alive(w)]
    assert [_status(j) for j in jobs()] == ["interrupted", "interrupted"]


# (how the sweep is started, who gets SIGINT): Ctrl-C reaches the terminal's whole foreground group;
# under ``timeout`` the command gets a second copy, passed on by timeout itself.
CTRL_C = [([], "group"), (["timeout", "300"], "group"), ([], "command")]


@pytest.mark.slow
@pytest.mark.parametrize("wrapper,target", CTRL_C, ids=["terminal", "under_timeout", "command_only"])
def test_ctrl_c_ends_a_joblib_multirun_in_one_go(tmp_path, cache_dir, wrapper, target):
    sweep = tmp_path / "sweep"
    cmd = [*wrapper, sys.executable, "-m", "sft_sweep.cli", "-m", *SMOKE, f"pretrain.cache_dir={cache_dir}",
           *LONG_JOB, "hydra/launcher=joblib", "hydra.launcher.n_jobs=2", "optim.lr=1e-4,2e-4",
           f"hydra.sweep.dir={sweep}"]
    p = subprocess.Popen(cmd, cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=ENV,
                         start_new_session=True)

    def jobs():
        return sorted(sweep.glob("optim.lr=*"))

    try:
        assert _wait_for(lambda: len(jobs()) == 2 and all((j / "checkpoint.npz").exists() for j in jobs())), \
            "the jobs did not start"
        spawned = _children(p.pid)
        if target == "group":
            os.killpg(p.pid, signal.SIGINT)
        else:
            os.kill(p.pid, signal.SIGINT)
        _, err = p.communicate(timeout=30)
    finally:
        if p.poll() is None:
            os.killpg(p.pid, signal.SIGKILL)
    assert p.returncode == 130 and "Traceback" not in err, err[-3000:]
    assert err.strip().splitlines()[-1] == "sft-sweep: interrupted; run the same command again to resume", err[-3000:]
    assert _wait_for(lambda: not any(_alive(w) for w in spawned), timeout=20)
    assert [_status(j) for j in jobs()] == ["interrupted", "interrupted"]


@pytest.mark.slow
def test_kill_9_of_a_joblib_multirun_leaves_no_process_and_no_running_job(tmp_path, cache_dir):
    """The command killed outright passes nothing on: its workers notice it is gone, record their
    jobs as interrupted and exit, and the resource trackers end with them, within seconds."""
    sweep = tmp_path / "sweep"
    cmd = [sys.executable, "-m", "sft_sweep.cli", "-m", *SMOKE, f"pretrain.cache_dir={cache_dir}", *LONG_JOB,
           "hydra/launcher=joblib", "hydra.launcher.n_jobs=2", "optim.lr=1e-4,2e-4", f"hydra.sweep.dir={sweep}"]
    p = subprocess.Popen(cmd, cwd=REPO, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=ENV)

    def jobs():
        return sorted(sweep.glob("optim.lr=*"))

    try:
        assert _wait_for(lambda: len(jobs()) == 2 and all((j / "checkpoint.npz").exists() for j in jobs())), \
            "the jobs did not start"
        spawned = _children(p.pid)
        assert spawned
    finally:
        p.kill()
        p.wait(timeout=30)
    assert _wait_for(lambda: not any(_alive(w) for w in spawned), timeout=20), \
        [(w, Path(f"/proc/{w}/cmdline").read_bytes()[:80]) for w in spawned if _alive(w)]
    assert [_status(j) for j in jobs()] == ["interrupted", "interrupted"]


def test_a_sweep_whose_report_failed_exits_non_zero(tmp_path, cache_dir):
    sweep = tmp_path / "sweep"
    (sweep / "report.html").mkdir(parents=True)  # the report cannot replace a directory
    r = subprocess.run([sys.executable, "-m", "sft_sweep.cli", "-m", *SMOKE, f"pretrain.cache_dir={cache_dir}",
                        "train.max_steps=2", "optim.lr=1e-3", f"hydra.sweep.dir={sweep}"], cwd=REPO,
                       capture_output=True, text=True, env=ENV, timeout=600)
    assert r.returncode == 1, r.stderr[-2000:]
    assert "the sweep's report was not written" in r.stderr
    assert json.loads((sweep / "sweep_outcome.json").read_text())["report_error"]


def test_the_report_callback_removes_what_a_killed_report_left(tmp_path):
    from omegaconf import OmegaConf

    from analysis.callback import ReportCallback

    sweep = tmp_path / "sweep"
    left, fresh = plant_report_leftovers(sweep)
    ReportCallback().on_multirun_end(OmegaConf.create({"hydra": {"sweep": {"dir": str(sweep)}}}))
    assert not any(p.exists() for p in left) and fresh.exists()
