"""MLflow's SQLite store as the local default: read back with ``mlflow.search_runs`` in a fresh
process that sets no environment variable; runs of an earlier file store get a one-line hint."""

import json
import os
import subprocess
import sys

import pytest

from sft_sweep.config import register_configs
from sft_sweep.train.job import Job
from tests.conftest import REPO, compose_cfg

pytest.importorskip("mlflow", reason="the mlflow extra is not installed")
from sft_sweep.tracking import mlflow_run  # noqa: E402

register_configs()
SMOKE = ["experiment=smoke", "train.threads=1"]


@pytest.fixture(scope="module")
def cache_dir(tmp_path_factory):
    return str(tmp_path_factory.mktemp("mlflowcache"))


def _run(base_dir, cache_dir, extra=(), name="job"):
    job = Job(compose_cfg([*SMOKE, f"pretrain.cache_dir={cache_dir}", "logger=mlflow", *extra]), base_dir / name,
              base_dir=str(base_dir), job_name=name)
    summary = job.run()
    assert summary["status"] == "completed", summary.get("error")
    return job.dir, summary


def search_runs(uri: str, experiment: str = "smoke") -> list[dict]:
    """``mlflow.search_runs`` in a new process whose environment has no MLFLOW_ variable."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("MLFLOW_")}
    code = ("import sys, mlflow; mlflow.set_tracking_uri(sys.argv[1]); "
            "print(mlflow.search_runs(experiment_names=[sys.argv[2]]).to_json(orient='records'))")
    r = subprocess.run([sys.executable, "-c", code, uri, experiment], capture_output=True, text=True, env=env,
                       timeout=300)
    assert r.returncode == 0, r.stderr[-3000:]
    return json.loads(r.stdout.strip().splitlines()[-1])


def test_store_uri_forms(tmp_path):
    assert mlflow_run.store_uri("runs/mlflow.db", str(tmp_path)) == f"sqlite:///{tmp_path.resolve()}/runs/mlflow.db"
    assert (tmp_path / "runs").is_dir()  # SQLite creates the file, not its folder
    assert mlflow_run.store_uri("mlruns", str(tmp_path)) == (tmp_path / "mlruns").resolve().as_uri()
    assert mlflow_run.store_uri("http://h:5000", str(tmp_path)) == "http://h:5000"
    assert mlflow_run.store_uri("sqlite:////x/y.db", str(tmp_path)) == "sqlite:////x/y.db"


@pytest.mark.slow  # a real job logged to MLflow's SQLite store (~12 s)
def test_default_store_is_sqlite_under_runs_and_readable_without_env(tmp_path, cache_dir):
    job_dir, summary = _run(tmp_path, cache_dir)
    db = tmp_path / "runs" / "mlflow.db"
    assert db.is_file() and not (tmp_path / "mlruns").exists()
    runs = search_runs(f"sqlite:///{db}")
    assert len(runs) == 1
    run = runs[0]
    assert run["status"] == "FINISHED" and run["tags.mlflow.runName"] == "job"
    assert run["params.optim.lr"] == "0.0003"
    assert run["metrics.final/raw_loss"] == pytest.approx(summary["final"]["raw_loss"])
    assert run["metrics.forgetting_pct"] == pytest.approx(summary["forgetting_pct"])


@pytest.mark.slow  # two real jobs and an MLflow store migration (~12 s)
def test_a_job_logged_to_a_file_store_resumes_into_the_database_with_a_hint(tmp_path, cache_dir, capsys):
    mlflow_run._hinted.clear()
    _run(tmp_path, cache_dir, ["logger.mlflow.tracking_uri=mlruns"])
    first = capsys.readouterr().err
    assert f"mlflow migrate-filestore --source {tmp_path.resolve() / 'mlruns'}" in first  # a file store: hint
    assert first.count("migrate-filestore") == 1
    # The same job again on the default store: the run recorded in tracking.json is in the file store, so the
    # job opens a new run in the database (it is skipped as completed, so remove its summary to re-run it).
    (tmp_path / "job" / "summary.json").unlink()
    _run(tmp_path, cache_dir)
    second = capsys.readouterr().err
    hint = [line for line in second.splitlines() if "migrate-filestore" in line]
    assert len(hint) == 1 and "holds runs of an earlier sweep" in hint[0], second[-2000:]
    assert hint[0].rstrip().endswith(f"--target sqlite:///{tmp_path.resolve() / 'runs' / 'mlflow.db'}")
    state = json.loads((tmp_path / "job" / "tracking.json").read_text())
    assert state["mlflow_tracking_uri"].startswith("sqlite:///")
    assert [r["status"] for r in search_runs(state["mlflow_tracking_uri"])] == ["FINISHED"]


@pytest.mark.slow
def test_a_parallel_sweep_shares_the_database(tmp_path):
    """Two joblib workers write one SQLite file at once, the parent run beside them."""
    r = subprocess.run([sys.executable, "-m", "sft_sweep.cli", "-m", *SMOKE, "logger=mlflow",
                        "hydra/launcher=joblib", "hydra.launcher.n_jobs=2",
                        f"pretrain.cache_dir={tmp_path / 'cache'}", "hydra.sweep.dir=sweep"], cwd=tmp_path,
                       capture_output=True, text=True, timeout=900, env={**os.environ, "MPLBACKEND": "Agg",
                                                                        "PYTHONPATH": str(REPO)})
    assert r.returncode == 0, r.stderr[-3000:]
    runs = search_runs(f"sqlite:///{tmp_path / 'runs' / 'mlflow.db'}")
    parent = [x for x in runs if x["tags.mlflow.runName"] == "sweep smoke"]
    assert len(parent) == 1 and parent[0]["status"] == "FINISHED"
    children = [x for x in runs if x.get("tags.mlflow.parentRunId") == parent[0]["run_id"]]
    assert sorted(c["tags.mlflow.runName"] for c in children) == ["lr=0.0003", "lr=0.003"]
    assert all(c["status"] == "FINISHED" and c["metrics.final/raw_loss"] is not None for c in children)
