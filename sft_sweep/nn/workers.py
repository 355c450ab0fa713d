"""How the fast GPT spreads a batch over threads: shards, per-thread workspaces, one BLAS thread.

The batch is split across ``threads`` Python worker threads, each running its shard's forward
and backward with one BLAS thread (numpy releases the GIL in BLAS and in ufunc loops, so shards
run truly in parallel); the per-shard gradients are summed at the end in a fixed order, so a
fixed ``threads`` setting is bit-reproducible. On a 2-core machine this beat one process with
two BLAS threads, whose small products gain little from a second thread. A training step's
shards 1.. go to worker processes instead (``shardprocs.py``, same numbers, no interpreter-lock
hand-offs) when the model was given a way to start them.
"""

from __future__ import annotations

import logging
import threading
from concurrent.futures import ThreadPoolExecutor

import numpy as np

from ..errors import ConfigError
from . import layers as L

log = logging.getLogger("sft_sweep")

# Workspaces kept per thread: training and evaluation batches alternate between a few shapes.
WORKSPACES_KEPT = 3

_BLAS = None
_BLAS_LOCK = threading.Lock()


def _blas_controller():
    global _BLAS
    with _BLAS_LOCK:
        if _BLAS is None:
            from threadpoolctl import ThreadpoolController
            _BLAS = ThreadpoolController()
        return _BLAS


class ShardWorkers:
    """A pool of ``threads`` workers, their workspaces and their gradient buffers.

    ``spawn(n)``, when given, starts ``n`` worker processes for a training step's shards 1..n
    (``shardprocs.ShardProcesses``); ``processes`` starts them on first use with more than one
    thread, and is None when there is one thread or they could not start (threads then run
    every shard)."""

    def __init__(self, dtype: np.dtype, threads: int = 1, spawn=None) -> None:
        self.dtype = dtype
        self.threads = 1
        self._pool: ThreadPoolExecutor | None = None
        self._spawn = spawn
        self._procs = None
        self._procs_failed = False
        self.grad_buffers: dict[int, np.ndarray] = {}
        self._ws: dict[int, dict[tuple[int, int], L.Workspace]] = {}
        self.set_threads(threads)

    @property
    def processes(self):
        if self._procs is None and self._spawn is not None and self.threads > 1 and not self._procs_failed:
            try:
                self._procs = self._spawn(self.threads - 1)
            except (OSError, RuntimeError) as exc:
                self._procs_failed = True
                log.warning("shard worker processes could not start (%s): training steps run their "
                            "shards on threads", exc)
        return self._procs

    def blas_limit(self):
        """One BLAS thread for the calls inside (as every shard computes with)."""
        return _blas_controller().limit(limits=1, user_api="blas")

    def set_threads(self, n: int) -> None:
        if isinstance(n, bool) or not isinstance(n, (int, np.integer)) or n < 1:
            raise ConfigError(f"threads must be a positive integer, got {n!r}")
        n = int(n)
        if n != self.threads or (n > 1 and self._pool is None):
            self.close()
            if n > 1:
                self._pool = ThreadPoolExecutor(max_workers=n, thread_name_prefix="gpt")
            self.threads = n
            self.grad_buffers.clear()
            self._ws.clear()

    def close(self) -> None:
        if self._pool is not None:
            self._pool.shutdown(wait=True)
            self._pool = None
        if self._procs is not None:
            self._procs.close()
            self._procs = None

    def shards(self, B: int) -> list[slice]:
        """Rows of a batch of ``B`` for each worker, as even as possible."""
        n = min(self.threads, B)
        bounds = [round(i * B / n) for i in range(n + 1)]
        return [slice(bounds[i], bounds[i + 1]) for i in range(n)]

    def workspace(self, i: int, shape: tuple[int, int]) -> L.Workspace:
        """Shard ``i``'s workspace for a (rows, seq_len) shape. A few shapes are kept
        (training and evaluation batches alternate); older ones are dropped. Handing one out
        starts a call with it, so an oversized one is released first."""
        per = self._ws.setdefault(i, {})
        ws = per.pop(shape, None)
        if ws is None:
            ws = L.Workspace(self.dtype)
            while len(per) >= WORKSPACES_KEPT:
                per.pop(next(iter(per)))
        else:
            ws.release_if_over_limit()
        per[shape] = ws                                 # most recent last
        return ws

    def run(self, fn, shards, prepare=None):
        """Runs ``fn(index, shard)`` for every shard with one BLAS thread each (after
        ``prepare()``, under the same limit, so every product of a call sees the same
        BLAS configuration and results are reproducible)."""
        with self.blas_limit():
            if prepare is not None:
                prepare()
            if len(shards) == 1 or self._pool is None:
                return [fn(i, s) for i, s in enumerate(shards)]
            futures = [self._pool.submit(fn, i, s) for i, s in enumerate(shards)]
            return [f.result() for f in futures]
