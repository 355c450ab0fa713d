"""A wheel of the package, installed into a fresh virtualenv, runs its commands from any directory."""

import json
import os
import site
import subprocess
import sys
import venv
from pathlib import Path

import pytest

from tests.daily.cli_support import REPO

pytestmark = pytest.mark.slow


def _run(cmd, cwd, env=None, timeout=900):
    r = subprocess.run(cmd, cwd=cwd, capture_output=True, text=True, timeout=timeout,
                       env={**os.environ, "MPLBACKEND": "Agg", **(env or {})})
    assert r.returncode == 0, f"{cmd}: {r.stdout[-2000:]}\n{r.stderr[-3000:]}"
    return r


def test_wheel_in_a_fresh_venv_runs_from_another_directory(tmp_path):
    wheels = tmp_path / "wheels"
    _run([sys.executable, "-m", "pip", "wheel", "--no-deps", "-q", "-w", str(wheels), str(REPO)], cwd=tmp_path)
    wheel = next(wheels.glob("sft_sweep-*.whl"))
    env_dir = tmp_path / "venv"
    venv.EnvBuilder(with_pip=True).create(env_dir)
    py = env_dir / "bin" / "python"
    _run([str(py), "-m", "pip", "install", "-q", "--no-deps", str(wheel)], cwd=tmp_path)
    # Dependencies come from this interpreter's site-packages (a path entry: its .pth files, such as
    # an editable install of this checkout, are not processed), so the test needs no network.
    purelib = next(Path(p) for p in site.getsitepackages() if Path(p).name == "site-packages")
    (next((env_dir / "lib").glob("python3*")) / "site-packages" / "zz_test_deps.pth").write_text(f"{purelib}\n")
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    where = _run([str(py), "-c", "import sft_sweep, sft_sweep.appconf as a; print(sft_sweep.__file__); print(a.conf_dir())"],
                 cwd=elsewhere).stdout.split()
    assert where[0].startswith(str(env_dir)) and where[1].startswith(str(env_dir)), where
    bin_dir = env_dir / "bin"
    cfg = _run([str(bin_dir / "sft-sweep"), "--cfg", "job", "experiment=smoke"], cwd=elsewhere).stdout
    assert "name: smoke" in cfg
    assert "sft-sweep -m experiment=quickstart" in _run([str(bin_dir / "sft-sweep"), "--help"], cwd=elsewhere).stdout
    _run([str(bin_dir / "sft-sweep"), "-m", "experiment=smoke", "train.threads=1",
          f"pretrain.cache_dir={tmp_path / 'cache'}"], cwd=elsewhere)
    summaries = sorted((elsewhere / "runs" / "sweeps" / "smoke").glob("*/summary.json"))
    assert len(summaries) == 2
    assert all(json.loads(p.read_text())["status"] == "completed" for p in summaries)
    assert (elsewhere / "runs" / "sweeps" / "smoke" / "report.html").exists()
    for tool in ("sft-sweep-report", "sft-sweep-chat", "sft-sweep-inspect", "sft-sweep-eval"):
        assert "usage:" in _run([str(bin_dir / tool), "--help"], cwd=elsewhere).stdout, tool
    job = next(p.parent for p in summaries)
    assert "trained /" in _run([str(bin_dir / "sft-sweep-inspect"), "-n", "1", "model=tiny"], cwd=elsewhere).stdout
    chat = _run([str(bin_dir / "sft-sweep-chat"), str(job), "--prompt", "What is the capital of X?", "--json",
                 "--max-new-tokens", "8"], cwd=elsewhere).stdout
    assert set(json.loads(chat)["models"]) == {"base", "tuned"}
    assert "raw_loss" in _run([str(bin_dir / "sft-sweep-eval"), str(job)], cwd=elsewhere).stdout
