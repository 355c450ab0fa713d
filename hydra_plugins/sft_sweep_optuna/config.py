"""Config schema of the search sweeper, registered in Hydra's ConfigStore when Hydra scans plugins.

Groups: ``hydra/sweeper=sft_optuna``, ``hydra/sweeper/sampler={tpe,random,nsgaii,grid}``,
``hydra/sweeper/pruner={none,median,successive_halving,hyperband}``. Sampler and pruner entries are
the keyword arguments of the Optuna class named in ``_target_``.

No ``from __future__ import annotations`` here: Hydra's plugin scan runs this module before it is in
sys.modules, where dataclasses cannot resolve string annotations.
"""

from dataclasses import dataclass, field
from typing import Any, Dict, List, Optional

from hydra.core.config_store import ConfigStore
from omegaconf import MISSING


@dataclass
class TPESamplerConf:
    _target_: str = "optuna.samplers.TPESampler"
    seed: Optional[int] = None
    n_startup_trials: int = 10
    n_ei_candidates: int = 24
    multivariate: bool = False
    constant_liar: bool = True  # trials asked together (n_jobs > 1) spread out instead of clustering


@dataclass
class RandomSamplerConf:
    _target_: str = "optuna.samplers.RandomSampler"
    seed: Optional[int] = None


@dataclass
class NSGAIISamplerConf:
    _target_: str = "optuna.samplers.NSGAIISampler"
    seed: Optional[int] = None
    population_size: int = 50
    mutation_prob: Optional[float] = None
    crossover_prob: float = 0.9
    swapping_prob: float = 0.5


@dataclass
class GridSamplerConf:
    """Every combination of the choice() / range() values once; n_trials is capped at their number."""

    _target_: str = "optuna.samplers.GridSampler"
    seed: Optional[int] = None


@dataclass
class NoPrunerConf:
    _target_: Optional[str] = None


@dataclass
class MedianPrunerConf:
    """Stop a trial whose value is worse than the median of earlier trials at the same step."""

    _target_: str = "optuna.pruners.MedianPruner"
    n_startup_trials: int = 5  # trials that always run to the end, to learn what "median" is
    n_warmup_steps: int = 0  # SFT steps before any trial may be stopped
    interval_steps: int = 1
    n_min_trials: int = 1


@dataclass
class SuccessiveHalvingPrunerConf:
    """Asynchronous successive halving: at rungs min_resource * reduction_factor**k steps keep the top 1/rf."""

    _target_: str = "optuna.pruners.SuccessiveHalvingPruner"
    # SFT steps to the first rung: the app's first evaluation (auto: Optuna's guess from the first trial)
    min_resource: Any = "${oc.select:train.eval_interval,auto}"
    reduction_factor: int = 3
    min_early_stopping_rate: int = 0
    bootstrap_count: int = 0


@dataclass
class HyperbandPrunerConf:
    _target_: str = "optuna.pruners.HyperbandPruner"
    min_resource: Any = "${oc.select:train.eval_interval,1}"  # SFT steps of the smallest budget
    max_resource: Any = "auto"  # SFT steps of a full trial (auto: from the first finished trial)
    reduction_factor: int = 3
    bootstrap_count: int = 0


@dataclass
class SearchSweeperConf:
    _target_: str = "hydra_plugins.sft_sweep_optuna.sweeper.SearchSweeper"
    _recursive_: bool = False  # the sweeper builds sampler and pruner itself (seeds, grid, the jobs' copy)
    defaults: List[Any] = field(default_factory=lambda: [{"sampler": "tpe"}, {"pruner": "none"}])

    sampler: Any = MISSING
    pruner: Any = MISSING
    # "maximize" / "minimize", or a list of them (one per value the job returns: multi-objective)
    direction: Any = "minimize"
    # Where the study lives. null: a journal file <sweep dir>/optuna.journal (works on NFS);
    # a path: a journal file there; a URL (sqlite:///..., postgresql://...): a database.
    storage: Optional[str] = None
    study_name: Optional[str] = None  # null: the sweep directory's name
    n_trials: int = 20  # trials in the study in total; a re-run asks only for the missing ones
    n_jobs: int = 1  # trials launched together (as one launcher batch): the launcher's parallelism
    # share of failed trials in a batch above which the search stops (1.0: never stop)
    max_failure_rate: float = 1.0
    params: Optional[Dict[str, str]] = None  # name -> sweep (choice(...), range(...), interval(...), fixed value)


_cs = ConfigStore.instance()
_cs.store(group="hydra/sweeper", name="sft_optuna", node=SearchSweeperConf, provider="sft_sweep")
for _name, _node in {"tpe": TPESamplerConf, "random": RandomSamplerConf, "nsgaii": NSGAIISamplerConf,
                     "grid": GridSamplerConf}.items():
    _cs.store(group="hydra/sweeper/sampler", name=_name, node=_node, provider="sft_sweep")
for _name, _node in {"none": NoPrunerConf, "median": MedianPrunerConf,
                     "successive_halving": SuccessiveHalvingPrunerConf, "hyperband": HyperbandPrunerConf}.items():
    _cs.store(group="hydra/sweeper/pruner", name=_name, node=_node, provider="sft_sweep")
