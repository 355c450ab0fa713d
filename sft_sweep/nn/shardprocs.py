"""A training step's shards in worker processes, for more than one core.

``loss_and_grads`` splits the batch into shards (``workers.py``). Threads run them side by side
only while numpy holds no lock: every numpy call releases Python's global interpreter lock and
takes it back, and with several threads those hand-offs cost about a tenth of a 2-core step (and
more with more cores). Here shard 0 runs in the calling process and shards 1.. each in a process
of their own, started once per model and kept for its life:

- the parameters and one gradient buffer per worker live in one memory-mapped file (unlinked as
  soon as every process has mapped it, so nothing is left behind); the caller copies its
  parameters in before each step and adds each worker's gradient after it;
- a step's inputs (ids, targets, weights, segments, positions of each shard) and its loss travel
  as pickles over a pipe per worker;
- a worker computes exactly what a thread would (the same ``GPT.shard_loss_and_grads`` with one
  BLAS thread), so the sum of the shards, taken in the same order, is the same to the bit;
- a worker ignores SIGINT and SIGTERM (the job that owns it decides how to stop) and exits when
  its pipe closes, which also happens when the job dies.
"""

from __future__ import annotations

import json
import os
import pickle
import subprocess
import sys
import tempfile
from collections.abc import Sequence

import numpy as np

from .config import DTYPES, GPTConfig

_BOOT = ("import json, sys; sys.path[:0] = [p for p in json.loads(sys.argv[1]) if p not in sys.path]; "
         "from sft_sweep.nn.shardworker import worker_main; worker_main(int(sys.argv[2]), int(sys.argv[3]))")


class ShardProcesses:
    """``n`` worker processes computing shards 1..n of ``config``'s model."""

    def __init__(self, config: GPTConfig, num_params: int, n: int) -> None:
        self.n, self.num_params = n, num_params
        dtype = np.dtype(DTYPES[config.dtype])
        where = "/dev/shm" if os.path.isdir("/dev/shm") and os.access("/dev/shm", os.W_OK) else None
        fd, path = tempfile.mkstemp(prefix="sft-sweep-shards-", dir=where)
        os.close(fd)
        self._procs: list[subprocess.Popen] = []
        self._to: list = []
        self._from: list = []
        try:
            self._map = np.memmap(path, dtype=dtype, mode="w+", shape=(n + 1, num_params))
            self.params = self._map[0]
            for k in range(n):
                self._start(config, path, k)
            for k in range(n):
                if self._read(k) != "ready":
                    raise RuntimeError(f"shard worker {k + 1} did not start")
        except BaseException:
            self.close()
            raise
        finally:
            os.unlink(path)  # every process has it mapped (or has failed): the name is not needed

    def _start(self, config: GPTConfig, path: str, k: int) -> None:
        to_r, to_w = os.pipe()
        from_r, from_w = os.pipe()
        proc = subprocess.Popen([sys.executable, "-c", _BOOT, json.dumps(sys.path), str(to_r), str(from_w)],
                                pass_fds=(to_r, from_w), stdin=subprocess.DEVNULL, close_fds=True)
        os.close(to_r)
        os.close(from_w)
        self._procs.append(proc)
        self._to.append(os.fdopen(to_w, "wb"))
        self._from.append(os.fdopen(from_r, "rb"))
        self._write(k, {"config": config, "path": path, "row": k + 1, "shape": (self.n + 1, self.num_params)})

    def _write(self, k: int, msg) -> None:
        pickle.dump(msg, self._to[k], protocol=pickle.HIGHEST_PROTOCOL)
        self._to[k].flush()

    def _read(self, k: int):
        try:
            msg = pickle.load(self._from[k])
        except EOFError:
            code = self._procs[k].poll()
            raise RuntimeError(f"shard worker {k + 1} ended (exit code {code}); its error, if any, is above") from None
        if isinstance(msg, BaseException):
            raise msg
        return msg

    def submit(self, flat_params: np.ndarray, shards: Sequence[tuple]) -> None:
        """Starts one step: the current parameters, then each worker's shard inputs."""
        np.copyto(self.params, flat_params)
        for k, inputs in enumerate(shards):
            self._write(k, (k + 1, inputs))

    def results(self) -> list[float]:
        """Each worker's shard loss, in shard order, once its gradient is in ``grads(k)``."""
        return [self._read(k) for k in range(self.n)]

    def grads(self, k: int) -> np.ndarray:
        return self._map[k + 1]

    def close(self) -> None:
        for f in self._to:
            try:
                f.close()
            except OSError:
                pass
        for proc in self._procs:
            try:
                proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        for f in self._from:
            f.close()
        self._procs, self._to, self._from = [], [], []


__all__ = ["ShardProcesses"]
