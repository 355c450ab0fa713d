"""Helpers for the data-layer tests: where the shared third-party files are."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]


def shared_data_dir() -> Path | None:
    """The folder of real third-party data files (never copied into the repo).

    Looked up in order: ``$SFT_SWEEP_SHARED_DATA``, ``<repo>/../shared/data`` (CI puts
    ``shared/`` beside the clone), ``/work/shared/data``.
    """
    candidates = []
    env = os.environ.get("SFT_SWEEP_SHARED_DATA")
    if env:
        candidates.append(Path(env))
    candidates += [REPO / ".." / "shared" / "data", Path("/work/shared/data")]
    for c in candidates:
        if c.is_dir():
            return c
    return None


def shared_file(name: str) -> Path:
    """Path of a shared data file, or skip the test with the reason."""
    d = shared_data_dir()
    if d is None:
        pytest.skip("shared data folder not found (set SFT_SWEEP_SHARED_DATA or put shared/data "
                    "beside the repository)")
    p = d / name
    if not p.is_file():
        pytest.skip(f"shared data file {name} not found in {d}")
    return p
