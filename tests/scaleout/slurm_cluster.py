"""A single-node Slurm on this machine, from Debian's packages, for the tests and by hand.

    python -m tests.scaleout.slurm_cluster up DIR     # installs slurm-wlm + munge if absent (root), starts
    . DIR/env.sh && sinfo                             # SLURM_CONF for the commands
    python -m tests.scaleout.slurm_cluster down DIR

slurmctld and slurmd both run on this host as root, with their state, spool, logs and pid files
under DIR. What a one-host cluster needs besides the defaults: process tracking through /proc
(``proctrack/linuxproc``: no cgroup setup), no task plugin, no mail, no accounting (``sacct``
then fails, which is part of what the tests check). munged runs as the munge user with its
socket in a folder of its own under /tmp (munge cannot reach into a private DIR), so a system
munge (if any) is left alone.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

PACKAGES = ("slurm-wlm", "munge")
PARTITION = "debug"


def ensure_installed() -> None:
    """apt-get installs Slurm and munge when their daemons are missing (needs root)."""
    if all(shutil.which(p) for p in ("slurmctld", "slurmd", "munged", "sbatch")):
        return
    if os.geteuid() != 0:
        raise RuntimeError("Slurm is not installed and installing it needs root: apt-get install slurm-wlm munge")
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    subprocess.run(["apt-get", "update", "-qq"], check=True, env=env, stdout=subprocess.DEVNULL)
    subprocess.run(["apt-get", "install", "-y", "-qq", *PACKAGES], check=True, env=env, stdout=subprocess.DEVNULL)


def _memory_mb() -> int:
    with open("/proc/meminfo") as f:
        for line in f:
            if line.startswith("MemTotal:"):
                return int(line.split()[1]) // 1024 - 512  # leave the system a little
    return 1024


class SlurmCluster:
    def __init__(self, root: Path, cpus: int | None = None) -> None:
        self.root = Path(root).resolve()
        self.host = socket.gethostname().split(".")[0]
        self.cpus = cpus or os.cpu_count() or 1
        self.conf = self.root / "slurm.conf"
        self._munge_note = self.root / "munge_dir"  # where this cluster's munged keeps its socket

    @property
    def munge_dir(self) -> Path:
        if not self._munge_note.exists():
            d = Path(tempfile.mkdtemp(prefix="sft-sweep-munge-"))
            d.chmod(0o755)
            shutil.chown(d, "munge", "munge")
            self._munge_note.write_text(str(d))
        return Path(self._munge_note.read_text().strip())

    @property
    def munge_socket(self) -> Path:
        return self.munge_dir / "munge.socket.2"

    @property
    def env(self) -> dict[str, str]:
        """The environment for Slurm's commands (and for a sweep submitted to this cluster)."""
        return {**os.environ, "SLURM_CONF": str(self.conf)}

    def _write_conf(self) -> None:
        r = self.root
        lines = [
            "ClusterName=sftsweep", f"SlurmctldHost={self.host}", "SlurmUser=root", "SlurmdUser=root",
            "AuthType=auth/munge", f"AuthInfo=socket={self.munge_socket}", "MpiDefault=none",
            "ProctrackType=proctrack/linuxproc", "TaskPlugin=task/none", "MailProg=/bin/true",
            "ReturnToService=2", "SchedulerType=sched/backfill", "SelectType=select/cons_tres",
            "SelectTypeParameters=CR_Core", "AccountingStorageType=accounting_storage/none",
            "JobAcctGatherType=jobacct_gather/none", "JobCompType=jobcomp/none",
            # a task past its limit is killed within seconds (the tests wait for it)
            "KillWait=5", "MinJobAge=3600", "SlurmctldPort=16817", "SlurmdPort=16818",
            f"SlurmctldPidFile={r}/slurmctld.pid", f"SlurmdPidFile={r}/slurmd.pid",
            f"SlurmdSpoolDir={r}/spool", f"StateSaveLocation={r}/state",
            f"SlurmctldLogFile={r}/slurmctld.log", f"SlurmdLogFile={r}/slurmd.log",
            f"NodeName={self.host} CPUs={self.cpus} RealMemory={_memory_mb()} State=UNKNOWN",
            f"PartitionName={PARTITION} Nodes=ALL Default=YES MaxTime=INFINITE State=UP",
        ]
        self.conf.write_text("\n".join(lines) + "\n")
        (r / "env.sh").write_text(f"export SLURM_CONF={self.conf}\n")

    def _start_munge(self) -> None:
        d = self.munge_dir
        key = Path("/etc/munge/munge.key")
        if not key.exists():
            subprocess.run(["runuser", "-u", "munge", "--", "mungekey", "--create"], check=True)
        subprocess.run(["runuser", "-u", "munge", "--", "munged", f"--socket={self.munge_socket}",
                        f"--pid-file={d}/munged.pid", f"--log-file={d}/munged.log", f"--seed-file={d}/seed",
                        "--force"], check=True)

    def start(self, timeout: float = 60) -> "SlurmCluster":
        ensure_installed()
        self.root.mkdir(parents=True, exist_ok=True)
        for sub in ("state", "spool"):
            (self.root / sub).mkdir(parents=True, exist_ok=True)
        self._write_conf()
        self._start_munge()
        env = self.env
        subprocess.run(["slurmctld", "-f", str(self.conf)], check=True, env=env)
        subprocess.run(["slurmd", "-f", str(self.conf)], check=True, env=env)
        deadline = time.monotonic() + timeout
        state = ""
        while time.monotonic() < deadline:
            r = subprocess.run(["sinfo", "-h", "-N", "-o", "%t"], capture_output=True, text=True, env=env)
            state = r.stdout.strip()
            if r.returncode == 0 and state in ("idle", "mix", "alloc"):
                return self
            time.sleep(0.5)
        self.stop()
        raise RuntimeError(f"the Slurm node did not become idle in {timeout:.0f} s (state {state!r}); "
                           f"logs in {self.root}")

    def stop(self) -> None:
        """Cancels what is left, then stops slurmd, slurmctld and munged (by their pid files)."""
        subprocess.run(["scancel", "--full", "--user=root"], env=self.env, capture_output=True)
        pidfiles = [self.root / "slurmd.pid", self.root / "slurmctld.pid"]
        if self._munge_note.exists():
            pidfiles.append(self.munge_dir / "munged.pid")
        for path in pidfiles:
            try:
                pid = int(path.read_text().strip())
            except (OSError, ValueError):
                continue
            try:
                os.kill(pid, 15)
            except ProcessLookupError:
                continue
            for _ in range(50):
                try:
                    os.kill(pid, 0)
                except ProcessLookupError:
                    break
                time.sleep(0.1)
        if self._munge_note.exists():
            shutil.rmtree(self.munge_dir, ignore_errors=True)
            self._munge_note.unlink()

    def run(self, *cmd: str) -> str:
        """A Slurm command's output (``squeue``, ``scontrol``, ...)."""
        return subprocess.run(list(cmd), capture_output=True, text=True, env=self.env).stdout

    def __enter__(self) -> "SlurmCluster":
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()


def main(argv: list[str]) -> None:
    if len(argv) != 2 or argv[0] not in ("up", "down"):
        sys.exit("usage: python -m tests.scaleout.slurm_cluster up|down DIR")
    cluster = SlurmCluster(Path(argv[1]))
    if argv[0] == "up":
        t0 = time.monotonic()
        cluster.start()
        print(f"Slurm up in {time.monotonic() - t0:.1f} s: . {cluster.root / 'env.sh'} && sinfo")
        print(cluster.run("sinfo"), end="")
    else:
        cluster.stop()


if __name__ == "__main__":
    main(sys.argv[1:])
