"""The worker side of ``shardprocs.py``: one process computing one shard of every training step."""

from __future__ import annotations

import os
import pickle
import signal

import numpy as np
from threadpoolctl import threadpool_limits

from .gpt import GPT


def worker_main(fd_in: int, fd_out: int) -> None:
    """A shard worker: maps the shared file, then computes one shard per message until EOF."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    src, dst = os.fdopen(fd_in, "rb"), os.fdopen(fd_out, "wb")

    def reply(msg) -> None:
        pickle.dump(msg, dst, protocol=pickle.HIGHEST_PROTOCOL)
        dst.flush()

    init = pickle.load(src)
    model = GPT(init["config"], threads=1)
    shared = np.memmap(init["path"], dtype=model.dtype, mode="r+", shape=tuple(init["shape"]))
    model.bind_params(shared[0])  # the caller's parameters, read in place at every step
    grads = shared[init["row"]]
    reply("ready")
    with threadpool_limits(limits=1, user_api="blas"):
        while True:
            try:
                i, inputs = pickle.load(src)
            except EOFError:
                return
            try:
                fw = model._fold()
                reply(model.shard_loss_and_grads(i, *inputs, fw, grads))
            except Exception as exc:  # noqa: BLE001 - the caller raises it
                reply(RuntimeError(f"shard worker {i}: {type(exc).__name__}: {exc}"))


__all__ = ["worker_main"]
