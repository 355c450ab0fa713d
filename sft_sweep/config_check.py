"""Refuse a composed config before Hydra creates any directory for it.

Hydra lets ``+key=value`` add a key anywhere, even where the schema has none, and OmegaConf then
drops it silently when the typed Config is built: ``+optim.lrr=1`` would run a full job that
ignores the typo. Keys may be added only where adding them is the documented way: a dataset
(``+data.datasets.NAME...``) and a mixing weight (``+mix.weights.NAME``).

The check runs as a Hydra callback at the start of a run or a multirun, i.e. after composition
and before the run directory exists, so a refused config leaves nothing behind and is reported
once. Each run is also value-checked there: its interpolations resolved (``${oc.env:UNSET}``
names the key it fails in), ``validate``'s rules, and its data files (regular files within
``data.max_file_mb``). For a multirun of Hydra's basic sweeper, every job's config is composed
from the sweep's overrides and checked the same way before the sweep directory exists; a search
sweeper (Optuna) picks its values as it goes, so its jobs are checked by the jobs themselves.
"""

from __future__ import annotations

import dataclasses
import os
import re
import sys
import typing
from pathlib import Path
from typing import Any

from hydra.experimental.callback import Callback
from omegaconf import DictConfig, OmegaConf, open_dict
from omegaconf.errors import OmegaConfBaseException

from .config import Config, to_object, validate
from .data.safe_read import check_regular_file
from .errors import ConfigError, DataError

# Mappings whose keys are names chosen by the user (the schema types them as dict[str, ...]).
OPEN_MAPPINGS = ("data.datasets", "mix.weights")


def _fields(tp: Any) -> dict[str, Any] | None:
    """Field name -> type of a dataclass (Optional unwrapped); None for anything else (free mappings)."""
    args = [a for a in typing.get_args(tp) if a is not type(None)]
    if typing.get_origin(tp) is typing.Union and len(args) == 1:
        tp = args[0]
    if not dataclasses.is_dataclass(tp):
        return None
    hints = typing.get_type_hints(tp)
    return {f.name: hints[f.name] for f in dataclasses.fields(tp)}


def unknown_keys(cfg: DictConfig) -> list[str]:
    """Dotted keys of ``cfg`` (without Hydra's node) that the schema does not define."""
    found: list[str] = []

    def walk(node: Any, tp: Any, prefix: str) -> None:
        fields = _fields(tp)
        if prefix in OPEN_MAPPINGS or fields is None or not isinstance(node, DictConfig) or node._is_none():
            return
        for key in node.keys():
            path = f"{prefix}.{key}" if prefix else str(key)
            if key == "hydra" and not prefix:
                continue
            if key not in fields:
                found.append(path)
                continue
            walk(node._get_node(key), fields[key], path)

    walk(cfg, Config, "")
    return found


def check_keys(cfg: DictConfig) -> None:
    bad = unknown_keys(cfg)
    if bad:
        known = {}
        for key in bad:
            tp: Any = Config
            for part in key.split(".")[:-1]:
                tp = (_fields(tp) or {}).get(part)
            known[key] = ", ".join(_fields(tp) or {}) or "?"
        detail = "; ".join(f"{k} (known here: {known[k]})" for k in bad)
        raise ConfigError(f"unknown config key {detail}. Keys can be added only as "
                          f"+data.datasets.NAME.FIELD=... and +mix.weights.NAME=...")


def _raw_value(cfg: DictConfig, key: str) -> Any:
    """The value of ``key`` as written, before interpolation (None when it cannot be found)."""
    try:
        node: Any = cfg
        for part in key.split("."):
            node = node._get_node(part)
        return node._value()
    except Exception:  # an odd key path: the message goes without the raw value
        return None


def resolution_error(cfg: DictConfig, err: OmegaConfBaseException) -> ConfigError:
    """One line for an interpolation or value that OmegaConf could not resolve."""
    key = getattr(err, "full_key", None) or ""
    first = str(err).splitlines()[0] if str(err) else type(err).__name__
    raw = _raw_value(cfg, key) if key else None
    shown = f"{key}={raw}" if raw is not None else key
    return ConfigError(f"{shown}: cannot be resolved: {first}" if shown else f"config cannot be resolved: {first}")


def check_data_files(cfg: Config, base_dir: str) -> None:
    """Every data file the run reads is a regular file within ``data.max_file_mb`` (DataError)."""
    if cfg.data.source != "files":
        return
    text = cfg.data.pretrain_text
    paths = [ds.path for ds in cfg.data.datasets.values()] + (text if isinstance(text, list) else [text])
    limit = cfg.data.max_file_mb
    for path in filter(None, paths):
        p = Path(path).expanduser()
        p = p if p.is_absolute() else Path(base_dir) / p
        check_regular_file(p, max_mb=limit)


def check_run_config(cfg: DictConfig, base_dir: str | None = None) -> None:
    """Keys, then values (and, given ``base_dir``, data files) of one run's config; raises
    ConfigError or DataError."""
    check_keys(cfg)
    job_cfg = cfg.copy()
    with open_dict(job_cfg):
        job_cfg.pop("hydra", None)
    try:
        obj = to_object(job_cfg)
    except OmegaConfBaseException as err:
        raise resolution_error(job_cfg, err) from None
    validate(obj)
    if base_dir is not None:
        check_data_files(obj, base_dir)


def sweep_jobs(config: DictConfig) -> list[list[str]] | None:
    """The overrides of every job a basic-sweeper multirun will run (None for other sweepers)."""
    from hydra._internal.core_plugins.basic_sweeper import BasicSweeper
    from hydra.core.override_parser.overrides_parser import OverridesParser

    sweeper = config.hydra.sweeper
    if not str(sweeper.get("_target_", "")).endswith("BasicSweeper"):
        return None
    params = OmegaConf.to_container(sweeper.params, resolve=False) if sweeper.get("params") else {}
    task = OmegaConf.to_container(config.hydra.overrides.task, resolve=False)
    args = [f"{k}={v}" for k, v in params.items()] + [str(a) for a in task]
    parser = OverridesParser.create()
    for arg in args:  # one at a time, so that a refusal names its override
        try:
            for override in parser.parse_overrides([arg]):
                if override.is_sweep_override():
                    list(override.sweep_string_iterator())
        except (ValueError, OmegaConfBaseException) as err:
            raise ConfigError(f"{arg}: {str(err).splitlines()[0]}") from None
        except Exception as err:  # Hydra's own parse errors: reported by Hydra as it goes on
            if type(err).__module__.split(".")[0] != "hydra":
                raise
            return None
    try:
        batches = BasicSweeper.split_arguments(parser.parse_overrides(args), None)
    except Exception as err:
        if type(err).__module__.split(".")[0] != "hydra":
            raise
        return None  # e.g. a sweep type the basic sweeper refuses: Hydra says so itself
    return [list(job) for batch in batches for job in batch]


def check_sweep(config: DictConfig, base_dir: str) -> None:
    """Compose and check every job of a basic-sweeper multirun; ConfigError / DataError names the
    first refused job and how many share the problem."""
    from hydra.core.global_hydra import GlobalHydra

    jobs = sweep_jobs(config)
    if not jobs:
        return
    loader = GlobalHydra.instance().config_loader()
    problems: dict[str, list[str]] = {}
    for job in jobs:
        try:
            job_cfg = loader.load_sweep_config(config, list(job))
            check_run_config(job_cfg, base_dir)
        except (ConfigError, DataError) as err:
            # the sweep's values come escaped (``$\{``): shown as the user typed them
            label = " ".join(re.sub(r"\\(.)", r"\1", a) for a in job if _differs(a, jobs))
            problems.setdefault(str(err), []).append(label)
        except OmegaConfBaseException as err:
            problems.setdefault(str(resolution_error(config, err)), []).append(" ".join(job))
    if problems:
        msg, labels = next(iter(problems.items()))
        where = ("the only job" if len(jobs) == 1 else f"all {len(jobs)} jobs") if len(labels) == len(jobs) else \
            f"{len(labels)} of {len(jobs)} jobs, first: {labels[0]}"
        raise ConfigError(f"{msg} ({where}; no job was run)")


def _differs(arg: str, jobs: list[list[str]]) -> bool:
    """Whether this override's key takes more than one value across the jobs."""
    key = arg.partition("=")[0]
    return len({a for job in jobs for a in job if a.partition("=")[0] == key}) > 1


def refuse(err: ConfigError | DataError) -> None:
    print(f"sft-sweep: {err}", file=sys.stderr, flush=True)
    sys.exit(1)


class ConfigCheck(Callback):
    """Hydra callback: stop a run whose config is refused before its directory is created."""

    def on_run_start(self, config: DictConfig, **kwargs: Any) -> None:
        try:
            check_run_config(config, os.getcwd())
        except (ConfigError, DataError) as err:
            refuse(err)

    def on_multirun_start(self, config: DictConfig, **kwargs: Any) -> None:
        try:
            check_keys(config)
            check_sweep(config, os.getcwd())
        except (ConfigError, DataError) as err:
            refuse(err)
