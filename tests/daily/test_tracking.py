"""logger=tensorboard / logger=mlflow: what a job writes, read back with the libraries' own readers."""

import json
import os
import subprocess
import sys

import pytest

from sft_sweep.config import register_configs
from sft_sweep.train.job import Job
from sft_sweep.jobfiles import read_jsonl
from tests.conftest import compose_cfg

register_configs()
SMOKE = ["experiment=smoke", "train.threads=1"]



@pytest.fixture(scope="module")
def cache_dir(tmp_path_factory):
    return str(tmp_path_factory.mktemp("trackcache"))


def _run(tmp_path, cache_dir, extra, name="job"):
    job = Job(compose_cfg([*SMOKE, f"pretrain.cache_dir={cache_dir}", *extra]), tmp_path / name, base_dir=str(tmp_path),
              job_name=name)
    summary = job.run()
    assert summary["status"] == "completed", summary.get("error")
    return job.dir, summary


def _eval_rows(job_dir):
    return [r for r in read_jsonl(job_dir / "metrics.jsonl") if r["kind"] == "eval"]


def test_tensorboard_events_read_back(tmp_path, cache_dir):
    pytest.importorskip("tensorboardX", reason="the tensorboard extra is not installed")
    ea_mod = pytest.importorskip("tensorboard.backend.event_processing.event_accumulator",
                                 reason="tensorboard (its event reader) is not installed")
    job_dir, summary = _run(tmp_path, cache_dir, ["logger=tensorboard"])
    ea = ea_mod.EventAccumulator(str(job_dir / "tensorboard"))
    ea.Reload()
    scalars = ea.Tags()["scalars"]
    evals = _eval_rows(job_dir)
    raw = ea.Scalars("eval/raw_loss")
    assert [e.step for e in raw] == [r["step"] for r in evals]
    assert [e.value for e in raw] == pytest.approx([r["raw_loss"] for r in evals], rel=1e-6)
    train = [r for r in read_jsonl(job_dir / "metrics.jsonl") if r["kind"] == "train"]
    assert [e.step for e in ea.Scalars("train/loss")] == [r["step"] for r in train]
    assert [e.value for e in ea.Scalars("train/lr")] == pytest.approx([r["lr"] for r in train], rel=1e-6)
    assert "summary/forgetting_pct" in scalars
    assert any(t.startswith("config") for t in ea.Tags()["tensors"])


@pytest.mark.slow  # a real job logged to MLflow (~6 s)
def test_mlflow_run_of_a_job_read_back(tmp_path, cache_dir):
    pytest.importorskip("mlflow", reason="the mlflow extra is not installed")
    job_dir, summary = _run(tmp_path, cache_dir, ["logger=mlflow_tb"])
    from mlflow.tracking import MlflowClient

    uri = f"sqlite:///{(tmp_path / 'runs' / 'mlflow.db').resolve()}"  # the default store, under the launch directory
    client = MlflowClient(tracking_uri=uri)
    exp = client.get_experiment_by_name("smoke")
    runs = client.search_runs([exp.experiment_id])
    assert len(runs) == 1
    run = runs[0]
    assert run.info.status == "FINISHED" and run.info.run_name == "job"
    assert run.data.params["optim.lr"] == "0.0003" and run.data.params["model.name"] == "tiny"
    history = client.get_metric_history(run.info.run_id, "eval/raw_loss")
    evals = _eval_rows(job_dir)
    history = sorted((m.step, m.value) for m in history)
    assert [s for s, _ in history] == [r["step"] for r in evals]
    assert [v for _, v in history] == pytest.approx([r["raw_loss"] for r in evals])
    assert run.data.metrics["forgetting_pct"] == pytest.approx(summary["forgetting_pct"])
    names = {a.path for a in client.list_artifacts(run.info.run_id)}
    assert {"summary.json", "samples.jsonl", "metrics.jsonl", "model.npz"} <= names


def test_a_tracking_failure_is_a_warning_and_the_job_completes(tmp_path, cache_dir, caplog):
    pytest.importorskip("mlflow", reason="the mlflow extra is not installed")
    job_dir, summary = _run(tmp_path, cache_dir, ["logger=mlflow", "logger.mlflow.tracking_uri=http://127.0.0.1:9"])
    assert any(w.startswith("mlflow tracking stopped") for w in summary["warnings"])
    assert json.loads((job_dir / "summary.json").read_text())["warnings"] == summary["warnings"]
    assert (job_dir / "model.npz").exists() and _eval_rows(job_dir)
    assert "mlflow tracking stopped" in caplog.text


def test_a_missing_tracking_library_is_a_warning(tmp_path, cache_dir, monkeypatch):
    monkeypatch.setitem(sys.modules, "tensorboardX", None)  # as if the extra were not installed
    monkeypatch.setitem(sys.modules, "sft_sweep.tracking.tensorboard", None)
    _, summary = _run(tmp_path, cache_dir, ["logger=tensorboard"])
    assert any("sft-sweep[tensorboard]" in w for w in summary["warnings"]), summary["warnings"]


@pytest.mark.slow
def test_mlflow_sweep_is_a_parent_run_with_child_runs(tmp_path):
    pytest.importorskip("mlflow", reason="the mlflow extra is not installed")
    r = subprocess.run([sys.executable, "-m", "sft_sweep.cli", "-m", *SMOKE, "logger=mlflow",
                        f"pretrain.cache_dir={tmp_path / 'cache'}", "hydra.sweep.dir=sweep"], cwd=tmp_path,
                       capture_output=True, text=True, timeout=900, env={**os.environ, "MPLBACKEND": "Agg"})
    assert r.returncode == 0, r.stderr[-3000:]
    import mlflow

    mlflow.set_tracking_uri(f"sqlite:///{tmp_path / 'runs' / 'mlflow.db'}")
    df = mlflow.search_runs(experiment_names=["smoke"])
    parent = df[df["tags.mlflow.runName"] == "sweep smoke"]
    assert len(parent) == 1 and parent.iloc[0]["status"] == "FINISHED"
    children = df[df["tags.mlflow.parentRunId"] == parent.iloc[0]["run_id"]]
    assert sorted(children["tags.mlflow.runName"]) == ["lr=0.0003", "lr=0.003"]
    assert (children["status"] == "FINISHED").all() and children["metrics.final/raw_loss"].notna().all()
    from mlflow.tracking import MlflowClient

    arts = {a.path for a in MlflowClient().list_artifacts(parent.iloc[0]["run_id"])}
    assert "report.html" in arts


def test_a_tracker_that_cannot_start_is_a_warning_and_the_job_completes(tmp_path, cache_dir, monkeypatch):
    mlflow_run = pytest.importorskip("sft_sweep.tracking.mlflow_run", reason="the mlflow extra is not installed")

    def refuses(*args, **kw):
        raise RuntimeError("Model registry functionality is unavailable; got unsupported URI\nmore")

    monkeypatch.setattr(mlflow_run, "MlflowTracker", refuses)
    _, summary = _run(tmp_path, cache_dir, ["logger=mlflow"])
    assert ("mlflow logger could not start: RuntimeError: Model registry functionality is unavailable; got "
            "unsupported URI") in summary["warnings"], summary["warnings"]


def _without(tmp_path, *modules):
    """A directory that, first on PYTHONPATH, hides ``modules`` from every process started with it
    (its ``sitecustomize`` marks them absent): a partial install, mlflow-skinny without the
    packages of its SQL store."""
    hide = tmp_path / "hidden"
    hide.mkdir()
    (hide / "sitecustomize.py").write_text(f"import sys\nfor _name in {modules!r}:\n    sys.modules[_name] = None\n")
    return str(hide)


@pytest.mark.slow
def test_mlflow_without_its_sql_store_is_one_warning_and_the_sweep_completes(tmp_path):
    pytest.importorskip("mlflow", reason="the mlflow extra is not installed")
    path = os.pathsep.join([_without(tmp_path, "sqlalchemy", "alembic"), os.environ.get("PYTHONPATH", "")])
    r = subprocess.run([sys.executable, "-m", "sft_sweep.cli", "-m", *SMOKE, "logger=mlflow",
                        f"pretrain.cache_dir={tmp_path / 'cache'}", "hydra.sweep.dir=sweep"], cwd=tmp_path,
                       capture_output=True, text=True, timeout=900,
                       env={**os.environ, "MPLBACKEND": "Agg", "PYTHONPATH": path})
    assert r.returncode == 0 and "Traceback" not in r.stderr, r.stderr[-3000:]
    summaries = [json.loads(p.read_text()) for p in (tmp_path / "sweep").glob("*/summary.json")]
    assert [s["status"] for s in summaries] == ["completed", "completed"]
    for s in summaries:
        (warning,) = [w for w in s["warnings"] if "mlflow" in w]
        assert "sft-sweep[mlflow]" in warning and "sqlalchemy" in warning, warning
    assert (tmp_path / "sweep" / "report.md").exists()
