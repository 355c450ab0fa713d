"""sft-sweep's Slurm launcher for Hydra: ``hydra/launcher=slurm`` (conf/hydra/launcher/slurm.yaml).

Hydra's submitit Slurm launcher submits the sweep as one job array; this one keeps that and
replaces how the sweep waits for its tasks (``_watch``): a task that leaves Slurm's queue without
a result (``scancel``, a node lost, killed past its limit) ends in one line naming it, while the
others are still waited for, so the sweep's report covers them and the command fails. In the task,
a job that failed makes the task's process exit non-zero, so that Slurm records it FAILED.
"""
