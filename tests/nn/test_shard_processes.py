"""A training step's shards in worker processes compute what threads compute, to the bit, and the
processes leave nothing behind: not after close, not when their job is killed."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

import numpy as np
import pytest

from nn_helpers import random_batch, small_config
from sft_sweep.nn import GPT, AdamW
from sft_sweep.nn import shardprocs


def _train(shard_processes: bool, dtype: str, packed: bool, threads: int = 2, steps: int = 4):
    model = GPT(small_config(dtype=dtype), seed=3, threads=threads, shard_processes=shard_processes)
    opt = AdamW(model.params, weight_decay=0.1)
    rng = np.random.default_rng(5)
    out = []
    for _ in range(steps):
        ids, targets, mask = random_batch(rng, 5, 32, 260)
        extra = {}
        if packed:  # two documents per row, positions restarting at the second
            seg = np.repeat(np.array([[0] * 20 + [1] * 12]), 5, axis=0)
            extra = {"segment_ids": seg, "positions": np.concatenate([np.arange(20), np.arange(12)])[None].repeat(5, 0)}
        loss, grads = model.loss_and_grads(ids, targets, mask, **extra)
        out.append((loss, {n: g.copy() for n, g in grads.items()}))
        opt.step(grads, 3e-3)
    used = model.workers.processes is not None
    model.close()
    return out, used


@pytest.mark.parametrize("dtype,packed", [("float32", False), ("float64", True)])
def test_processes_compute_the_threads_numbers_to_the_bit(dtype, packed):
    # 5 rows over 3 workers: shards of 2, 2, 1 rows; parameters change between the steps
    procs, used = _train(True, dtype, packed, threads=3)
    threads, _ = _train(False, dtype, packed, threads=3)
    assert used
    for (lp, gp), (lt, gt) in zip(procs, threads):
        assert lp == lt
        assert all(np.array_equal(gp[n], gt[n]) for n in gt)


def test_one_thread_starts_no_process():
    model = GPT(small_config(), threads=1)
    model.loss_and_grads(*random_batch(np.random.default_rng(0), 2, 8, 260))
    assert model.workers.processes is None


def test_close_ends_the_workers_and_no_file_is_left(tmp_path, monkeypatch):
    monkeypatch.setattr(shardprocs.tempfile, "mkstemp", _mkstemp_in(tmp_path))
    model = GPT(small_config(), threads=2)
    model.loss_and_grads(*random_batch(np.random.default_rng(0), 4, 8, 260))
    procs = model.workers.processes._procs
    assert procs and all(p.poll() is None for p in procs)
    assert list(tmp_path.iterdir()) == []  # unlinked once every process had mapped it
    model.close()
    assert all(p.poll() is not None for p in procs)
    assert model.workers.processes is not None  # restarted on demand for the next step...
    model.set_threads(1)
    assert model.workers.processes is None      # ...but not with one thread


def _mkstemp_in(d):
    real = shardprocs.tempfile.mkstemp

    def mkstemp(prefix="", dir=None):  # noqa: A002 - tempfile's own keyword
        return real(prefix=prefix, dir=str(d))
    return mkstemp


def test_a_failed_start_falls_back_to_threads(monkeypatch, caplog):
    def refuse(*a, **k):
        raise OSError("no room for the shared buffer")
    monkeypatch.setattr("sft_sweep.nn.gpt.ShardProcesses", refuse)
    batch = random_batch(np.random.default_rng(1), 4, 8, 260)
    model = GPT(small_config(), seed=2, threads=2)
    with caplog.at_level("WARNING", logger="sft_sweep"):
        loss, _ = model.loss_and_grads(*batch)
    assert model.workers.processes is None
    assert "could not start" in caplog.text and "no room for the shared buffer" in caplog.text
    ref = GPT(small_config(), seed=2, threads=2, shard_processes=False)
    assert loss == ref.loss_and_grads(*batch)[0]


CHILD = """
import sys, numpy as np
sys.path[:0] = [{tests!r}]
from nn_helpers import random_batch, small_config
from sft_sweep.nn import GPT
m = GPT(small_config(), threads=2)
m.loss_and_grads(*random_batch(np.random.default_rng(0), 4, 8, 260))
print(" ".join(str(p.pid) for p in m.workers.processes._procs), flush=True)
import time; time.sleep(60)
"""


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    try:  # a zombie (ended, not yet reaped by its parent) counts as ended
        with open(f"/proc/{pid}/stat") as f:
            return f.read().split(")")[-1].split()[0] != "Z"
    except OSError:
        return False


@pytest.mark.parametrize("sig", [signal.SIGKILL, signal.SIGINT])
def test_workers_end_with_their_job(sig):
    # Killed outright, or interrupted from the terminal (the whole process group gets SIGINT):
    # the job ends, and its workers, which ignore the signal, end with it when their pipe closes.
    tests = os.path.dirname(os.path.abspath(__file__))
    job = subprocess.Popen([sys.executable, "-c", CHILD.format(tests=tests)], stdout=subprocess.PIPE, text=True,
                           start_new_session=True)
    try:
        pids = [int(p) for p in job.stdout.readline().split()]
        assert pids and all(_alive(p) for p in pids)
        os.killpg(job.pid, sig)
        job.wait(timeout=30)
        deadline = time.monotonic() + 20
        while any(_alive(p) for p in pids) and time.monotonic() < deadline:
            time.sleep(0.1)
        assert not any(_alive(p) for p in pids)
    finally:
        if job.poll() is None:
            job.kill()


BUSY_CHILD = """
import sys, numpy as np
from sft_sweep.nn import GPT, GPTConfig
m = GPT(GPTConfig(n_layer=2, n_head=4, n_embd=128, n_mlp=512, block_size=256), seed=0, threads=2)
rng = np.random.default_rng(0)
ids = rng.integers(0, 260, (4, 256))
while True:
    m.loss_and_grads(ids, ids, np.ones((4, 256)))
    print("step", flush=True)
"""


@pytest.mark.parametrize("delay", [0.0, 0.05, 0.1])
def test_a_job_killed_mid_step_leaves_its_workers_silent(delay):
    # Killed while its worker computes a shard: the worker finds nobody to send the result to and
    # ends without a word (its stderr is the job's, here a pipe read to its end).
    job = subprocess.Popen([sys.executable, "-c", BUSY_CHILD], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                           text=True)
    try:
        assert job.stdout.readline() == "step\n"
        time.sleep(delay)
        job.kill()
        job.wait(timeout=30)
        t0 = time.monotonic()
        err = job.stderr.read()  # at its end once every worker holding it has ended
        assert time.monotonic() - t0 < 20
        assert err == "", err[-2000:]
    finally:
        if job.poll() is None:
            job.kill()
