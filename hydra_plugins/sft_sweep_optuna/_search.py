"""The search loop: ask a batch of trials, launch their jobs, tell Optuna how each ended.

Batches of ``n_jobs`` trials go to whatever launcher Hydra is configured with (basic, joblib,
submitit, ray). Each job learns its trial from three environment variables set through
``hydra.job.env_set`` (which Hydra applies around the task in the worker, on any launcher); the
job reports its objective at each evaluation into the study and stops if the pruner says so.
A job that fails, returns nothing usable or returns NaN is a FAIL trial; the search goes on unless
more than ``max_failure_rate`` of a batch failed.
"""

from __future__ import annotations

import logging
import math
import os
from typing import Any, Sequence

import optuna
from hydra.core.plugins import Plugins
from hydra.core.utils import JobReturn, JobStatus
from hydra.types import HydraContext, TaskFunction
from hydra.utils import get_class
from omegaconf import DictConfig, ListConfig, OmegaConf
from optuna.trial import TrialState

from sft_sweep.jobfiles import write_atomic
from sft_sweep.train.trial import ENV_STORAGE, ENV_STUDY, ENV_TRIAL_ID, PRUNED_AT_ATTR, PRUNER_ATTR, make_pruner

from . import _study
from ._search_space import SearchSpace, SearchSpaceError, parse

log = logging.getLogger(__name__)

RESULTS_FILE = "optimization_results.yaml"


def fail(message: str) -> SystemExit:
    """A user-facing stop: one line on stderr, exit status 1, no traceback."""
    return SystemExit(f"sft-sweep search: {message}")


def _container(node: Any) -> Any:
    return OmegaConf.to_container(node, resolve=True) if isinstance(node, (DictConfig, ListConfig)) else node


def override_value(value: Any) -> str:
    """A sampled value written back as a Hydra override value."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


def quoted(text: str) -> str:
    return "'" + text.replace("\\", "\\\\").replace("'", "\\'") + "'"


class Search:
    def __init__(self, settings: dict[str, Any], *, hydra_context: HydraContext, task_function: TaskFunction,
                 config: DictConfig) -> None:
        self.config = config
        self.hydra_context = hydra_context
        self.launcher = Plugins.instance().instantiate_launcher(config=config, hydra_context=hydra_context,
                                                                task_function=task_function)
        self.sweep_dir = str(config.hydra.sweep.dir)
        direction = _container(settings.get("direction"))
        self.directions = [str(d).lower() for d in (direction if isinstance(direction, list) else [direction])]
        self.sampler_conf = dict(_container(settings.get("sampler")) or {})
        self.pruner_conf = {k: v for k, v in (_container(settings.get("pruner")) or {}).items() if v is not None}
        self.storage = _study.storage_spec(settings.get("storage"), self.sweep_dir)
        self.study_name = settings.get("study_name") or os.path.basename(os.path.normpath(self.sweep_dir))
        self.n_trials = int(settings.get("n_trials", 20))
        self.n_jobs = int(settings.get("n_jobs", 1))
        self.max_failure_rate = float(settings.get("max_failure_rate", 1.0))
        self.params = _container(settings.get("params")) or {}

    # --- checks and construction, all before any job ---------------------------------------
    def _check(self) -> None:
        bad = [d for d in self.directions if d not in ("minimize", "maximize")]
        if bad or not self.directions:
            raise fail(f"hydra.sweeper.direction must be minimize / maximize or a list of them, got {bad or 'nothing'}")
        if self.n_trials < 1 or self.n_jobs < 1:
            raise fail(f"hydra.sweeper.n_trials and n_jobs must be >= 1 (got {self.n_trials}, {self.n_jobs})")
        if not 0.0 <= self.max_failure_rate <= 1.0:
            raise fail(f"hydra.sweeper.max_failure_rate must be in [0, 1], got {self.max_failure_rate}")
        if self.pruner_conf.get("_target_") and len(self.directions) > 1:
            raise fail(f"Optuna cannot prune a multi-objective study ({len(self.directions)} directions): "
                       "use hydra/sweeper/pruner=none")
        try:
            make_pruner(self.pruner_conf)
        except Exception as e:  # noqa: BLE001 - a misspelt pruner argument
            raise fail(f"hydra.sweeper.pruner: {type(e).__name__}: {e}") from None

    def _space(self, arguments: list[str]) -> SearchSpace:
        try:
            return parse([f"{k}={v}" for k, v in self.params.items()] + list(arguments))
        except SearchSpaceError as e:
            raise fail(f"hydra.sweeper.params: {e}") from None
        except Exception as e:  # noqa: BLE001 - Hydra's grammar errors
            raise fail(f"cannot parse the search space: {str(e).splitlines()[0]}") from None

    def _sampler(self, space: SearchSpace, trial_number: int) -> Any:
        """A sampler for one ask, seeded with seed + the trial's number.

        Per trial rather than per process: a re-run (resume) or a second search on the same study
        would otherwise replay the first draws of the first run, and run the same jobs again. The
        samplers keep no state of their own beyond their random generator: the rest is in the study.
        """
        conf = dict(self.sampler_conf)
        target = str(conf.pop("_target_", "optuna.samplers.TPESampler"))
        if conf.get("seed") is not None:
            conf["seed"] = int(conf["seed"]) + trial_number
        if target.endswith("GridSampler"):
            try:
                conf["search_space"] = space.grid()
            except SearchSpaceError as e:
                raise fail(str(e)) from None
        try:
            return get_class(target)(**conf)
        except Exception as e:  # noqa: BLE001 - a misspelt sampler argument
            raise fail(f"hydra.sweeper.sampler: {type(e).__name__}: {e}") from None

    def _open(self, space: SearchSpace) -> optuna.Study:
        try:
            study = _study.open_study(self.storage, self.study_name, self.directions, sampler=None)
            study.sampler = self._sampler(space, 0)  # checks the sampler settings before any job
            study.set_user_attr(PRUNER_ATTR, self.pruner_conf or None)
        except _study.StudyError as e:
            raise fail(str(e)) from None
        return study

    # --- the loop ------------------------------------------------------------------------------
    def run(self, arguments: list[str]) -> list[Sequence[JobReturn]]:
        self._check()
        space = self._space(arguments)
        if self.sampler_conf.get("_target_", "").endswith("GridSampler"):
            size = math.prod(len(v) for v in space.grid().values())
            if size < self.n_trials:
                log.info("grid of %d points: n_trials %d -> %d", size, self.n_trials, size)
                self.n_trials = size
        study = self._open(space)
        owner = _study.owner_token()
        with _study.asking(self.storage, self.sweep_dir):
            pending = _study.settle_abandoned(study, set(space.distributions))
        already = _study.counted(study) - len(pending)
        log.info("study %r in %s: %d of %d trials there already, %d interrupted to resume; sampler %s, pruner %s",
                 self.study_name, self.storage, already, self.n_trials, len(pending),
                 type(study.sampler).__name__, self.pruner_conf.get("_target_", "none").rpartition(".")[2])
        if "://" not in self.storage:
            log.info("watch it: optuna-dashboard %s", self.storage)

        all_returns: list[Sequence[JobReturn]] = []
        job_idx = already
        while True:
            batch = [pending.pop(0) for _ in range(min(self.n_jobs, len(pending)))]
            for ref in batch:
                optuna.trial.Trial(study, ref.trial_id).set_user_attr(_study.OWNER_ATTR, owner)
            n_new = min(self.n_jobs - len(batch), self.n_trials - _study.counted(study))
            for _ in range(max(0, n_new)):
                with _study.asking(self.storage, self.sweep_dir) as number:  # no other search asks meanwhile
                    study.sampler = self._sampler(space, number(study))
                    trial = study.ask(fixed_distributions=dict(space.distributions))
                    trial.set_user_attr(_study.OWNER_ATTR, owner)
                for name, value in space.fixed.items():
                    trial.set_user_attr(name, value)
                batch.append(_study.TrialRef(trial.number, trial._trial_id, dict(trial.params)))
            if not batch:
                break
            overrides = [self._overrides(ref, space) for ref in batch]
            returns = self.launcher.launch(overrides, initial_job_idx=job_idx)
            job_idx += len(returns)
            all_returns.append(returns)
            failed = self._tell(study, batch, returns)
            if failed and failed / len(batch) > self.max_failure_rate:
                raise fail(f"{failed} of {len(batch)} trials of the last batch failed "
                           f"(hydra.sweeper.max_failure_rate={self.max_failure_rate}); job files in {self.sweep_dir}")
        self._write_results(study)
        return all_returns

    def _overrides(self, ref: _study.TrialRef, space: SearchSpace) -> list[str]:
        env = "++hydra.job.env_set."  # ++: add the key, or replace it
        return ([f"{name}={override_value(v)}" for name, v in ref.params.items()]
                + [f"{name}={value}" for name, value in space.fixed.items()]
                + [f"{env}{ENV_STORAGE}={quoted(self.storage)}", f"{env}{ENV_STUDY}={quoted(self.study_name)}",
                   f"{env}{ENV_TRIAL_ID}={ref.trial_id}"])

    def _values(self, ret: JobReturn) -> list[float] | None:
        """The job's objective value(s), or None when it has none Optuna can take."""
        if ret.status != JobStatus.COMPLETED:
            log.warning("trial job failed: %s", ret._return_value)
            return None
        value = ret._return_value
        try:
            values = [float(v) for v in value] if isinstance(value, (list, tuple, ListConfig)) else [float(value)]
        except (TypeError, ValueError):
            return None
        if len(values) != len(self.directions) or not all(math.isfinite(v) for v in values):
            return None
        return values

    def _tell(self, study: optuna.Study, batch: list[_study.TrialRef], returns: Sequence[JobReturn]) -> int:
        failed = 0
        for ref, ret in zip(batch, returns):
            pruned_at = _study.frozen(study, ref.number).user_attrs.get(PRUNED_AT_ATTR)
            values = self._values(ret)
            if pruned_at is not None and len(self.directions) == 1:
                study.tell(ref.number, state=TrialState.PRUNED, skip_if_finished=True)
                log.info("trial %d: pruned at step %s", ref.number, pruned_at)
            elif values is None:
                study.tell(ref.number, state=TrialState.FAIL, skip_if_finished=True)
                log.warning("trial %d: FAIL (no usable objective value; see its job's summary.json)", ref.number)
                failed += 1
            else:
                study.tell(ref.number, values, skip_if_finished=True)
                log.info("trial %d: %s", ref.number, values[0] if len(values) == 1 else values)
        return failed

    def _write_results(self, study: optuna.Study) -> None:
        trials = study.get_trials(deepcopy=False)
        counts = {s.name.lower(): sum(1 for t in trials if t.state == s)
                  for s in (TrialState.COMPLETE, TrialState.PRUNED, TrialState.FAIL, TrialState.RUNNING)}
        results: dict[str, Any] = {"name": "optuna", "study_name": self.study_name, "storage": self.storage,
                                   "n_trials": len(trials), "trials": counts}
        complete = counts["complete"] > 0
        if len(self.directions) == 1:
            best = study.best_trial if complete else None
            results["best_params"] = dict(best.params) if best else None
            results["best_value"] = best.value if best else None
            if best:
                log.info("best trial %d: %s = %s", best.number, best.params, best.value)
        else:
            results["solutions"] = [{"params": dict(t.params), "values": list(t.values)} for t in study.best_trials]
            log.info("%d Pareto solutions", len(results["solutions"]))
        write_atomic(os.path.join(self.sweep_dir, RESULTS_FILE), OmegaConf.to_yaml(OmegaConf.create(results)))
        if not complete:
            raise fail(f"no trial completed ({counts}); job files in {self.sweep_dir}")
