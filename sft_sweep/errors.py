"""Exceptions that carry a message meant for the user.

Anything derived from ``SftSweepError`` is a user-facing problem (bad config, bad data,
wrong checkpoint): entry points print its message and exit non-zero instead of a traceback.
"""

from __future__ import annotations

import errno
import io
import os
import sys
from contextlib import contextmanager
from pathlib import Path


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
    """Turn a user's mistake into one line on stderr and exit ``code``: our own errors, a write
    the file system refused (read-only, full, a directory in the way), and Hydra's composition
    errors (a misspelt override, an unknown option). Anything else is a bug and keeps its
    traceback."""
    try:
        yield
    except SftSweepError as e:
        print(f"{prog}: {e}", file=sys.stderr)
        sys.exit(code)
    except OSError as e:
        line = file_system_problem(e)
        if line is None:
            raise
        print(f"{prog}: {line}", file=sys.stderr)
        sys.exit(code)
    except Exception as e:
        if type(e).__module__.split(".")[0] not in ("hydra", "omegaconf"):
            raise
        print(f"{prog}: {str(e).splitlines()[0]}", file=sys.stderr)
        sys.exit(code)


# errno values that say the machine's state stopped a write, not a bug: the message names the path.
_WRITE_PROBLEMS = {
    errno.EROFS: "the file system is read-only",
    errno.ENOSPC: "no space left on the device",
    errno.EDQUOT: "the disk quota is exhausted",
    errno.EACCES: "permission denied",
    errno.EPERM: "operation not permitted",
    errno.EISDIR: "it is a directory",
    errno.ENOTDIR: "a part of the path is not a directory",
}


def _open_file_in(err: BaseException) -> str | None:
    """The name of the file being written where ``err`` was raised: a write that fails at flush or
    close (a full disk) raises an OSError without a file name, but the frame still holds the file."""
    tb, names = err.__traceback__, []
    while tb is not None:
        for value in tb.tb_frame.f_locals.values():
            if isinstance(value, io.IOBase) and isinstance(getattr(value, "name", None), str):
                names.append(value.name)
        tb = tb.tb_next
    return names[-1] if names else None


def file_system_problem(err: BaseException) -> str | None:
    """One line for an OSError that the machine's state explains (read-only or full file system,
    no permission, a directory where a file goes), naming the path; None for anything else."""
    if not isinstance(err, OSError) or err.errno not in _WRITE_PROBLEMS:
        return None
    where = err.filename if err.filename is not None else (_open_file_in(err) or "a file")
    return f"cannot write {where}: {_WRITE_PROBLEMS[err.errno]} (errno {err.errno})"


def check_writable(path: Path, instead: str | None = None) -> None:
    """Refuse, before any work, an output path that is a directory or lies where nothing can be
    written (read-only or without permission); ``instead`` names the option that picks another."""
    hint = f"; give {instead} to write elsewhere" if instead else ""
    if path.is_dir():
        raise SftSweepError(f"cannot write {path}: it is a directory; name a file{hint}")
    folder = path.parent
    while not folder.exists() and folder != folder.parent:
        folder = folder.parent
    if not folder.is_dir():
        raise SftSweepError(f"cannot write {path}: {folder} is not a directory{hint}")
    if not os.access(folder, os.W_OK):
        err = OSError(errno.EROFS if _read_only(folder) else errno.EACCES, "", str(path))
        raise SftSweepError(f"{file_system_problem(err)}{hint}")


def _read_only(folder: Path) -> bool:
    return bool(os.statvfs(folder).f_flag & os.ST_RDONLY)
