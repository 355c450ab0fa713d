"""A job's side of an Optuna search: report each periodic evaluation to the trial, stop when pruned.

The search sweeper (hydra_plugins/sft_sweep_optuna) tells each job which trial it is through the
environment, set by Hydra around the job (``hydra.job.env_set``), so it works under every launcher:
the study storage, the study name and the trial id. The pruner's settings live in the study itself
(a study user attribute written by the sweeper), so the job prunes exactly as the sweeper configured.

A pruned job raises :class:`Pruned`; the job writes ``summary.json`` with status ``pruned`` and
marks the trial (user attribute ``pruned_at_step``), from which the sweeper tells Optuna the trial
was pruned. Outside a search (no environment) nothing here runs, and optuna need not be installed.
"""

from __future__ import annotations

import importlib
import logging
import math
import os
from typing import Any

from ..jobfiles import forgetting_pct, objective

log = logging.getLogger("sft_sweep")

ENV_STORAGE = "SFT_SWEEP_STUDY_STORAGE"
ENV_STUDY = "SFT_SWEEP_STUDY_NAME"
ENV_TRIAL_ID = "SFT_SWEEP_TRIAL_ID"
#: Study user attribute: the pruner as ``{"_target_": "optuna.pruners.X", **kwargs}`` (absent: no pruning).
PRUNER_ATTR = "pruner"
#: Trial user attribute written by a job that stopped because the pruner said so.
PRUNED_AT_ATTR = "pruned_at_step"


class Pruned(Exception):
    """The pruner stopped this job after the evaluation at ``step``."""

    def __init__(self, step: int, last_eval: dict, fields: dict) -> None:
        super().__init__(f"pruned at step {step}")
        self.step = step
        self.last_eval = last_eval
        self.fields = fields  # summary.json entries of a pruned job


def open_storage(spec: str) -> Any:
    """An Optuna storage: a database URL (``sqlite:///...``, ``postgresql://...``) or a journal file path."""
    import optuna
    from optuna.storages.journal import JournalFileBackend, JournalStorage

    if "://" in spec:
        return optuna.storages.RDBStorage(spec)
    return JournalStorage(JournalFileBackend(spec))


def make_pruner(spec: dict | None) -> Any:
    """An Optuna pruner from ``{"_target_": "optuna.pruners.Name", **kwargs}``; None / empty: never prune."""
    import optuna

    if not spec or not spec.get("_target_"):
        return optuna.pruners.NopPruner()
    kwargs = {k: v for k, v in spec.items() if not k.startswith("_")}
    module, _, name = str(spec["_target_"]).rpartition(".")
    if module != "optuna.pruners":
        raise ValueError(f"pruner {spec['_target_']!r}: expected one of optuna.pruners")
    return getattr(importlib.import_module(module), name)(**kwargs)


def interim_summary(metrics: dict, base: dict) -> dict:
    """What summary.json would hold if the job ended now: objectives are paths into it."""
    view: dict[str, Any] = {"base": base, "final": metrics}
    if "raw_loss" in metrics and base.get("raw_loss"):
        view["forgetting_pct"] = forgetting_pct(base["raw_loss"], metrics["raw_loss"])
    return view


class TrialReporter:
    """Reports one objective of one trial at each evaluation and asks the pruner whether to stop."""

    def __init__(self, trial: Any, objective_path: str, base: dict, planned_steps: int, job: str) -> None:
        self.trial = trial
        self.objective_path = objective_path
        self.base = base
        self.planned_steps = planned_steps
        self.job = job

    @classmethod
    def from_env(cls, objective_path: str, multi_objective: bool, base: dict, planned_steps: int,
                 job: str) -> TrialReporter | None:
        """The reporter of the trial this job runs, or None outside a search.

        A multi-objective study cannot prune (Optuna supports neither reports nor pruning there).
        A study that cannot be reached is a warning: the job still runs to the end and returns its value.
        """
        storage = os.environ.get(ENV_STORAGE)
        if not storage or multi_objective:
            return None
        try:
            import optuna

            study = optuna.load_study(study_name=os.environ[ENV_STUDY], storage=open_storage(storage))
            study.pruner = make_pruner(study.user_attrs.get(PRUNER_ATTR))
            trial = optuna.trial.Trial(study, int(os.environ[ENV_TRIAL_ID]))
        except Exception as e:  # noqa: BLE001 - any storage problem: run without pruning, say so
            log.warning("[%s] cannot reach the search study in %s (%s: %s): no pruning for this job",
                        job, storage, type(e).__name__, e)
            return None
        return cls(trial, objective_path, base, planned_steps, job)

    def report(self, step: int, metrics: dict, *, final: bool) -> None:
        """Report the objective at ``step``; raise :class:`Pruned` when the pruner stops the trial.

        The last evaluation is reported but never pruned: the job has finished its work by then.
        """
        value = objective(interim_summary(metrics, self.base), self.objective_path)
        if step <= 0 or math.isnan(value):
            return
        self.trial.report(value, step)
        if final or not self.trial.should_prune():
            return
        self.trial.set_user_attr(PRUNED_AT_ATTR, step)
        log.info("[%s] pruned at step %d/%d: %s=%.4g", self.job, step, self.planned_steps, self.objective_path, value)
        fields = {"base": self.base, "last_eval": metrics, "last_eval_step": step, "stopped_at_step": step,
                  "steps": step, "steps_planned": self.planned_steps, "objective_at_stop": value,
                  "trial": self.trial.number}
        raise Pruned(step, metrics, fields)
