"""``mlflow ui`` on the SQLite store a job writes (runs/mlflow.db), with the ``mlflow-ui`` extra (the
full mlflow package: the ``mlflow`` extra's mlflow-skinny has neither Flask nor the UI's files).
The page is fetched over HTTP and the job's run read through the server's REST API. Slow."""

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from importlib import metadata
from pathlib import Path

import pytest

from sft_sweep.config import register_configs
from sft_sweep.train.job import Job
from tests.conftest import compose_cfg

pytestmark = pytest.mark.slow
try:
    metadata.distribution("mlflow")
except metadata.PackageNotFoundError:
    pytest.skip("the full mlflow package is not installed (pip install -e '.[mlflow-ui]')", allow_module_level=True)

register_configs()


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _get(url: str, body: dict | None = None) -> tuple[int, str]:
    data = json.dumps(body).encode() if body is not None else None
    req = urllib.request.Request(url, data=data, headers={"Content-Type": "application/json"} if data else {})
    with urllib.request.urlopen(req, timeout=30) as r:
        return r.status, r.read().decode()


def test_mlflow_ui_serves_the_jobs_sqlite_store(tmp_path):
    job = Job(compose_cfg(["experiment=smoke", "train.threads=1", f"pretrain.cache_dir={tmp_path / 'cache'}",
                           "logger=mlflow", "logger.mlflow.log_model=false"]),
              tmp_path / "job", base_dir=str(tmp_path), job_name="job")
    assert job.run()["status"] == "completed"
    db = tmp_path / "runs" / "mlflow.db"
    assert db.is_file()
    mlflow = shutil.which("mlflow", path=str(Path(sys.executable).parent)) or shutil.which("mlflow")
    port = _free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("MLFLOW_")}
    # the command the docs give, from the directory the job ran in
    proc = subprocess.Popen([mlflow, "ui", "--backend-store-uri", "sqlite:///runs/mlflow.db", "--port", str(port)],
                            cwd=tmp_path, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
                            start_new_session=True)  # its workers (uvicorn, huey) share its session
    base = f"http://127.0.0.1:{port}"
    try:
        t0 = time.monotonic()
        page = None
        while time.monotonic() - t0 < 240 and proc.poll() is None:
            try:
                page = _get(base + "/")
                break
            except OSError:
                time.sleep(1)
        assert page is not None, proc.stderr.read()[-3000:] if proc.poll() is not None else "no answer in 240 s"
        print(f"mlflow ui answered after {time.monotonic() - t0:.1f} s")
        status, html = page
        assert status == 200 and "static-files" in html  # the UI's page, with its bundled scripts
        status, body = _get(base + "/ajax-api/2.0/mlflow/experiments/search", {"max_results": 10})
        experiments = {e["name"]: e["experiment_id"] for e in json.loads(body)["experiments"]}
        assert "smoke" in experiments, experiments
        _, body = _get(base + "/ajax-api/2.0/mlflow/runs/search", {"experiment_ids": [experiments["smoke"]]})
        runs = json.loads(body)["runs"]
        assert len(runs) == 1 and runs[0]["info"]["status"] == "FINISHED"
        assert any(m["key"] == "final/answer_mc_acc" for m in runs[0]["data"]["metrics"]), runs[0]["data"]
    finally:
        os.killpg(proc.pid, signal.SIGTERM)
        proc.wait(timeout=60)
