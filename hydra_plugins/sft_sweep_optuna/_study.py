"""The study: where it is stored, who runs its trials, which running trials were abandoned.

Storage: by default a journal file, ``<sweep dir>/optuna.journal``. Optuna's journal storage
appends one JSON line per change under a lock made by an atomic symlink (safe on NFS, where
SQLite's POSIX locks are not reliable), and every reader replays the log; so the sweeper, each job
reporting its evaluations and ``optuna-dashboard`` may all use it at once. A database URL
(``sqlite:///...`` on a local disk, ``postgresql://...``) is accepted too.

Resume: each asked trial carries the sweeper that runs it (host and process id) as a user
attribute. A RUNNING trial whose sweeper process is gone on this host was interrupted: a new run of
the same search adopts it and launches its job again with the same parameters, in the same job
directory, where the job resumes from its checkpoint. RUNNING trials of a live sweeper (another
search on the same storage, or one on another host) are left to it.
"""

from __future__ import annotations

import contextlib
import os
import socket
from dataclasses import dataclass
from typing import Any, Callable, Iterator

import optuna
from optuna.storages.journal import JournalFileSymlinkLock
from optuna.trial import FrozenTrial, TrialState

from sft_sweep.train.trial import PRUNED_AT_ATTR, open_storage

OWNER_ATTR = "sweeper"  # "host:pid" of the sweeper process that launched the trial's job


class StudyError(Exception):
    """A study that cannot be opened or used as asked (one line for the user)."""


def owner_token() -> str:
    return f"{socket.gethostname()}:{os.getpid()}"


def _process_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # exists, owned by someone else
        return True
    return True


def abandoned(trial: FrozenTrial) -> bool:
    """A RUNNING trial whose sweeper died on this host (or that has no recorded sweeper)."""
    if trial.state != TrialState.RUNNING:
        return False
    owner = str(trial.user_attrs.get(OWNER_ATTR) or "")
    host, _, pid = owner.rpartition(":")
    if not owner or not pid.isdigit():
        return True  # only seen under the ask lock, so its sweeper died between ask and recording itself
    if host != socket.gethostname():
        return False  # cannot tell from here: left to its own sweeper
    return int(pid) != os.getpid() and not _process_alive(int(pid))


def storage_spec(storage: str | None, sweep_dir: str) -> str:
    """Absolute journal path or database URL (the jobs may run elsewhere than the sweeper's cwd)."""
    if storage and "://" in storage:
        return storage
    return os.path.abspath(storage or os.path.join(sweep_dir, "optuna.journal"))


def open_study(spec: str, name: str, directions: list[str], sampler: Any) -> optuna.Study:
    """Create the study or load it; every failure becomes one StudyError line."""
    try:
        if "://" not in spec:
            os.makedirs(os.path.dirname(spec), exist_ok=True)
            if os.path.isdir(spec):
                raise IsADirectoryError(f"{spec} is a directory")
        storage = open_storage(spec)
        study = optuna.create_study(storage=storage, study_name=name, sampler=sampler, directions=directions,
                                    load_if_exists=True)
    except Exception as e:  # noqa: BLE001 - file system, lock, database driver: all the same to the user
        reason = str(e).splitlines()[0] if str(e) else type(e).__name__
        raise StudyError(f"cannot open the study storage {spec}: {type(e).__name__}: {reason}") from None
    existing = [d.name.lower() for d in study.directions]
    if existing != directions:
        raise StudyError(f"study {name!r} in {spec} has directions {existing}, this search asks for {directions}: "
                         "give it another hydra.sweeper.study_name or storage")
    return study


@dataclass
class TrialRef:
    """A trial this sweeper launches: a fresh one from ask(), or an adopted interrupted one."""

    number: int
    trial_id: int
    params: dict[str, Any]
    adopted: bool = False


def settle_abandoned(study: optuna.Study, param_names: set[str]) -> list[TrialRef]:
    """The abandoned trials to launch again (call it holding the ask lock: see ``asking``).

    One whose job had already been pruned is told PRUNED; one whose sweeper died before its
    parameters were all drawn cannot be launched as it was, and is told FAIL.
    """
    again = []
    for t in study.get_trials(deepcopy=False):
        if not abandoned(t):
            continue
        if PRUNED_AT_ATTR in t.user_attrs and len(study.directions) == 1:
            study.tell(t.number, state=TrialState.PRUNED, skip_if_finished=True)
        elif set(t.params) != param_names:
            study.tell(t.number, state=TrialState.FAIL, skip_if_finished=True)
        else:
            again.append(TrialRef(t.number, t._trial_id, dict(t.params), adopted=True))
    return again


def counted(study: optuna.Study) -> int:
    """Trials that count towards n_trials: finished ones and those running now (WAITING ones not yet)."""
    return sum(1 for t in study.get_trials(deepcopy=False) if t.state != TrialState.WAITING)


def frozen(study: optuna.Study, number: int) -> FrozenTrial:
    return study.get_trials(deepcopy=False)[number]


@contextlib.contextmanager
def asking(spec: str, sweep_dir: str) -> Iterator[Callable[[optuna.Study], int]]:
    """Hold the study's ask lock; yields a function giving the number the next trial will get.

    Searches sharing a study take this lock (Optuna's NFS-safe symlink lock, beside the journal
    file, or in the sweep dir for a database) around choosing a sampler seed, asking and recording
    the trial's sweeper, and around looking for abandoned trials: so the number a sampler is seeded
    with is the number its trial gets, and no search sees another's trial before it has an owner.
    A lock left by a killed sweeper is broken after Optuna's grace period (30 s without change).
    """
    path = spec + ".ask" if "://" not in spec else os.path.join(os.path.abspath(sweep_dir), ".optuna.ask")
    os.makedirs(os.path.dirname(path), exist_ok=True)
    # The lock is a symlink to this file; Optuna times a stale lock by the target's mtime, so the
    # target must exist (a dangling link would be waited on forever).
    open(path, "a").close()
    lock = JournalFileSymlinkLock(path)
    lock.acquire()
    try:
        yield lambda study: len(study.get_trials(deepcopy=False))
    finally:
        lock.release()
