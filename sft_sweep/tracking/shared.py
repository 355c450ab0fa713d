"""What the trackers share, in a module of its own so that each tracker imports it without
importing the package that loads the trackers."""

from __future__ import annotations

from typing import Any

from ..jobfiles import flatten

# What a job's final status means to a tracker (MLflow's run states).
RUN_STATUS = {"completed": "FINISHED", "failed": "FAILED", "interrupted": "KILLED", "pruned": "KILLED"}


def flat_config(cfg_dict: dict[str, Any]) -> dict[str, Any]:
    """The job's config by dotted key, without the trackers' own settings."""
    return {k: v for k, v in flatten(cfg_dict).items() if not k.startswith("logger")}
