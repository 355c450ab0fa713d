"""A cancelled task on a single-node Slurm with accounting (slurmdbd, MariaDB; both from Debian's
packages, brought up by slurm_cluster.py): ``sacct`` knows the task's state here, where submitit's
own wait raised on the first task without a result. The sweep must end as without accounting: one
line naming the task, the report for the rest, exit status 1, nothing left in the queue. Slow; CI
runs it as root."""

import os
import shutil
import time

import pytest

from .slurm_cluster import SlurmCluster
from .test_slurm_real import cancelled_task_ends_the_sweep

pytestmark = pytest.mark.slow
if not (shutil.which("slurmdbd") or os.path.exists("/usr/sbin/slurmdbd") or os.geteuid() == 0):
    pytest.skip("slurmdbd is not installed and cannot be (not root)", allow_module_level=True)


@pytest.fixture(scope="module")
def accounting_cluster(tmp_path_factory):
    t0 = time.monotonic()
    with SlurmCluster(tmp_path_factory.mktemp("slurm_acct"), accounting=True) as c:
        print(f"Slurm with accounting up in {time.monotonic() - t0:.1f} s")
        yield c


def test_a_cancelled_task_ends_the_sweep_in_one_line_with_accounting(accounting_cluster, cache_dir, tmp_path):
    assert "CANCELLED" not in accounting_cluster.run("sacct", "-X", "-n")  # a fresh database
    cancelled_task_ends_the_sweep(accounting_cluster, cache_dir, tmp_path, resume=False)
    lines = accounting_cluster.run("sacct", "-X", "-n", "-o", "JobID,State")
    assert "CANCELLED" in lines and "COMPLETED" in lines, lines  # sacct saw both tasks
