"""Hydra callback for a multirun's MLflow parent run; MLflow is imported only when a sweep uses it."""

from __future__ import annotations

from typing import Any

from hydra.experimental.callback import Callback
from omegaconf import OmegaConf


class SweepTracking(Callback):
    def __init__(self) -> None:
        self.parent = None

    def on_multirun_start(self, config: Any, **kwargs: Any) -> None:
        if not OmegaConf.select(config, "logger.mlflow", default=None):
            return
        try:
            from .mlflow_run import SweepRun
        except ImportError as e:
            print(f"sft-sweep: warning: logger=mlflow needs MLflow ({e}): pip install 'sft-sweep[mlflow]'")
            return
        self.parent = SweepRun()
        self.parent.on_multirun_start(config)

    def on_multirun_end(self, config: Any, **kwargs: Any) -> None:
        if self.parent is not None:
            self.parent.on_multirun_end(config)
