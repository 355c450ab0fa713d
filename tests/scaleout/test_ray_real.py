"""hydra/launcher=ray_cluster against a real local Ray head (``ray start --head``), then stopped.
Slow; needs the ray extra (CI installs it in a virtualenv of its own)."""

import os
import shutil
import subprocess
import sys
import tempfile

import pytest

from sft_sweep.config import register_configs
from tests.conftest import REPO

from .conftest import assert_completed_job, summaries

pytest.importorskip("hydra_plugins.hydra_ray_launcher", reason='needs pip install -e ".[ray]"')
register_configs()
RAY = shutil.which("ray") or os.path.join(os.path.dirname(sys.executable), "ray")


def test_ray_cluster_preset_leaves_the_object_store_to_the_cluster():
    from hydra import compose, initialize_config_dir

    from tests.conftest import CONF_DIR

    with initialize_config_dir(config_dir=str(CONF_DIR), version_base=None):
        cfg = compose("config", overrides=["hydra/launcher=ray_cluster"], return_hydra_config=True)
    init = cfg.hydra.launcher.ray.init
    assert init.address == "auto" and init.object_store_memory is None


@pytest.fixture
def ray_head():
    # Ray's socket paths must stay under 108 bytes: a short folder of its own, not pytest's tmp_path.
    tmp = tempfile.mkdtemp(prefix="ray-")
    env = {**os.environ, "RAY_TMPDIR": tmp}
    r = subprocess.run([RAY, "start", "--head", "--num-cpus=2", "--node-ip-address=127.0.0.1",
                        "--include-dashboard=false", "--disable-usage-stats", f"--temp-dir={tmp}"],
                       capture_output=True, text=True, env=env, timeout=180)
    assert r.returncode == 0, r.stdout[-2000:] + r.stderr[-2000:]
    try:
        yield env
    finally:
        subprocess.run([RAY, "stop", "--force"], capture_output=True, env=env, timeout=120)
        shutil.rmtree(tmp, ignore_errors=True)


@pytest.mark.slow
def test_a_sweep_runs_on_a_running_ray_head(ray_head, tmp_path):
    sweep = tmp_path / "sweep"
    cmd = [sys.executable, "-m", "sft_sweep.cli", "-m", "experiment=smoke", "hydra/launcher=ray_cluster",
           "hydra.launcher.ray.remote.num_cpus=1", "train.threads=1",
           f"pretrain.cache_dir={tmp_path / 'cache'}", f"hydra.sweep.dir={sweep}"]
    r = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True, timeout=900,
                       env={**ray_head, "MPLBACKEND": "Agg"})
    print(r.stdout[-3000:], r.stderr[-3000:])
    assert r.returncode == 0, r.stderr[-4000:]
    assert "Ray Launcher is launching 2 jobs" in r.stdout + r.stderr
    jobs = summaries(sweep)
    assert sorted(jobs) == ["optim.lr=0.0003", "optim.lr=0.003"]
    for name, s in jobs.items():
        assert_completed_job(sweep / name, s)
    assert (sweep / "report.md").is_file()
