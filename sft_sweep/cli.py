"""Console entry point ``sft-sweep``: a thin Hydra app around ``sft_sweep.train.job.Job``.

``sft-sweep [overrides]`` runs one job; ``sft-sweep -m ...`` a sweep. A failed job writes
``summary.json`` with ``status: failed``; a single run then exits non-zero with a short message,
while in a multirun the other jobs go on (the sweep's report counts the failures).

What a job returns to the sweeper: ``eval.objective``'s value, or the list of ``eval.objectives``
values for a multi-objective Optuna search. In a multirun a job with no usable value (failed,
pruned, or a metric absent / NaN) returns None: the search sweeper records that trial as FAIL (or
PRUNED, which the job marked in the study) and the search goes on (``max_failure_rate``). Hydra's
basic sweeper ignores the value.

``train.threads=0`` ("all cores") is resolved here, where the launcher is known: the CPUs this
process may use, shared with the jobs its launcher runs beside it (``resources.threads_per_job``).
"""

from __future__ import annotations

import logging
import math
import sys
from pathlib import Path

import hydra
from hydra.core.hydra_config import HydraConfig
from hydra.types import RunMode
from omegaconf import DictConfig, OmegaConf

from .config import register_configs
from .jobfiles import COMPLETED
from .train.job import Job, objective
from .train.resources import threads_per_job

log = logging.getLogger("sft_sweep")

register_configs()

# conf/ sits beside the package in the repository (installed with `pip install -e .`).
CONF_DIR = str(Path(__file__).resolve().parents[1] / "conf")


def default_threads(hc) -> int:
    """Compute threads for ``train.threads=0`` under this Hydra run's launcher (see
    ``resources.threads_per_job``)."""
    launcher = OmegaConf.to_container(hc.launcher, resolve=False) if hc.mode == RunMode.MULTIRUN else None
    return threads_per_job(launcher if isinstance(launcher, dict) else None, multirun=hc.mode == RunMode.MULTIRUN)


def sweeper_value(summary: dict, cfg: DictConfig) -> float | list[float] | None:
    """The job's return value for a sweeper (see the module docstring); None when there is none."""
    if summary.get("status") != COMPLETED:
        return None
    paths = list(cfg.eval.objectives)
    values = [objective(summary, p) for p in paths] if paths else [objective(summary, cfg.eval.objective)]
    if any(math.isnan(v) for v in values):
        return None
    return values if paths else values[0]


@hydra.main(config_path=CONF_DIR, config_name="config", version_base=None)
def task(cfg: DictConfig) -> float | list[float] | None:
    hc = HydraConfig.get()
    multirun = hc.mode == RunMode.MULTIRUN
    if cfg.train.threads == 0:
        cfg.train.threads = default_threads(hc)
    job = Job(cfg, hc.runtime.output_dir, overrides=list(hc.overrides.task), base_dir=hc.runtime.cwd,
              job_name=hc.job.override_dirname or hc.job.name)
    summary = job.run()
    if summary["status"] != COMPLETED:
        where = f"{job.summary_path}"
        if not multirun:
            print(f"sft-sweep: the job failed: {summary.get('error')}\n(details in {where})", file=sys.stderr)
            sys.exit(1)
        return None
    value = sweeper_value(summary, cfg)
    if not multirun:
        log.info("done: %s = %s (files in %s)", list(cfg.eval.objectives) or cfg.eval.objective, value,
                 hc.runtime.output_dir)
    return value


def main() -> None:
    task()
    # A multirun returns here after its report; any failed job makes the command fail too.
    from analysis.callback import failed_jobs

    if failed_jobs():
        sys.exit(1)


if __name__ == "__main__":
    main()
