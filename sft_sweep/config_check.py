"""Refuse a composed config before Hydra creates any directory for it.

Hydra lets ``+key=value`` add a key anywhere, even where the schema has none, and OmegaConf then
drops it silently when the typed Config is built: ``+optim.lrr=1`` would run a full job that
ignores the typo. Keys may be added only where adding them is the documented way: a dataset
(``+data.datasets.NAME...``) and a mixing weight (``+mix.weights.NAME``).

The check runs as a Hydra callback at the start of a run or a multirun, i.e. after composition
and before the run directory exists, so a refused config leaves nothing behind and is reported
once. A single run is also value-checked (``validate``) there; in a multirun each job's values are
checked by the job, since the sweep may change them.
"""

from __future__ import annotations

import dataclasses
import sys
import typing
from typing import Any

from hydra.experimental.callback import Callback
from omegaconf import DictConfig, open_dict

from .config import Config, to_object, validate
from .errors import ConfigError

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


def check_run_config(cfg: DictConfig) -> None:
    """Keys, then values, of a single run's config; raises ConfigError."""
    check_keys(cfg)
    job_cfg = cfg.copy()
    with open_dict(job_cfg):
        job_cfg.pop("hydra", None)
    validate(to_object(job_cfg))


def refuse(err: ConfigError) -> None:
    print(f"sft-sweep: {err}", file=sys.stderr, flush=True)
    sys.exit(1)


class ConfigCheck(Callback):
    """Hydra callback: stop a run whose config is refused before its directory is created."""

    def on_run_start(self, config: DictConfig, **kwargs: Any) -> None:
        try:
            check_run_config(config)
        except ConfigError as err:
            refuse(err)

    def on_multirun_start(self, config: DictConfig, **kwargs: Any) -> None:
        try:
            check_keys(config)
        except ConfigError as err:
            refuse(err)
