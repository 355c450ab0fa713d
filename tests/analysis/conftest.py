"""Fixtures for the analysis tests: synthetic sweeps written as the app writes job files."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))

from analysis_helpers import PLANTED, make_sweep  # noqa: E402


@pytest.fixture(scope="session")
def demo_sweep(tmp_path_factory) -> Path:
    """3 lrs x 2 epochs x 2 seeds; the last grid point running, the one before failed; a
    `<script>` planted in the first generation of every job."""
    return make_sweep(tmp_path_factory.mktemp("sweeps") / "demo", failed=1, running=1, planted=PLANTED)


@pytest.fixture(scope="session")
def demo_runs(demo_sweep):
    from analysis.collect import collect_runs

    return collect_runs(demo_sweep)


@pytest.fixture(scope="session")
def demo_report(demo_sweep, tmp_path_factory):
    from analysis.report import write_report

    return write_report(demo_sweep, tmp_path_factory.mktemp("report"))


@pytest.fixture(scope="session")
def rich_runs(tmp_path_factory):
    """lr x replay ratio x template (one seed): exercises the mixing and categories figures."""
    from analysis.collect import collect_runs

    d = make_sweep(tmp_path_factory.mktemp("sweeps") / "rich", lrs=(1e-4, 1e-3), epochs=(1,),
                   seeds=(0,), replay=(0.0, 0.05, 0.2), templates=("chatml", "alpaca"))
    return collect_runs(d)


@pytest.fixture
def no_figures(monkeypatch):
    """Skip drawing in tests about the report's text (figures are tested on their own)."""
    import analysis.report

    monkeypatch.setattr(analysis.report, "plot_all", lambda *a, **k: {})
