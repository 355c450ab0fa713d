"""The job-file contract's writers: atomic, and with the permissions the user's umask gives."""

import os

import numpy as np
import pytest

from sft_sweep.jobfiles import atomic_path, flatten, forgetting_pct, read_json, write_atomic, write_json


@pytest.mark.parametrize("umask", [0o022, 0o077, 0o002])
def test_atomic_writes_follow_the_umask(tmp_path, umask):
    old = os.umask(umask)
    try:
        write_atomic(tmp_path / "a.txt", "text")
        write_json(tmp_path / "b.json", {"x": 1})
        with atomic_path(tmp_path / "c.npz") as tmp, open(tmp, "wb") as f:
            np.savez(f, w=np.zeros(2))
    finally:
        os.umask(old)
    for name in ("a.txt", "b.json", "c.npz"):
        assert (tmp_path / name).stat().st_mode & 0o777 == 0o666 & ~umask, name


def test_failed_write_leaves_the_old_file_and_no_temporary(tmp_path):
    write_atomic(tmp_path / "s.json", "old")
    with pytest.raises(RuntimeError):
        with atomic_path(tmp_path / "s.json") as tmp:
            tmp.write_text("half")
            raise RuntimeError("killed")
    assert (tmp_path / "s.json").read_text() == "old"
    assert [p.name for p in tmp_path.iterdir()] == ["s.json"]


def test_json_helpers_and_formulas(tmp_path):
    assert forgetting_pct(2.0, 3.0) == pytest.approx(50.0)
    assert flatten({"a": {"b": 1, "c": {}}, "d": [1]}) == {"a.b": 1, "a.c": {}, "d": [1]}
    write_json(tmp_path / "x.json", {"a": np.float32(0.5), "b": float("nan"), "c": [np.int64(3)]})
    assert read_json(tmp_path / "x.json") == {"a": 0.5, "b": None, "c": [3]}


def test_the_contract_imports_only_the_standard_library():
    """The analysis reads copied sweeps on a laptop: the contract must not pull in numpy & co."""
    import subprocess
    import sys

    code = ("import sys, sft_sweep.jobfiles; "
            "heavy = {'numpy', 'pandas', 'omegaconf', 'hydra', 'matplotlib'} & set(sys.modules); "
            "assert not heavy, heavy")
    subprocess.run([sys.executable, "-c", code], check=True)
