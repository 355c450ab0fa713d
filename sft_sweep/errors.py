"""Exceptions that carry a message meant for the user.

Anything derived from ``SftSweepError`` is a user-facing problem (bad config, bad data,
wrong checkpoint): entry points print its message and exit non-zero instead of a traceback.
"""

from __future__ import annotations

import sys
from contextlib import contextmanager


class SftSweepError(Exception):
    """Base class for errors whose message is written for the user."""


class ConfigError(SftSweepError):
    """A configuration value is invalid."""


class DataError(SftSweepError):
    """A data file or record is malformed. Names the file, record index and field."""

    def __init__(self, message: str, *, path: str | None = None, record: int | None = None,
                 field: str | None = None) -> None:
        where = []
        if path is not None:
            where.append(f"file {path}")
        if record is not None:
            where.append(f"record {record}")
        if field is not None:
            where.append(f"field {field!r}")
        prefix = (", ".join(where) + ": ") if where else ""
        super().__init__(prefix + message)
        self.path, self.record, self.field = path, record, field


class CheckpointError(SftSweepError):
    """A checkpoint is missing, corrupt, or belongs to another configuration."""


class NonFiniteLossError(SftSweepError):
    """Training produced a NaN or infinite loss."""


class DivergedError(SftSweepError):
    """Training diverged: a loss became non-finite or exceeded the divergence bound.

    ``metric`` names the loss (``loss`` for training, or an evaluation metric such as
    ``raw_loss``), ``value`` its value (NaN / inf included), ``step`` the optimiser step and
    ``bound`` the limit it crossed (None when only non-finite values are caught).
    """

    def __init__(self, metric: str, value: float, step: int, bound: float | None) -> None:
        if value != value or value in (float("inf"), float("-inf")):
            what = f"{metric} is non-finite ({value})"
        else:
            what = f"{metric} {value:.6g} > {bound:.4g} (train.diverge_factor x ln(vocab_size))"
        super().__init__(f"diverged at step {step}: {what}; lower optim.lr or keep optim.grad_clip > 0")
        self.metric, self.value, self.step, self.bound = metric, value, step, bound

    def details(self) -> dict:
        return {"metric": self.metric, "value": self.value, "step": self.step, "bound": self.bound}


@contextmanager
def user_errors_exit(prog: str, code: int = 2):
    """Turn a user's mistake into one line on stderr and exit ``code``: our own errors, and
    Hydra's composition errors (a misspelt override, an unknown option). Anything else is a bug
    and keeps its traceback."""
    try:
        yield
    except SftSweepError as e:
        print(f"{prog}: {e}", file=sys.stderr)
        sys.exit(code)
    except Exception as e:
        if type(e).__module__.split(".")[0] not in ("hydra", "omegaconf"):
            raise
        print(f"{prog}: {str(e).splitlines()[0]}", file=sys.stderr)
        sys.exit(code)
