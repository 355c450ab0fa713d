"""The worker side of ``shardprocs.py``: one process computing one shard of every training step."""

from __future__ import annotations

import os
import pickle
import signal

import numpy as np
from threadpoolctl import threadpool_limits

from .gpt import GPT


def worker_main(fd_in: int, fd_out: int) -> None:
    """A shard worker: maps the shared file, then computes one shard per message until EOF; it
    ends at once and quietly when its job is gone."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    src, dst = os.fdopen(fd_in, "rb"), os.fdopen(fd_out, "wb")

    def reply(msg) -> None:
        try:
            pickle.dump(msg, dst, protocol=pickle.HIGHEST_PROTOCOL)
            dst.flush()
        except OSError:  # the job that owns this worker is gone (killed): nobody to answer
            os._exit(0)

    def receive():
        try:
            return pickle.load(src)
        except (EOFError, OSError, pickle.UnpicklingError):  # closed, or cut off by the job's end
            os._exit(0)

    init = receive()
    model = GPT(init["config"], threads=1)
    shared = np.memmap(init["path"], dtype=model.dtype, mode="r+", shape=tuple(init["shape"]))
    model.bind_params(shared[0])  # the caller's parameters, read in place at every step
    grads = shared[init["row"]]
    reply("ready")
    with threadpool_limits(limits=1, user_api="blas"):
        while True:
            i, inputs = receive()
            try:
                fw = model._fold()
                reply(model.shard_loss_and_grads(i, *inputs, fw, grads))
            except Exception as exc:  # noqa: BLE001 - the caller raises it
                reply(RuntimeError(f"shard worker {i}: {type(exc).__name__}: {exc}"))


__all__ = ["worker_main"]
