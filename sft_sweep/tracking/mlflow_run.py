"""MLflow: one run per job, and in a multirun a parent run for the sweep with the jobs as children.

Written through ``MlflowClient`` (no global active run, so jobs in parallel worker processes do not
share state). The run id is kept in the job directory (``tracking.json``): a job resumed after
Ctrl-C continues its run. The sweep's parent run is opened by ``SweepRun``, a Hydra callback, and
its id is kept beside Hydra's ``multirun.yaml``, where every job of the sweep finds it.

A local store is a SQLite database (``runs/mlflow.db`` by default), the store MLflow 3 recommends:
``mlflow.search_runs`` and ``mlflow ui --backend-store-uri sqlite:///...`` read it as it is. A
directory (``mlruns``, an earlier default) is MLflow's file store, in maintenance mode behind
``MLFLOW_ALLOW_FILE_STORE``: it is still written here (the variable is set for this process unless
the user set it), with a one-line hint to move it into a database (``mlflow migrate-filestore``).
"""

from __future__ import annotations

import importlib
import os
import sys
import time
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

# A tracking server that is down must not hold a job for minutes of retries.
os.environ.setdefault("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "1")
os.environ.setdefault("MLFLOW_HTTP_REQUEST_TIMEOUT", "15")

from mlflow.entities import Metric, Param, RunTag  # noqa: E402
from mlflow.tracking import MlflowClient  # noqa: E402

from ..dirnames import sweep_dir_of as configured_sweep_dir  # noqa: E402
from ..jobfiles import read_json, write_json  # noqa: E402
from .shared import RUN_STATUS, flat_config  # noqa: E402

PARENT_FILE = ".mlflow_sweep_run.json"
STATE_FILE = "tracking.json"
MAX_PARAM_LEN = 500  # MLflow's limit for a param value


DATABASE_SUFFIXES = (".db", ".sqlite", ".sqlite3")
DEFAULT_DATABASE = "runs/mlflow.db"
_hinted: set[str] = set()


def store_uri(uri: str, base_dir: str) -> str:
    """A tracking URI. A plain path ending in ``.db`` becomes a SQLite store, another plain path a
    file store, both under ``base_dir`` when relative; a URI with a scheme passes through."""
    if urlparse(uri).scheme and not (len(uri) > 1 and uri[1] == ":"):  # not a Windows drive letter
        if uri.startswith("file:"):
            os.environ.setdefault("MLFLOW_ALLOW_FILE_STORE", "true")
        return uri
    path = Path(uri).expanduser()
    if not path.is_absolute():
        path = Path(base_dir) / path
    path = path.resolve()
    if path.suffix in DATABASE_SUFFIXES:
        path.parent.mkdir(parents=True, exist_ok=True)
        return "sqlite:///" + str(path)
    os.environ.setdefault("MLFLOW_ALLOW_FILE_STORE", "true")
    return path.as_uri()


SQL_STORE_PACKAGES = ("sqlalchemy", "alembic")


def check_store_support(uri: str) -> None:
    """``ImportError`` naming the missing packages when ``uri`` is a database store and MLflow's SQL
    store cannot be used (mlflow-skinny installed without them: MLflow itself would fail with an
    'unsupported URI' error that names neither)."""
    if not uri.startswith(("sqlite:", "postgresql", "mysql", "mssql")):
        return
    missing = []
    for name in SQL_STORE_PACKAGES:
        try:
            importlib.import_module(name)
        except ImportError:
            missing.append(name)
    if missing:
        raise ImportError(f"the MLflow store {uri} is a database, which needs {' and '.join(missing)} "
                          "(not installed)")


def file_store_hint(uri: str, base_dir: str) -> str | None:
    """One line for a user whose runs sit in a file store: the ``mlflow migrate-filestore`` command
    that copies them into the SQLite store. For a file-store URI, or (with the SQLite default) when
    an earlier default store ``mlruns/`` lies in ``base_dir``. Each hint is given once per process."""
    if uri.startswith("file:"):
        store = Path(urlparse(uri).path)
        target = store.parent / "runs" / "mlflow.db"
        why = "is MLflow's file store (maintenance mode in MLflow 3)"
    elif uri.startswith("sqlite:///") and any((Path(base_dir) / "mlruns").glob("*/meta.yaml")):
        store, target = Path(base_dir).resolve() / "mlruns", Path(uri[len("sqlite:///"):])
        why = f"holds runs of an earlier sweep that are not in {target}"
    else:
        return None
    hint = (f"MLflow store {store} {why}; to read it with mlflow.search_runs / mlflow ui, copy it into a "
            f"database: mlflow migrate-filestore --source {store} --target sqlite:///{target}")
    if hint in _hinted:
        return None
    _hinted.add(hint)
    return hint


def experiment_id(client: MlflowClient, name: str) -> str:
    exp = client.get_experiment_by_name(name)
    if exp is not None:
        return exp.experiment_id
    try:
        return client.create_experiment(name)
    except Exception:  # another job of the sweep created it first
        exp = client.get_experiment_by_name(name)
        if exp is None:
            raise
        return exp.experiment_id


def sweep_dir_of(job_dir: Path) -> Path | None:
    """The multirun directory a job belongs to (where Hydra wrote multirun.yaml), if any."""
    for d in list(Path(job_dir).resolve().parents)[:6]:
        if (d / "multirun.yaml").exists() or (d / PARENT_FILE).exists():
            return d
    return None


def _reopen(client: MlflowClient, run_id: str | None, uri: str, state_uri: str | None) -> str | None:
    """``run_id`` when it exists in this store (set running again), else None."""
    if not run_id or state_uri != uri:
        return None
    try:
        client.update_run(run_id, status="RUNNING")
        return run_id
    except Exception:  # deleted, or another store
        return None


def _now_ms() -> int:
    return int(time.time() * 1000)


class MlflowTracker:
    name = "mlflow"

    def __init__(self, job_dir: Path, label: str, base_dir: str, *, experiment_name: str, tracking_uri: str,
                 log_model: bool = True) -> None:
        self.job_dir = Path(job_dir)
        self.label = label
        self.uri = store_uri(tracking_uri, base_dir)
        self.experiment_name = experiment_name
        self.log_model = log_model
        check_store_support(self.uri)
        self.client = MlflowClient(tracking_uri=self.uri)
        self.run_id: str | None = None
        hint = None if sweep_dir_of(self.job_dir) else file_store_hint(self.uri, base_dir)
        if hint:  # a sweep gives it once, from its parent run
            print(f"sft-sweep: note: {hint}", file=sys.stderr)

    def start(self, config: dict[str, Any], resumed: bool) -> None:
        state = read_json(self.job_dir / STATE_FILE) or {}
        self.run_id = _reopen(self.client, state.get("mlflow_run_id"), self.uri, state.get("mlflow_tracking_uri"))
        if self.run_id is not None:
            return
        exp = experiment_id(self.client, self.experiment_name)
        tags = {"sft_sweep.job_dir": str(self.job_dir.resolve())}
        sweep = sweep_dir_of(self.job_dir)
        parent = read_json(sweep / PARENT_FILE) if sweep else None
        if isinstance(parent, dict) and parent.get("tracking_uri") == self.uri and parent.get("run_id"):
            tags["mlflow.parentRunId"] = parent["run_id"]
        run = self.client.create_run(exp, run_name=self.label, tags=tags)
        self.run_id = run.info.run_id
        write_json(self.job_dir / STATE_FILE, {"mlflow_run_id": self.run_id, "mlflow_tracking_uri": self.uri})
        params = [Param(k, str(v)[:MAX_PARAM_LEN]) for k, v in flat_config(config).items()]
        for i in range(0, len(params), 100):  # MLflow takes at most 100 params per batch
            self.client.log_batch(self.run_id, params=params[i : i + 100])

    def log_row(self, row: dict[str, Any]) -> None:
        kind, step, ts = row.get("kind"), int(row.get("step", 0)), _now_ms()
        metrics = [Metric(f"{kind}/{k}", float(v), ts, step) for k, v in row.items()
                   if k not in ("kind", "step") and isinstance(v, (int, float)) and not isinstance(v, bool)]
        if metrics:
            self.client.log_batch(self.run_id, metrics=metrics)

    def finish(self, summary: dict[str, Any], files: dict[str, Path]) -> None:
        step, ts = int(summary.get("steps") or 0), _now_ms()
        metrics = []
        for part in ("base", "final"):
            metrics += [Metric(f"{part}/{k}", float(v), ts, step) for k, v in (summary.get(part) or {}).items()
                        if isinstance(v, (int, float)) and not isinstance(v, bool)]
        if summary.get("forgetting_pct") is not None:
            metrics.append(Metric("forgetting_pct", float(summary["forgetting_pct"]), ts, step))
        self.client.log_batch(self.run_id, metrics=metrics,
                              tags=[RunTag("sft_sweep.status", str(summary.get("status")))])
        for name, path in files.items():
            if name == "model" and not self.log_model:
                continue
            if Path(path).is_file():
                self.client.log_artifact(self.run_id, str(path))
        self.client.set_terminated(self.run_id, RUN_STATUS.get(str(summary.get("status")), "FAILED"))


class SweepRun:
    """Hydra callback: the sweep's parent MLflow run, opened before the jobs and closed after them."""

    def __init__(self) -> None:
        self.client: MlflowClient | None = None
        self.run_id: str | None = None
        self.sweep_dir: Path | None = None

    def on_multirun_start(self, config: Any, **kwargs: Any) -> None:
        from omegaconf import OmegaConf

        ml = OmegaConf.select(config, "logger.mlflow", default=None)
        if not ml:
            return
        try:
            cwd = str(OmegaConf.select(config, "hydra.runtime.cwd", default=None) or os.getcwd())
            uri = store_uri(str(ml.tracking_uri), cwd)
            hint = file_store_hint(uri, cwd)
            if hint:
                print(f"sft-sweep: note: {hint}", file=sys.stderr)
            self.sweep_dir = configured_sweep_dir(config)
            self.sweep_dir.mkdir(parents=True, exist_ok=True)
            check_store_support(uri)
            self.client = MlflowClient(tracking_uri=uri)
            state = read_json(self.sweep_dir / PARENT_FILE) or {}
            self.run_id = _reopen(self.client, state.get("run_id"), uri, state.get("tracking_uri"))
            if self.run_id is None:
                name = str(ml.experiment_name or config.name)
                run = self.client.create_run(experiment_id(self.client, name), run_name=f"sweep {config.name}",
                                             tags={"sft_sweep.sweep_dir": str(self.sweep_dir)})
                self.run_id = run.info.run_id
                write_json(self.sweep_dir / PARENT_FILE, {"run_id": self.run_id, "tracking_uri": uri})
            command = " ".join(OmegaConf.select(config, "hydra.overrides.task", default=[]) or [])
            self.client.set_tag(self.run_id, "sft_sweep.command", command[:5000])
        except Exception as e:  # noqa: BLE001 - the sweep runs without its parent run
            self.run_id, self.client = None, None
            extra = " (pip install 'sft-sweep[mlflow]')" if isinstance(e, ImportError) else ""
            print(f"sft-sweep: warning: MLflow parent run for the sweep not opened: {type(e).__name__}: "
                  f"{str(e).splitlines()[0] if str(e) else ''}{extra}", file=sys.stderr)

    def on_multirun_end(self, config: Any, **kwargs: Any) -> None:
        if self.client is None or self.run_id is None or self.sweep_dir is None:
            return
        try:
            for name in ("report.md", "report.html"):
                if (self.sweep_dir / name).is_file():
                    self.client.log_artifact(self.run_id, str(self.sweep_dir / name))
            self.client.set_terminated(self.run_id, "FINISHED")
        except Exception as e:  # noqa: BLE001
            print(f"sft-sweep: warning: MLflow parent run not closed: {type(e).__name__}: {e}", file=sys.stderr)
