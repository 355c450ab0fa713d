"""The Hydra plugin class. Hydra imports this module on every start: submitit is imported only
when a sweep is launched, and nothing is registered without the ``launchers`` extra."""

from __future__ import annotations

from typing import Any, Sequence

try:
    from hydra_plugins.hydra_submitit_launcher.submitit_launcher import SlurmLauncher as _SubmititSlurm
except ImportError:  # hydra-submitit-launcher is not installed (pip install 'sft-sweep[launchers]')
    _SubmititSlurm = None

if _SubmititSlurm is not None:

    class SlurmLauncher(_SubmititSlurm):
        """Hydra's submitit Slurm launcher with sft-sweep's wait for the tasks (see ``_watch``)."""

        def launch(self, job_overrides: Sequence[Sequence[str]], initial_job_idx: int) -> Any:
            from ._watch import launch

            return launch(self, job_overrides, initial_job_idx)

        def __call__(self, *args: Any, **kwargs: Any) -> Any:
            # Runs in the Slurm task. submitit writes the returned value as the task's result after
            # this returns; a failed job then makes the process's exit status non-zero.
            ret = super().__call__(*args, **kwargs)
            from ._task import exit_nonzero_if_failed

            exit_nonzero_if_failed(ret)
            return ret
