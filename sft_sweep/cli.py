"""Console entry point ``sft-sweep``: a thin Hydra app around ``sft_sweep.train.job.Job``.

``sft-sweep [overrides]`` runs one job; ``sft-sweep -m ...`` a sweep. A failed job writes
``summary.json`` with ``status: failed``; a single run then exits non-zero with a short message,
while in a multirun the other jobs go on (the sweep's report counts the failures).
"""

from __future__ import annotations

import logging
import math
import sys
from pathlib import Path

import hydra
from hydra.core.hydra_config import HydraConfig
from hydra.types import RunMode
from omegaconf import DictConfig

from .config import register_configs
from .train.job import Job, objective

log = logging.getLogger("sft_sweep")

register_configs()

# conf/ sits beside the package in the repository (installed with `pip install -e .`).
CONF_DIR = str(Path(__file__).resolve().parents[1] / "conf")


@hydra.main(config_path=CONF_DIR, config_name="config", version_base=None)
def task(cfg: DictConfig) -> float:
    hc = HydraConfig.get()
    multirun = hc.mode == RunMode.MULTIRUN
    job = Job(cfg, hc.runtime.output_dir, overrides=list(hc.overrides.task), base_dir=hc.runtime.cwd,
              job_name=hc.job.override_dirname or hc.job.name)
    summary = job.run()
    if summary["status"] != "completed":
        where = f"{job.summary_path}"
        if not multirun:
            print(f"sft-sweep: the job failed: {summary.get('error')}\n(details in {where})", file=sys.stderr)
            sys.exit(1)
        return math.nan
    value = objective(summary, cfg.eval.objective)
    if not multirun:
        log.info("done: %s = %s (files in %s)", cfg.eval.objective, value, hc.runtime.output_dir)
    return value


def main() -> None:
    task()


if __name__ == "__main__":
    main()
