"""A single-node Slurm on this machine, from Debian's packages, for the tests and by hand.

    python -m tests.scaleout.slurm_cluster up DIR     # installs slurm-wlm + munge if absent (root), starts
    python -m tests.scaleout.slurm_cluster up --accounting DIR   # and MariaDB + slurmdbd (sacct works)
    . DIR/env.sh && sinfo                             # SLURM_CONF for the commands
    python -m tests.scaleout.slurm_cluster down DIR

slurmctld and slurmd both run on this host as root, with their state, spool, logs and pid files
under DIR. What a one-host cluster needs besides the defaults: process tracking through /proc
(``proctrack/linuxproc``: no cgroup setup), no task plugin, no mail. Without accounting ``sacct``
fails, which is part of what the tests check; with it, a MariaDB server (its data directory under
DIR, on 127.0.0.1 only) stores slurmdbd's records. munged runs as the munge user with its socket in
a folder of its own under /tmp (munge cannot reach into a private DIR), so a system munge (if any)
is left alone.
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
ACCOUNTING_PACKAGES = ("mariadb-server", "slurmdbd")
PARTITION = "debug"
# Ports of this cluster's daemons (slurmctld, slurmd, slurmdbd, MariaDB), away from the defaults
# so that a system Slurm or database on the host is left alone.
CTLD_PORT, SLURMD_PORT, DBD_PORT, DB_PORT = 16817, 16818, 16819, 16820
DB_USER, DB_PASS = "slurm", "sft-sweep-tests"


def _which_all(*names: str) -> bool:
    return all(shutil.which(n) or os.path.exists(f"/usr/sbin/{n}") for n in names)


def ensure_installed(accounting: bool = False) -> None:
    """apt-get installs Slurm and munge (and MariaDB + slurmdbd for accounting) when their
    programs are missing (needs root)."""
    packages = list(PACKAGES) if not _which_all("slurmctld", "slurmd", "munged", "sbatch") else []
    if accounting and not _which_all("slurmdbd", "mariadbd", "mariadb-install-db"):
        packages += ACCOUNTING_PACKAGES
    if not packages:
        return
    if os.geteuid() != 0:
        raise RuntimeError(f"installing {' '.join(packages)} needs root: apt-get install {' '.join(packages)}")
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    subprocess.run(["apt-get", "update", "-qq"], check=True, env=env, stdout=subprocess.DEVNULL)
    subprocess.run(["apt-get", "install", "-y", "-qq", *packages], check=True, env=env, stdout=subprocess.DEVNULL)


def _memory_mb() -> int:
    with open("/proc/meminfo") as f:
        for line in f:
            if line.startswith("MemTotal:"):
                return int(line.split()[1]) // 1024 - 512  # leave the system a little
    return 1024


class SlurmCluster:
    def __init__(self, root: Path, cpus: int | None = None, accounting: bool = False) -> None:
        self.root = Path(root).resolve()
        self.accounting = accounting
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
            "SelectTypeParameters=CR_Core", "JobAcctGatherType=jobacct_gather/none", "JobCompType=jobcomp/none",
            *(["AccountingStorageType=accounting_storage/slurmdbd", f"AccountingStorageHost={self.host}",
               f"AccountingStoragePort={DBD_PORT}",
               # the munge socket for slurmdbd connections (slurm.conf's AuthInfo covers the others)
               f"AccountingStoragePass={self.munge_socket}"] if self.accounting
              else ["AccountingStorageType=accounting_storage/none"]),
            # a task past its limit is killed within seconds (the tests wait for it)
            "KillWait=5", "MinJobAge=3600", f"SlurmctldPort={CTLD_PORT}", f"SlurmdPort={SLURMD_PORT}",
            f"SlurmctldPidFile={r}/slurmctld.pid", f"SlurmdPidFile={r}/slurmd.pid",
            f"SlurmdSpoolDir={r}/spool", f"StateSaveLocation={r}/state",
            f"SlurmctldLogFile={r}/slurmctld.log", f"SlurmdLogFile={r}/slurmd.log",
            f"NodeName={self.host} CPUs={self.cpus} RealMemory={_memory_mb()} State=UNKNOWN",
            f"PartitionName={PARTITION} Nodes=ALL Default=YES MaxTime=INFINITE State=UP",
        ]
        self.conf.write_text("\n".join(lines) + "\n")
        (r / "env.sh").write_text(f"export SLURM_CONF={self.conf}\n")
        if self.accounting:  # slurmdbd reads slurmdbd.conf beside slurm.conf; it must be private
            dbd = r / "slurmdbd.conf"
            dbd.write_text("\n".join([
                "AuthType=auth/munge", f"AuthInfo=socket={self.munge_socket}", f"DbdHost={self.host}",
                f"DbdPort={DBD_PORT}", "SlurmUser=root", f"PidFile={r}/slurmdbd.pid", f"LogFile={r}/slurmdbd.log",
                "StorageType=accounting_storage/mysql", "StorageHost=127.0.0.1", f"StoragePort={DB_PORT}",
                f"StorageUser={DB_USER}", f"StoragePass={DB_PASS}", "StorageLoc=slurm_acct_db",
            ]) + "\n")
            dbd.chmod(0o600)

    def _start_database(self, deadline: float) -> None:
        """A MariaDB server of this cluster's own (data under DIR/mysql, TCP on 127.0.0.1), with the
        user slurmdbd logs in as."""
        data, sock = self.root / "mysql", self.root / "mysql.sock"
        if not (data / "mysql").is_dir():
            subprocess.run(["mariadb-install-db", "--user=root", f"--datadir={data}", "--skip-test-db",
                            "--auth-root-authentication-method=socket"], check=True, capture_output=True)
        subprocess.Popen(["mariadbd", "--no-defaults", "--user=root", f"--datadir={data}", f"--socket={sock}",
                          f"--pid-file={self.root}/mariadb.pid", f"--log-error={self.root}/mariadb.log",
                          "--bind-address=127.0.0.1", f"--port={DB_PORT}", "--innodb-buffer-pool-size=32M"],
                         stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
        sql = (f"CREATE USER IF NOT EXISTS '{DB_USER}'@'127.0.0.1' IDENTIFIED BY '{DB_PASS}'; "
               f"GRANT ALL ON slurm_acct_db.* TO '{DB_USER}'@'127.0.0.1';")
        while True:
            r = subprocess.run(["mariadb", "--no-defaults", f"--socket={sock}", "-uroot", "-e", sql],
                               capture_output=True, text=True)
            if r.returncode == 0:
                return
            if time.monotonic() > deadline:
                raise RuntimeError(f"MariaDB did not start: {r.stderr.strip()} (log {self.root}/mariadb.log)")
            time.sleep(0.3)

    def _start_slurmdbd(self, deadline: float) -> None:
        subprocess.run(["slurmdbd"], check=True, env=self.env)
        while True:  # the cluster must be known to slurmdbd before slurmctld registers with it
            r = subprocess.run(["sacctmgr", "-i", "add", "cluster", "sftsweep"], capture_output=True, text=True,
                               env=self.env)
            if r.returncode == 0 or "already exists" in r.stdout + r.stderr:
                return
            if time.monotonic() > deadline:
                raise RuntimeError(f"slurmdbd did not answer: {r.stderr.strip()} (log {self.root}/slurmdbd.log)")
            time.sleep(0.3)

    def _start_munge(self) -> None:
        d = self.munge_dir
        key = Path("/etc/munge/munge.key")
        if not key.exists():
            subprocess.run(["runuser", "-u", "munge", "--", "mungekey", "--create"], check=True)
        subprocess.run(["runuser", "-u", "munge", "--", "munged", f"--socket={self.munge_socket}",
                        f"--pid-file={d}/munged.pid", f"--log-file={d}/munged.log", f"--seed-file={d}/seed",
                        "--force"], check=True)

    def start(self, timeout: float = 60) -> "SlurmCluster":
        ensure_installed(self.accounting)
        self.root.mkdir(parents=True, exist_ok=True)
        for sub in ("state", "spool"):
            (self.root / sub).mkdir(parents=True, exist_ok=True)
        self._write_conf()
        self._start_munge()
        env = self.env
        if self.accounting:  # each step has the whole timeout: a busy machine builds the database slowly
            try:
                self._start_database(time.monotonic() + timeout)
                self._start_slurmdbd(time.monotonic() + timeout)
            except BaseException:
                self.stop()
                raise
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
        """Cancels what is left, then stops slurmd, slurmctld, slurmdbd, MariaDB and munged (by their
        pid files)."""
        subprocess.run(["scancel", "--full", "--user=root"], env=self.env, capture_output=True)
        pidfiles = [self.root / f for f in ("slurmd.pid", "slurmctld.pid", "slurmdbd.pid", "mariadb.pid")]
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
            for _ in range(100):
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
    accounting = "--accounting" in argv
    argv = [a for a in argv if a != "--accounting"]
    if len(argv) != 2 or argv[0] not in ("up", "down"):
        sys.exit("usage: python -m tests.scaleout.slurm_cluster up [--accounting] DIR | down DIR")
    cluster = SlurmCluster(Path(argv[1]), accounting=accounting)
    if argv[0] == "up":
        t0 = time.monotonic()
        cluster.start()
        print(f"Slurm up in {time.monotonic() - t0:.1f} s: . {cluster.root / 'env.sh'} && sinfo")
        print(cluster.run("sinfo"), end="")
    else:
        cluster.stop()


if __name__ == "__main__":
    main(sys.argv[1:])
