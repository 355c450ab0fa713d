"""Shared pieces of the scale-out tests: real ``sft-sweep -m`` runs of the tiny model (experiment=smoke)."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import REPO

SMOKE = ["experiment=smoke", "~hydra.callbacks.report"]


@pytest.fixture(scope="session")
def cache_dir(tmp_path_factory) -> Path:
    """One base-model cache for every scale-out test: the first job builds the base, the rest load it."""
    return tmp_path_factory.mktemp("scaleout_cache")


def sweep(sweep_dir: Path, cache_dir: Path, *overrides: str, timeout: float = 240) -> subprocess.CompletedProcess:
    """Run ``sft-sweep -m experiment=smoke ...`` into ``sweep_dir``; fail with its output if it fails."""
    env = dict(os.environ)
    env.pop("HYDRA_FULL_ERROR", None)
    cmd = [sys.executable, "-m", "sft_sweep.cli", "-m", *SMOKE, f"pretrain.cache_dir={cache_dir}",
           f"hydra.sweep.dir={sweep_dir}", *overrides]
    r = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True, env=env, timeout=timeout)
    if r.returncode != 0:
        errors = {name: s.get("error") for name, s in summaries(sweep_dir).items() if s.get("status") != "completed"}
        pytest.fail(f"{' '.join(cmd)}\n--- jobs that did not complete: {errors}\n--- stdout\n{r.stdout[-3000:]}"
                    f"\n--- stderr\n{r.stderr[-5000:]}")
    return r


def summaries(sweep_dir: Path) -> dict[str, dict]:
    """Job dir name -> summary.json of every job in the sweep."""
    return {p.parent.name: json.loads(p.read_text()) for p in sorted(sweep_dir.glob("*/summary.json"))}


def assert_completed_job(job_dir: Path, summary: dict) -> None:
    assert summary["status"] == "completed", summary.get("error")
    for part in ("base", "final"):
        assert "raw_loss" in summary[part] and "answer_mc_acc" in summary[part], (part, summary[part])
    rows = [json.loads(line) for line in (job_dir / "metrics.jsonl").read_text().splitlines()]
    assert [r for r in rows if r["kind"] == "train"] and [r for r in rows if r["kind"] == "eval"]
    assert (job_dir / "samples.jsonl").stat().st_size > 0
    assert (job_dir / "model.npz").exists() and (job_dir / ".hydra" / "config.yaml").exists()
