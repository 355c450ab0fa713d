"""Find the models of a job on disk: its tuned ``model.npz``, its base model, its config.

Used by ``sft-sweep-chat`` and ``sft-sweep-eval``. A job may be named by its directory, by a sweep
directory plus the job's name (or a few of its ``key=value`` parts), or by a ``.npz`` file. A sweep
copied from another machine keeps working: the base model is looked up by its cache key in the
recorded cache directory, then in ``runs/cache`` folders near the job and in the current
directory, and ``--base`` can always name it directly.
"""

from __future__ import annotations

import json
import zipfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from .errors import CheckpointError, SftSweepError
from .nn import GPT, load_checkpoint, read_checkpoint_config


class ModelNotFound(SftSweepError):
    """The path names no job, sweep job or checkpoint (one line for the user)."""


@dataclass
class JobModels:
    job_dir: Path | None
    tuned: Path | None  # the fine-tuned weights (model.npz, or checkpoint.npz mid-training)
    base: Path | None  # the base model the job started from
    config: dict[str, Any] = field(default_factory=dict)  # the job's config, nested
    notes: list[str] = field(default_factory=list)  # what could not be found, for the user

    @property
    def template(self) -> str:
        return str((self.config.get("template") or {}).get("name") or "chatml")


def _read_json(path: Path) -> Any:
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return None


def _read_yaml(path: Path) -> Any:
    try:
        return yaml.safe_load(path.read_text())
    except (OSError, yaml.YAMLError):
        return None


def is_job_dir(path: Path) -> bool:
    return path.is_dir() and any((path / n).exists() for n in ("summary.json", "model.npz", ".hydra/config.yaml"))


def pick_job(sweep_dir: Path, name: str) -> Path:
    """The job of a sweep named exactly, or the one whose name holds every given ``key=value`` part."""
    if is_job_dir(sweep_dir / name):
        return sweep_dir / name
    parts = [p for p in name.replace(",", " ").split() if p]
    jobs = sorted(p for p in sweep_dir.iterdir() if is_job_dir(p))
    matches = [j for j in jobs if all(any(seg == p or seg.endswith("." + p) for seg in j.name.split(","))
                                      for p in parts)]
    if len(matches) == 1:
        return matches[0]
    names = ", ".join(j.name for j in (matches or jobs)[:8])
    why = "matches several jobs" if matches else "matches no job"
    raise ModelNotFound(f"{name!r} {why} in {sweep_dir} (jobs: {names or 'none'})")


def job_config(job_dir: Path) -> dict[str, Any]:
    cfg = _read_yaml(job_dir / ".hydra" / "config.yaml")
    if isinstance(cfg, dict):
        return cfg
    summary = _read_json(job_dir / "summary.json")
    nested: dict[str, Any] = {}
    for key, value in ((summary or {}).get("config") or {}).items():
        node = nested
        *head, last = key.split(".")
        for h in head:
            node = node.setdefault(h, {})
        node[last] = value
    return nested


def _base_candidates(job_dir: Path, config: dict[str, Any], key: str) -> list[Path]:
    names = [f"base-{key}/model.npz"]
    roots: list[Path] = []
    cache_dir = str((config.get("pretrain") or {}).get("cache_dir") or "runs/cache")
    hydra_cfg = _read_yaml(job_dir / ".hydra" / "hydra.yaml") or {}
    launch_cwd = ((hydra_cfg.get("hydra") or {}).get("runtime") or {}).get("cwd")
    if Path(cache_dir).is_absolute():
        roots.append(Path(cache_dir))
    else:
        if launch_cwd:
            roots.append(Path(launch_cwd) / cache_dir)
        roots.append(Path.cwd() / cache_dir)
    # A copied tree: runs/sweeps/NAME/JOB beside runs/cache, or a cache/ folder copied alongside.
    for up in [job_dir, *job_dir.parents][:5]:
        roots += [up / "cache", up / "runs" / "cache"]
    return [r / n for r in roots for n in names]


def find_base(job_dir: Path, config: dict[str, Any]) -> tuple[Path | None, str | None]:
    init_from = (config.get("pretrain") or {}).get("init_from")
    if init_from:  # the job started from the user's own checkpoint
        hydra_cfg = _read_yaml(job_dir / ".hydra" / "hydra.yaml") or {}
        cwd = ((hydra_cfg.get("hydra") or {}).get("runtime") or {}).get("cwd") or "."
        cand = Path(cwd) / Path(init_from).expanduser()
        if cand.is_file():
            return cand, None
        return None, f"the job's base checkpoint (pretrain.init_from={init_from}) is not here; give --base PATH"
    summary = _read_json(job_dir / "summary.json") or {}
    key = (summary.get("base_model") or {}).get("key")
    if not key:
        return None, "the job's summary.json names no base model (the job did not get that far)"
    for cand in _base_candidates(job_dir, config, key):
        if cand.is_file():
            return cand, None
    return None, f"base model base-{key} not found (looked in the job's cache_dir and runs/cache near it; give --base PATH)"


def resolve(target: str, job: str | None = None, base: str | None = None) -> JobModels:
    """What ``target`` (and optionally a job name in a sweep) points at; raises ModelNotFound."""
    path = Path(target).expanduser()
    if not path.exists():
        raise ModelNotFound(f"no such job directory, sweep directory or checkpoint: {target}")
    if path.is_file():
        job_dir = path.parent if is_job_dir(path.parent) and path.suffix == ".npz" else None
        found = JobModels(job_dir=job_dir, tuned=path, base=None,
                          config=job_config(job_dir) if job_dir else {})
    else:
        if job is not None:
            path = pick_job(path, job)
        elif not is_job_dir(path):
            jobs = sorted(p.name for p in path.iterdir() if is_job_dir(p))
            hint = f"; name one of its jobs: {', '.join(jobs[:6])}" if jobs else ""
            raise ModelNotFound(f"{target} is not a job directory{hint}")
        tuned = next((p for p in (path / "model.npz", path / "checkpoint.npz") if p.is_file()), None)
        found = JobModels(job_dir=path, tuned=tuned, base=None, config=job_config(path))
        if tuned is None:
            found.notes.append(f"{path} holds no model.npz or checkpoint.npz yet")
        elif tuned.name == "checkpoint.npz":
            found.notes.append("the job has not finished: using its last checkpoint.npz")
    if base is not None:
        found.base = Path(base).expanduser()
        if not found.base.is_file():
            raise ModelNotFound(f"no such base checkpoint: {base}")
    elif found.job_dir is not None:
        found.base, note = find_base(found.job_dir, found.config)
        if note:
            found.notes.append(note)
    return found


def load_model(path: Path, threads: int = 1) -> GPT:
    """A GPT with the weights of an sft-sweep checkpoint; CheckpointError names what is wrong."""
    if not zipfile.is_zipfile(path):
        raise CheckpointError(f"{path} is not an sft-sweep checkpoint (not an .npz archive)")
    try:
        cfg = read_checkpoint_config(path)
    except CheckpointError:
        raise
    except Exception as e:  # not an npz at all, or an npz of something else
        raise CheckpointError(f"{path} is not an sft-sweep checkpoint ({type(e).__name__}: {e})") from None
    model = GPT(cfg, seed=0, threads=threads)
    load_checkpoint(path, model)
    return model


SHAPE_KEYS = ("n_layer", "n_head", "n_embd", "n_mlp", "block_size")


def check_architecture(path: Path, model: GPT, config: dict[str, Any], role: str = "model",
                       against: str = "its job's config") -> None:
    """Refuse a checkpoint whose shape is not the one ``config`` names: weights of another
    architecture load and answer, but they are not what the job trained (CheckpointError)."""
    wanted = config.get("model") or {}
    diffs = [f"{k} {getattr(model.config, k)} ({against}: {wanted[k]})" for k in SHAPE_KEYS
             if k in wanted and wanted[k] is not None and int(wanted[k]) != getattr(model.config, k)]
    if diffs:
        trained = "; it is not the model this job trained" if against == "its job's config" else ""
        raise CheckpointError(f"{path} is a {role} of another architecture than {against}: "
                              f"{', '.join(diffs)}{trained}")
