"""sft-sweep's Optuna search sweeper for Hydra: ``hydra/sweeper=sft_optuna``.

Persistent, resumable studies (a journal file in the sweep directory by default) and pruning
through the study storage: the jobs report their objective at every evaluation and stop when the
pruner says so (see sft_sweep/train/trial.py for the job's side).
"""
