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
