"""The Slurm task's exit status: non-zero when its job failed, so that Slurm records the task
FAILED (``sacct``, ``scontrol show job``) as the sweep's report records the job."""

from __future__ import annotations

import atexit
import logging
import os
import sys

from hydra.core.utils import JobReturn, JobStatus
from omegaconf import OmegaConf

from sft_sweep.jobfiles import FAILED, SUMMARY, read_json

log = logging.getLogger(__name__)

#: The exit status of a task whose job failed (Slurm shows ``FAILED`` with ``ExitCode 1:0``).
FAILED_EXIT = 1


def job_failed(ret: JobReturn) -> bool:
    """Whether the job failed: its ``summary.json`` says so, or the task function raised."""
    if ret.status == JobStatus.FAILED:
        return True
    output_dir = OmegaConf.select(ret.hydra_cfg, "hydra.runtime.output_dir") if ret.hydra_cfg else None
    summary = read_json(os.path.join(str(output_dir), SUMMARY)) if output_dir else None
    return isinstance(summary, dict) and summary.get("status") == FAILED


def exit_nonzero_if_failed(ret: JobReturn) -> None:
    """Have the process exit with ``FAILED_EXIT`` once submitit has written the task's result.

    The result must be written first (the sweep reads it), and submitit writes it after the task
    function returns, so the status is set at interpreter exit."""
    if job_failed(ret):
        log.info("the job failed: this task exits with status %d", FAILED_EXIT)
        atexit.register(_exit, FAILED_EXIT)


def _exit(code: int) -> None:
    # An atexit handler cannot change the exit status by raising SystemExit (it is ignored); the
    # handlers registered before this one are skipped by os._exit, so logging is flushed here.
    logging.shutdown()
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)
