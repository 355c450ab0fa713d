import os
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
CONF_DIR = REPO / "conf"

# Tests must not fight over the two cores with BLAS threads of their own.
os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")
os.environ.setdefault("OMP_NUM_THREADS", "1")
os.environ.setdefault("MKL_NUM_THREADS", "1")


def compose_cfg(overrides=()):
    """The app's config as Hydra composes it from conf/, with these overrides."""
    from hydra import compose, initialize_config_dir

    with initialize_config_dir(config_dir=str(CONF_DIR), version_base=None):
        return compose("config", overrides=list(overrides))


def shared_data_dir() -> Path | None:
    """../shared/data beside the repository (CI puts shared/ there), or $SFT_SWEEP_SHARED_DATA."""
    for cand in (os.environ.get("SFT_SWEEP_SHARED_DATA"), REPO.parent / "shared" / "data", "/work/shared/data"):
        if cand and Path(cand).is_dir():
            return Path(cand)
    return None


@pytest.fixture
def shared_data() -> Path:
    d = shared_data_dir()
    if d is None:
        pytest.skip("../shared/data (real third-party demo files) is not present beside the repository")
    return d


def plant_report_leftovers(out: Path) -> tuple[list[Path], Path]:
    """Temp files a killed report left in ``out`` a minute ago, and one a writer made just now:
    (the old ones, which a new report removes; the fresh one, which it keeps)."""
    import time

    (out / "report_files").mkdir(parents=True, exist_ok=True)
    left = [out / ".report.md.k3j2.tmp", out / "report_files" / ".curves.png.x9q1.tmp"]
    fresh = out / ".report.html.now1.tmp"
    for path in [*left, fresh]:
        path.write_text("half")
    for path in left:
        os.utime(path, (time.time() - 60, time.time() - 60))
    return left, fresh
