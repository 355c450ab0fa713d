import os
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]


def run_cli(args, cwd, module="sft_sweep.cli", timeout=300, env=None):
    """Run a console entry point of the package as a user would, in ``cwd``."""
    full_env = {**os.environ, "MPLBACKEND": "Agg", **(env or {})}
    full_env.pop("HYDRA_FULL_ERROR", None)
    return subprocess.run([sys.executable, "-m", module, *args], cwd=cwd, capture_output=True, text=True,
                          timeout=timeout, env=full_env)
