"""Search settings and storages that cannot work stop with one line before any job starts."""

import os
import subprocess
import sys

import pytest

from tests.conftest import REPO

from .conftest import SMOKE

pytest.importorskip("optuna", reason='needs pip install -e ".[search]"')


def _search(tmp_path, *overrides):
    env = {k: v for k, v in os.environ.items() if k != "HYDRA_FULL_ERROR"}
    cmd = [sys.executable, "-m", "sft_sweep.cli", "-m", *SMOKE, "hparams_search=answer_acc",
           f"pretrain.cache_dir={tmp_path / 'cache'}", f"hydra.sweep.dir={tmp_path / 'sweep'}", *overrides]
    return subprocess.run(cmd, cwd=REPO, capture_output=True, text=True, env=env, timeout=120)


def _one_line_error(r) -> str:
    assert r.returncode != 0
    assert "Traceback" not in r.stderr, r.stderr[-2000:]
    lines = [ln for ln in r.stderr.splitlines() if ln.startswith("sft-sweep search:")]
    assert len(lines) == 1, r.stderr[-2000:]
    return lines[0]


def test_pruning_a_multi_objective_search_is_refused_in_one_line(tmp_path):
    r = _search(tmp_path, "hparams_search=tradeoff", "hydra/sweeper/pruner=median")
    assert "cannot prune a multi-objective study" in _one_line_error(r)
    assert not list((tmp_path / "sweep").glob("*/summary.json")) and not (tmp_path / "cache").exists()


def test_storage_that_cannot_be_opened_is_one_line_before_any_job(tmp_path):
    (tmp_path / "a_file").write_text("")
    r = _search(tmp_path, f"hydra.sweeper.storage={tmp_path / 'a_file' / 'study.journal'}")
    line = _one_line_error(r)
    assert "cannot open the study storage" in line and "a_file" in line
    assert not (tmp_path / "sweep").exists() and not (tmp_path / "cache").exists()
