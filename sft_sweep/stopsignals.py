"""SIGTERM and SIGHUP end a job as Ctrl-C does: status ``interrupted``, resumable.

A batch system's time limit or preemption sends SIGTERM, a closed terminal SIGHUP; Python's
default for both ends the process on the spot, leaving ``summary.json`` at ``running``. Here they
raise ``Stopped`` (a ``KeyboardInterrupt``) in the main thread, which the job already turns into
``interrupted`` while keeping its last checkpoint.

Ctrl-C takes the same path: every stop signal is handled once per process, the later ones (a
terminal's Ctrl-C reaches the command and its workers alike, ``timeout`` passes on a copy of its
own, an impatient second Ctrl-C) are ignored while the jobs record themselves.

A launcher's worker processes (joblib) do not see a signal sent to the command alone, so the
command passes it on to its child processes, then waits a little for them to record their jobs and
exit before it stops itself; a worker, once its job is recorded, exits. A command killed outright
(``kill -9``) passes nothing on: each worker watches the command's process and, once it is gone,
stops itself the same way (an idle worker simply exits), so no worker outlives its sweep.
"""

from __future__ import annotations

import contextlib
import logging
import os
import signal
import threading
import time
from pathlib import Path
from typing import Any

# Ctrl-C (SIGINT) too: handled alike, a second one (a terminal's Ctrl-C reaches every process of
# the group, and ``timeout`` passes its own copy on) cannot cut a job's last write.
STOP_SIGNALS = (signal.SIGTERM, signal.SIGHUP, signal.SIGINT)
#: How long the command waits for its workers to record their interrupted jobs.
WORKER_GRACE_S = 60.0
#: Set by the command for its launcher's workers: the pid of the process that started the sweep.
MAIN_PID_ENV = "SFT_SWEEP_MAIN_PID"


class Stopped(KeyboardInterrupt):
    """A stop signal arrived; ``exit_code`` is the shell's code for it (128 + number)."""

    def __init__(self, signum: int) -> None:
        super().__init__(f"stopped by {signal.Signals(signum).name}")
        self.signum = signum
        self.exit_code = 128 + signum


def child_pids() -> list[int]:
    """This process's live children that do not ignore SIGTERM (Linux ``/proc``; elsewhere none).
    A child that ignores it (multiprocessing's resource tracker) ends with its parent anyway."""
    me, found = os.getpid(), []
    for status in Path("/proc").glob("[0-9]*/status"):
        try:
            fields = dict(line.split(":\t", 1) for line in status.read_text().splitlines() if ":\t" in line)
        except (OSError, ValueError):
            continue
        if int(fields.get("PPid", "0")) != me or fields.get("State", "").startswith("Z"):
            continue
        if int(fields.get("SigIgn", "0"), 16) & (1 << (signal.SIGTERM - 1)):
            continue
        found.append(int(status.parent.name))
    return found


def _alive(pid: int) -> bool:
    try:
        return not Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0].startswith("Z")
    except (OSError, IndexError):
        return False


def _on_stop(signum: int, frame: Any) -> None:
    for other in STOP_SIGNALS:  # stopping already: a second signal must not cut the job's last write
        signal.signal(other, signal.SIG_IGN)
    children = child_pids()
    for pid in children:
        try:
            os.kill(pid, signum)
        except OSError:
            pass
    end = time.monotonic() + WORKER_GRACE_S
    while any(_alive(pid) for pid in children) and time.monotonic() < end:
        time.sleep(0.1)
    raise Stopped(signum)


def handle_stop_signals() -> None:
    """Make SIGTERM / SIGHUP raise ``Stopped`` in this process (a no-op outside the main thread)."""
    for signum in STOP_SIGNALS:
        try:
            signal.signal(signum, _on_stop)
        except ValueError:  # not the main thread: the process's owner handles signals
            return


def mark_main_process() -> None:
    os.environ[MAIN_PID_ENV] = str(os.getpid())


def in_launcher_worker() -> bool:
    """Whether this process runs jobs for a command in another process (a joblib worker)."""
    main = os.environ.get(MAIN_PID_ENV)
    return bool(main) and main != str(os.getpid())


#: How often a launcher's worker looks whether the command that started the sweep is still there.
MAIN_WATCH_S = 0.5
_watching = False
_job_running = threading.Event()


@contextlib.contextmanager
def running_job():
    """Marks the block as this process's job (for ``end_with_main_process``)."""
    _job_running.set()
    try:
        yield
    finally:
        _job_running.clear()


def end_with_main_process() -> None:
    """In a launcher's worker started by the command itself (joblib's): once the command is gone
    (this process handed to another parent), stop as if it had passed SIGTERM on (the running job
    records ``interrupted``, then the worker exits), or exit at once when no job runs. Started
    once per worker; a no-op in the command's own process and in workers it did not start (a
    cluster's or Ray's, which their own systems end)."""
    global _watching
    if _watching or not in_launcher_worker() or str(os.getppid()) != os.environ[MAIN_PID_ENV]:
        return
    _watching = True
    main = os.getppid()

    def watch() -> None:
        while os.getppid() == main:
            time.sleep(MAIN_WATCH_S)
        if _job_running.is_set():
            os.kill(os.getpid(), signal.SIGTERM)
            time.sleep(WORKER_GRACE_S)  # the job records itself and the worker exits meanwhile
        logging.shutdown()
        os._exit(128 + signal.SIGTERM)

    threading.Thread(target=watch, name="sft-sweep-main-watch", daemon=True).start()


def exit_worker(stop: Stopped) -> None:
    """End a launcher's worker whose job was stopped and recorded (its command waits for it)."""
    logging.shutdown()
    os._exit(stop.exit_code)
