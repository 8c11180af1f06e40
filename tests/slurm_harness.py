"""A one-node SLURM cluster on the test machine, for tests that submit through ``sbatch``.

The cluster is real: ``munged``, ``slurmctld`` and ``slurmd`` from the distribution's
packages, one node with this machine's CPUs, about 80 % of its memory and one fake GPU
(a GRES ``gpu`` backed by ``/dev/null``, so a job that asks for a GPU is scheduled and
sees ``CUDA_VISIBLE_DEVICES=0`` while the code inside it falls back to the CPU).
Accounting is off, so clients read job states with ``squeue`` (``MinJobAge`` keeps
finished jobs visible for 10 minutes).

The configuration is written to ``/etc/slurm`` (the jobs' own ``srun`` calls, made by
Snakemake's jobstep plugin, drop ``SLURM_CONF`` from their environment, so only the
default location reaches them); files already there are backed up and put back on stop.
State, spool, logs and pid files live in a private directory. Only the daemons this
module started are stopped, by the pid files it asked them to write. A cluster that
already answers on this machine (e.g. one started by a developer's helper script) is
reused and left running.

Use :func:`slurm_cluster` as a session-scoped pytest fixture, or :func:`local_cluster`
as a context manager.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest

PACKAGES = ("slurmctld", "slurmd", "slurm-client", "munge")
BINARIES = ("slurmctld", "slurmd", "sbatch", "squeue", "sinfo", "scancel", "munged", "munge")
MUNGE_PIDFILE = Path("/run/munge/munged.pid")
CONF_DIR = Path("/etc/slurm")
CONF_FILES = ("slurm.conf", "gres.conf")
BACKUP_SUFFIX = ".modalmerge-backup"
# Ports away from SLURM's defaults (6817/6818), so that a private cluster never fights a
# system one for its sockets.
CTLD_PORT = 16817
SLURMD_PORT = 16818


class ClusterUnavailable(RuntimeError):
    """This machine cannot run a local SLURM cluster (the message says why)."""


@dataclass
class SlurmCluster:
    """A running one-node cluster and how to talk to it.

    Attributes
    ----------
    node : str
        The node's name (``hostname -s``).
    partition : str
        The default partition's name.
    env : dict of str to str
        Environment for clients (``os.environ`` without ``SLURM_CONF``, so that they
        read ``/etc/slurm``). Pass it to every ``sbatch``/``squeue``/``snakemake``.
    started_here : bool
        Whether this harness started the daemons (and so stops them).
    state_dir : Path or None
        Spool, state, logs and pid files of a cluster started here.
    """

    node: str
    partition: str
    env: dict[str, str]
    started_here: bool
    state_dir: Path | None = None
    _pidfiles: list[Path] = field(default_factory=list)

    def run(self, *args: str, check: bool = True, timeout: float = 30) -> str:
        """Run a SLURM client command against this cluster and return its stdout.

        Parameters
        ----------
        *args : str
            The command line, e.g. ``("squeue", "-h", "-o", "%i")``.
        check : bool
            Raise :class:`subprocess.CalledProcessError` on a non-zero exit.
        timeout : float
            Seconds before the command is abandoned.
        """
        result = subprocess.run(
            args, env=self.env, capture_output=True, text=True, check=check, timeout=timeout
        )
        return result.stdout

    def jobs(self, name: str | None = None) -> list[dict[str, str]]:
        """Jobs the controller still remembers (running, pending and recently finished).

        Parameters
        ----------
        name : str, optional
            Only jobs with this job name (the Snakemake SLURM plugin names every job
            of one run by that run's id).

        Returns
        -------
        list of dict
            One dict per job with keys ``id``, ``name``, ``state`` and ``comment``
            (the plugin writes the rule name and wildcards into the comment).
        """
        cmd = ["squeue", "--states=all", "--noheader", "--format=%i|%j|%T|%k"]
        if name:
            cmd += ["--name", name]
        rows = []
        for line in self.run(*cmd).splitlines():
            job_id, job_name, state, comment = line.split("|", 3)
            rows.append({"id": job_id, "name": job_name, "state": state, "comment": comment})
        return rows


def _is_root() -> bool:
    return hasattr(os, "geteuid") and os.geteuid() == 0


def missing_requirement() -> str | None:
    """Why a local cluster cannot be started here, or ``None`` when it can.

    Returns
    -------
    str or None
        A sentence naming the missing piece (root, apt, Linux).
    """
    if not Path("/proc").is_dir() or not hasattr(os, "geteuid"):
        return "a local SLURM cluster needs Linux"
    if all(shutil.which(b) for b in BINARIES):
        return None if _is_root() else "starting SLURM daemons needs root"
    if not _is_root():
        return "SLURM is not installed and installing it (apt-get) needs root"
    if not shutil.which("apt-get"):
        return "SLURM is not installed and apt-get is not available to install it"
    return None


def install_packages() -> None:
    """Install SLURM and munge with apt-get when any of their programs is missing.

    Raises
    ------
    ClusterUnavailable
        When apt-get fails (no network, no root).
    """
    if all(shutil.which(b) for b in BINARIES):
        return
    env = dict(os.environ, DEBIAN_FRONTEND="noninteractive")
    for cmd in (["apt-get", "update", "-qq"], ["apt-get", "install", "-y", "-qq", *PACKAGES]):
        result = subprocess.run(cmd, env=env, capture_output=True, text=True)
        if result.returncode != 0:
            raise ClusterUnavailable(f"`{' '.join(cmd)}` failed: {result.stderr.strip()[-500:]}")


def _pid_alive(pid: int) -> bool:
    """Whether ``pid`` runs (a zombie, left by a daemon whose parent never reaps it, does not)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat.rsplit(")", 1)[1].split()[0] != "Z"


def _alive(pidfile: Path) -> bool:
    try:
        return _pid_alive(int(pidfile.read_text().split()[0]))
    except (OSError, ValueError):
        return False


def _munge_works() -> bool:
    try:
        cred = subprocess.run(["munge", "-n"], capture_output=True, timeout=5, check=True).stdout
        subprocess.run(["unmunge"], input=cred, capture_output=True, timeout=5, check=True)
    except (OSError, subprocess.SubprocessError):
        return False
    return True


def _node_state(env: dict[str, str], node: str) -> str | None:
    try:
        result = subprocess.run(
            ["sinfo", "--noheader", "--nodes", node, "--format=%t"],
            env=env,
            capture_output=True,
            text=True,
            timeout=10,
        )
    except (OSError, subprocess.SubprocessError):
        return None
    return result.stdout.strip() or None if result.returncode == 0 else None


def find_running_cluster() -> SlurmCluster | None:
    """A cluster that already answers with the system configuration, if any.

    Returns
    -------
    SlurmCluster or None
        The running cluster (``started_here=False``) when ``sinfo`` reports a usable
        node with a GPU GRES; ``None`` when no controller answers.

    Raises
    ------
    ClusterUnavailable
        When a controller answers but its node cannot run the tests (down, or no GPU).
    """
    if not shutil.which("sinfo"):
        return None
    env = dict(os.environ)
    env.pop("SLURM_CONF", None)
    try:
        result = subprocess.run(
            ["sinfo", "--noheader", "--format=%n|%t|%G|%P"],
            env=env,
            capture_output=True,
            text=True,
            timeout=10,
        )
    except (OSError, subprocess.SubprocessError):
        return None
    if result.returncode != 0 or not result.stdout.strip():
        return None
    node, state, gres, partition = result.stdout.splitlines()[0].split("|")
    if state.rstrip("*~#") not in {"idle", "mix", "alloc"}:
        raise ClusterUnavailable(f"a SLURM cluster is running here but node {node} is {state}")
    if "gpu" not in gres:
        raise ClusterUnavailable(
            f"a SLURM cluster is running here but node {node} offers no GPU GRES ({gres})"
        )
    return SlurmCluster(node=node, partition=partition.rstrip("*"), env=env, started_here=False)


def write_config(
    state_dir: Path, node: str, cpus: int, memory_mb: int, conf_dir: Path = CONF_DIR
) -> Path:
    """Write ``slurm.conf`` and ``gres.conf`` for a one-node cluster.

    Files already in ``conf_dir`` are first renamed to ``<name>.modalmerge-backup``
    (see :func:`restore_config`).

    Parameters
    ----------
    state_dir : Path
        Directory for spool, controller state, logs and pid files.
    node : str
        Node name (this machine's short host name).
    cpus : int
        CPUs the node offers.
    memory_mb : int
        Memory the node offers, in MiB.
    conf_dir : Path
        Where the configuration goes (``/etc/slurm``, where every client looks).

    Returns
    -------
    Path
        The ``slurm.conf`` path.
    """
    if cpus < 1 or memory_mb < 1:
        raise ValueError(f"a node needs at least 1 CPU and 1 MiB, got {cpus} and {memory_mb}")
    for sub in ("spool", "ctld", "log", "run"):
        (state_dir / sub).mkdir(parents=True, exist_ok=True)
    conf_dir.mkdir(parents=True, exist_ok=True)
    for name in CONF_FILES:
        path = conf_dir / name
        backup = conf_dir / (name + BACKUP_SUFFIX)
        if path.exists() and not backup.exists():
            path.rename(backup)
    conf = conf_dir / "slurm.conf"
    conf.write_text(
        f"""# Written by ModalMerge's tests/slurm_harness.py; the previous file (if any) is
# {conf.name}{BACKUP_SUFFIX} and comes back when the test session ends.
ClusterName=modalmerge-test
SlurmctldHost={node}
SlurmctldPort={CTLD_PORT}
SlurmdPort={SLURMD_PORT}
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
CryptoType=crypto/munge
MpiDefault=none
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
ReturnToService=2
SlurmctldPidFile={state_dir}/run/slurmctld.pid
SlurmdPidFile={state_dir}/run/slurmd.pid
SlurmdSpoolDir={state_dir}/spool
StateSaveLocation={state_dir}/ctld
SlurmctldLogFile={state_dir}/log/slurmctld.log
SlurmdLogFile={state_dir}/log/slurmd.log
SchedulerType=sched/backfill
SelectType=select/cons_tres
SelectTypeParameters=CR_Core_Memory
AccountingStorageType=accounting_storage/none
JobCompType=jobcomp/none
JobAcctGatherType=jobacct_gather/none
MinJobAge=600
KillWait=2
GresTypes=gpu
NodeName={node} CPUs={cpus} RealMemory={memory_mb} Gres=gpu:1 State=UNKNOWN
PartitionName=main Nodes=ALL Default=YES MaxTime=INFINITE State=UP
"""
    )
    (conf_dir / "gres.conf").write_text(f"NodeName={node} Name=gpu File=/dev/null\n")
    return conf


def restore_config(conf_dir: Path = CONF_DIR) -> None:
    """Remove the configuration :func:`write_config` wrote and put back what was there.

    Parameters
    ----------
    conf_dir : Path
        The directory given to :func:`write_config`.
    """
    for name in CONF_FILES:
        path = conf_dir / name
        backup = conf_dir / (name + BACKUP_SUFFIX)
        path.unlink(missing_ok=True)
        if backup.exists():
            backup.rename(path)


def _memory_mb() -> int:
    for line in Path("/proc/meminfo").read_text().splitlines():
        if line.startswith("MemTotal:"):
            return int(line.split()[1]) // 1024
    raise ClusterUnavailable("/proc/meminfo has no MemTotal line")


def _start_munge(state_dir: Path) -> list[Path]:
    """Start munged as the munge user unless a working one is running; its pid file if ours."""
    if _munge_works():
        return []
    key = Path("/etc/munge/munge.key")
    if not key.is_file() or key.stat().st_size == 0:
        subprocess.run(["mungekey", "--create", f"--keyfile={key}"], check=True)
        shutil.chown(key, "munge", "munge")
        key.chmod(0o600)
    MUNGE_PIDFILE.parent.mkdir(parents=True, exist_ok=True)
    shutil.chown(MUNGE_PIDFILE.parent, "munge", "munge")
    subprocess.run(["runuser", "-u", "munge", "--", "munged"], check=True, capture_output=True)
    (state_dir / "run" / "munged.ours").write_text(MUNGE_PIDFILE.read_text())
    for _ in range(50):
        if _munge_works():
            return [MUNGE_PIDFILE]
        time.sleep(0.1)
    raise ClusterUnavailable("munged started but does not answer")


def start_cluster(state_dir: Path, timeout: float = 60) -> SlurmCluster:
    """Install (if needed), configure and start a private one-node cluster.

    Parameters
    ----------
    state_dir : Path
        Fresh directory for the cluster's configuration, state and logs.
    timeout : float
        Seconds to wait for the node to become idle.

    Returns
    -------
    SlurmCluster
        The cluster (``started_here=True``); stop it with :func:`stop_cluster`.

    Raises
    ------
    ClusterUnavailable
        When a requirement is missing or the node does not come up.
    """
    reason = missing_requirement()
    if reason:
        raise ClusterUnavailable(reason)
    install_packages()
    node = socket.gethostname().split(".")[0]
    write_config(state_dir, node, os.cpu_count() or 1, _memory_mb() * 8 // 10)
    env = dict(os.environ)
    env.pop("SLURM_CONF", None)
    cluster = SlurmCluster(
        node=node, partition="main", env=env, started_here=True, state_dir=state_dir
    )
    cluster._pidfiles += _start_munge(state_dir)
    for daemon in ("slurmctld", "slurmd"):
        result = subprocess.run([daemon], env=env, capture_output=True, text=True)
        pidfile = state_dir / "run" / f"{daemon}.pid"
        cluster._pidfiles.append(pidfile)
        if result.returncode != 0:
            stop_cluster(cluster)
            raise ClusterUnavailable(f"{daemon} failed to start: {result.stderr.strip()}")
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        state = _node_state(env, node) or ""
        if state.rstrip("*~#") in {"idle", "mix", "alloc"}:
            return cluster
        if state.startswith(("down", "drain", "drng")):
            subprocess.run(
                ["scontrol", "update", f"nodename={node}", "state=resume"],
                env=env,
                capture_output=True,
            )
        time.sleep(0.5)
    stop_cluster(cluster)
    raise ClusterUnavailable(
        f"node {node} did not become idle in {timeout:.0f} s; see {state_dir}/log"
    )


def stop_cluster(cluster: SlurmCluster, timeout: float = 15) -> None:
    """Stop the daemons this harness started (by their pid files), leaving others alone.

    Parameters
    ----------
    cluster : SlurmCluster
        A cluster from :func:`start_cluster`; one that was found running is left running.
    timeout : float
        Seconds to wait for the daemons to exit before sending SIGKILL.
    """
    if not cluster.started_here:
        return
    # slurmd before slurmctld before munged: the reverse of the start order.
    pids = []
    for pidfile in reversed(cluster._pidfiles):
        if _alive(pidfile):
            pid = int(pidfile.read_text().split()[0])
            os.kill(pid, signal.SIGTERM)
            pids.append(pid)
    deadline = time.monotonic() + timeout
    for pid in pids:
        while time.monotonic() < deadline:
            if not _pid_alive(pid):
                break
            time.sleep(0.1)
        else:
            with contextlib.suppress(OSError):
                os.kill(pid, signal.SIGKILL)
    restore_config()


@contextlib.contextmanager
def local_cluster() -> Iterator[SlurmCluster]:
    """Reuse the cluster running here, or start a private one for the ``with`` block.

    Yields
    ------
    SlurmCluster
        A cluster with an idle node and one (fake) GPU.

    Raises
    ------
    ClusterUnavailable
        When neither is possible; the message says why.
    """
    running = find_running_cluster()
    if running is not None:
        yield running
        return
    state_dir = Path(tempfile.mkdtemp(prefix="modalmerge-slurm-"))
    cluster = start_cluster(state_dir)
    try:
        yield cluster
    finally:
        stop_cluster(cluster)
        # Keep the logs of a failed session; the state of a clean one is noise.
        shutil.rmtree(state_dir / "spool", ignore_errors=True)
        shutil.rmtree(state_dir / "ctld", ignore_errors=True)


@pytest.fixture(scope="session")
def slurm_cluster() -> Iterator[SlurmCluster]:
    """A one-node SLURM cluster for the test session; skips where none can run.

    Yields
    ------
    SlurmCluster
        See :func:`local_cluster`.
    """
    reason = missing_requirement()
    if reason:
        pytest.skip(f"no local SLURM cluster: {reason}")
    try:
        with local_cluster() as cluster:
            yield cluster
    except ClusterUnavailable as err:
        pytest.skip(f"no local SLURM cluster: {err}")
