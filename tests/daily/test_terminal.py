"""What the terminal shows: short job labels, log lines never glued to a bar, Ctrl-C as one line."""

import json
import os
import pty
import re
import select
import signal
import subprocess
import sys
import time
from types import SimpleNamespace

import pytest
from hydra.types import RunMode
from omegaconf import OmegaConf

from sft_sweep.cli import SWEPT_ENV, job_label, runs_beside_others

SMOKE = ["experiment=smoke", "train.threads=1"]


def _hc(mode, task, launcher="hydra._internal.core_plugins.basic_launcher.BasicLauncher", n_jobs=None,
        params=None):
    launcher_cfg = {"_target_": launcher, **({"n_jobs": n_jobs} if n_jobs is not None else {})}
    return SimpleNamespace(mode=mode, launcher=OmegaConf.create(launcher_cfg),
                           overrides=SimpleNamespace(task=task), sweeper=OmegaConf.create({"params": params}),
                           job=SimpleNamespace(override_dirname=",".join(task), num=0))


def test_label_is_the_swept_values_only(monkeypatch):
    monkeypatch.setenv(SWEPT_ENV, "optim.lr")
    task = ["data.datasets.main.path=/very/long/path/to/data.json", "optim.lr=3e-4", "train.epochs=2"]
    hc = _hc(RunMode.MULTIRUN, task, params={"train.epochs": "1,2"})
    assert job_label(hc, OmegaConf.create({"name": "x"})) == "lr=3e-4 epochs=2"


def test_label_keeps_full_keys_when_their_last_parts_collide(monkeypatch):
    monkeypatch.setenv(SWEPT_ENV, "optim.lr,pretrain.lr")
    hc = _hc(RunMode.MULTIRUN, ["optim.lr=1", "pretrain.lr=2"])
    assert job_label(hc, OmegaConf.create({"name": "x"})) == "optim.lr=1 pretrain.lr=2"


def test_single_run_is_labelled_by_its_name():
    assert job_label(_hc(RunMode.RUN, ["optim.lr=1"]), OmegaConf.create({"name": "smoke"})) == "smoke"


def test_parallel_launchers_share_the_terminal():
    joblib = "hydra_plugins.hydra_joblib_launcher.joblib_launcher.JoblibLauncher"
    assert runs_beside_others(_hc(RunMode.MULTIRUN, [], joblib, n_jobs=2))
    assert runs_beside_others(_hc(RunMode.MULTIRUN, [], joblib, n_jobs=-1))
    assert not runs_beside_others(_hc(RunMode.MULTIRUN, [], joblib, n_jobs=1))
    assert not runs_beside_others(_hc(RunMode.MULTIRUN, []))
    assert not runs_beside_others(_hc(RunMode.RUN, [], joblib, n_jobs=2))


def _spawn_in_pty(args, cwd):
    """Start sft-sweep with a terminal as its stdout and stderr (so it draws progress bars)."""
    master, slave = pty.openpty()
    env = {**os.environ, "MPLBACKEND": "Agg", "COLUMNS": "120"}
    env.pop("HYDRA_FULL_ERROR", None)
    proc = subprocess.Popen([sys.executable, "-m", "sft_sweep.cli", *args], cwd=cwd, stdin=slave,
                            stdout=slave, stderr=slave, env=env, start_new_session=True)
    os.close(slave)
    return proc, master


def _read_until(proc, master, done, timeout=300):
    out = b""
    end = time.time() + timeout
    while time.time() < end:
        r, _, _ = select.select([master], [], [], 0.5)
        if r:
            try:
                chunk = os.read(master, 65536)
            except OSError:
                break
            if not chunk:
                break
            out += chunk
        text = out.decode(errors="replace")
        if done(text) or (proc.poll() is not None and not r):
            break
    return out.decode(errors="replace")


def _screen_lines(text):
    return [seg for line in text.split("\n") for seg in line.split("\r") if seg.strip()]


@pytest.mark.slow
def test_ctrl_c_in_a_single_job_is_one_line_and_the_rerun_resumes(tmp_path):
    args = [*SMOKE, f"pretrain.cache_dir={tmp_path / 'cache'}", "hydra.run.dir=job", "train.epochs=20",
            "train.max_steps=400", "train.checkpoint_interval=10", "train.eval_interval=50"]
    proc, master = _spawn_in_pty(args, tmp_path)
    text = _read_until(proc, master, lambda t: "step 50/400 eval" in t)
    assert "step 50/400 eval" in text, text[-3000:]
    time.sleep(1.0)
    os.killpg(proc.pid, signal.SIGINT)  # what Ctrl-C does: the whole foreground process group
    text += _read_until(proc, master, lambda t: False, timeout=60)
    assert proc.wait(timeout=60) == 130
    assert "Traceback" not in text and "KeyboardInterrupt" not in text, text[-3000:]
    assert text.count("sft-sweep: interrupted; run the same command again to resume") == 1
    # Log lines start their own line on the screen, never glued behind a progress bar.
    for seg in _screen_lines(text):
        assert not (re.search(r"it/s", seg) and "INFO]" in seg), seg
    summary = json.loads((tmp_path / "job" / "summary.json").read_text())
    assert summary["status"] == "interrupted"
    again = subprocess.run([sys.executable, "-m", "sft_sweep.cli", *args], cwd=tmp_path, capture_output=True,
                           text=True, timeout=600)
    assert again.returncode == 0, again.stderr[-2000:]
    assert "resuming from step" in again.stdout + again.stderr
    assert json.loads((tmp_path / "job" / "summary.json").read_text())["status"] == "completed"


@pytest.mark.slow
def test_ctrl_c_in_a_parallel_sweep_marks_both_jobs_and_the_rerun_finishes(tmp_path):
    args = ["-m", *SMOKE, f"pretrain.cache_dir={tmp_path / 'cache'}", "hydra.sweep.dir=sweep", "train.epochs=20",
            "train.max_steps=300", "train.checkpoint_interval=10", "train.eval_interval=50",
            "hydra/launcher=joblib", "hydra.launcher.n_jobs=2"]
    proc, master = _spawn_in_pty(args, tmp_path)
    text = _read_until(proc, master, lambda t: t.count("/300 eval") >= 2)
    assert text.count("/300 eval") >= 2, text[-3000:]
    assert "it/s" not in text  # no progress bars competing for one line
    assert "[lr=0.0003] step 50/300 eval" in text and "[lr=0.003] step 50/300 eval" in text
    os.killpg(proc.pid, signal.SIGINT)
    text += _read_until(proc, master, lambda t: False, timeout=90)
    assert proc.wait(timeout=90) == 130
    assert "Traceback" not in text and "KeyboardInterrupt" not in text, text[-3000:]
    assert text.count("sft-sweep: interrupted") == 1
    statuses = [json.loads(p.read_text())["status"] for p in (tmp_path / "sweep").glob("*/summary.json")]
    assert statuses == ["interrupted", "interrupted"]
    again = subprocess.run([sys.executable, "-m", "sft_sweep.cli", *args], cwd=tmp_path, capture_output=True,
                           text=True, timeout=900, env={**os.environ, "MPLBACKEND": "Agg"})
    assert again.returncode == 0, again.stderr[-2000:]
    statuses = [json.loads(p.read_text())["status"] for p in (tmp_path / "sweep").glob("*/summary.json")]
    assert statuses == ["completed", "completed"]
