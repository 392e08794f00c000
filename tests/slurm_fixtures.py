"""A real single-node SLURM for tests (tests/slurm_cluster.sh), as pytest fixtures and helpers.

A test module takes the fixtures by naming this module as a plugin (it is not a conftest):

    pytest_plugins = ["slurm_fixtures"]

The cluster starts once per session and stops at its end (its jobs are cancelled first: they
would outlive slurmd). Its commands run with SLURM_CONF set through `cluster.runner`, so nothing
here touches os.environ. Without root, or when apt-get cannot install SLURM, the tests skip.
What every cluster's tests share (stand-in workers, job rows, waiting) is in cluster_fixtures.

PYTEST_DONT_REWRITE: test modules import helpers from here before pytest takes it as a plugin,
so it raises its own errors rather than relying on pytest's rewritten asserts.
"""

from __future__ import annotations

import os
import tempfile
from dataclasses import dataclass
from pathlib import Path

import pytest

from cluster_fixtures import TestScheduler, free_ports, running, section_settings
from dlcwatch.config import Node
from dlcwatch.executors.slurm.schema import SLURM_SECTION


@dataclass
class Cluster(TestScheduler):
    """A running test cluster: its folder, the environment its commands need, and controls
    (start / stop the whole cluster, or ctld-stop / ctld-start the controller alone)."""

    SCRIPT = Path(__file__).with_name("slurm_cluster.sh")
    PREFIX_VARIABLE = "SLURM_PREFIX"
    NAME = "SLURM"

    @property
    def env(self) -> dict:
        return {**os.environ, "SLURM_CONF": str(self.prefix / "etc" / "slurm.conf")}

    def signal_controller(self, number: int) -> None:
        """Send a signal to this cluster's slurmctld (by its pid file), e.g. SIGSTOP to make it hang."""
        os.kill(int((self.prefix / "pid" / "slurmctld.pid").read_text()), number)

    def logs(self) -> str:
        return "\n".join(f"--- {path.name}\n{path.read_text(errors='replace')[-3000:]}"
                         for path in sorted((self.prefix / "log").glob("*.log")))


def unavailable() -> str:
    """Return why a test cluster cannot start here, or '' if it can (apt-get is tried at start)."""
    if os.geteuid() != 0:
        return "SLURM tests need root: they install SLURM and run slurmctld, slurmd and munged"
    if not Path("/usr/bin/apt-get").exists() and not Path("/usr/sbin/slurmctld").exists():
        return "SLURM tests need apt-get (Debian or Ubuntu) to install SLURM"
    return ""


def running_cluster(**settings: str):
    """Start a cluster in a fresh folder (right under the temporary folder: munged, which runs as
    the munge user, must be able to enter it); stop it and remove the folder afterwards."""
    why = unavailable()
    if why:
        pytest.skip(why)
    return running(Cluster(Path(tempfile.mkdtemp(prefix="dlcwatch-slurm-")),
                           {"SLURM_PORT": str(free_ports(4)), **settings}))


@pytest.fixture(scope="session")
def slurm_cluster():
    """A cluster without accounting: 8 CPUs declared (tiny jobs side by side), 2 fake GPUs."""
    with running_cluster(SLURM_CPUS="8", FAKE_GPUS="2", MESSAGE_TIMEOUT="3", MAX_ARRAY_SIZE="100") as cluster:
        yield cluster


@pytest.fixture(scope="session")
def slurm_accounting_cluster():
    """A cluster with accounting (MariaDB + slurmdbd) that enforces association limits and forgets
    ended jobs after 2 s (MinJobAge), so sacct is what still knows them."""
    with running_cluster(SLURM_CPUS="4", FAKE_GPUS="0", MESSAGE_TIMEOUT="3", WITH_ACCOUNTING="1", ENFORCE="limits",
                         MIN_JOB_AGE="2") as cluster:
        yield cluster


def slurm_settings(**values) -> Node:
    """Return executor.slurm settings: the schema's defaults, then values (a dict for a sub-section
    replaces only the keys it names)."""
    return section_settings(SLURM_SECTION, "slurm", **values)
