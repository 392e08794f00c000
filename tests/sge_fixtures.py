"""A real single-node Grid Engine for tests (tests/sge_cluster.sh), as pytest fixtures and helpers.

A test module takes the fixtures by naming this module as a plugin (it is not a conftest):

    pytest_plugins = ["sge_fixtures"]

The cell starts once per session and stops at its end (qconf -kej takes its jobs with it). Its
commands find it through SGE_ROOT, SGE_CELL and the ports, set through `cell.runner`, so nothing
here touches os.environ. Without root, or when apt-get cannot install Grid Engine, the tests skip.
What every cluster's tests share (stand-in workers, job rows, waiting) is in cluster_fixtures.

Grid Engine starts jobs with a clean environment, so a job finds this worktree's dlcwatch only
through the job script's setup lines: `importable_setup()` gives the line that exports PYTHONPATH.

PYTEST_DONT_REWRITE: test modules import helpers from here before pytest takes it as a plugin.
"""

from __future__ import annotations

import os
import shlex
import tempfile
from dataclasses import dataclass
from pathlib import Path

import pytest

import dlcwatch
from cluster_fixtures import TestScheduler, free_ports, running, section_settings
from dlcwatch.config import Node
from dlcwatch.executors.sge.schema import SGE_SECTION


@dataclass
class Cell(TestScheduler):
    """A running Grid Engine cell: its folder, the environment its commands need, and controls."""

    SCRIPT = Path(__file__).with_name("sge_cluster.sh")
    PREFIX_VARIABLE = "SGE_PREFIX"
    NAME = "Grid Engine"

    @property
    def env(self) -> dict:
        port = int(self.settings["SGE_QMASTER_PORT"])
        return {**os.environ, "SGE_ROOT": str(self.prefix / "root"), "SGE_CELL": "dlcwatch",
                "SGE_QMASTER_PORT": str(port), "SGE_EXECD_PORT": str(port + 1)}


def running_cell(**settings: str):
    """Start a cell in a fresh folder; stop it and remove the folder afterwards. Skip without root."""
    if os.geteuid() != 0:
        pytest.skip("Grid Engine tests need root: they install Grid Engine and run sge_qmaster and sge_execd")
    if not Path("/usr/bin/apt-get").exists() and not Path("/usr/sbin/sge_qmaster").exists():
        pytest.skip("Grid Engine tests need apt-get (Debian or Ubuntu) to install Grid Engine")
    return running(Cell(Path(tempfile.mkdtemp(prefix="dlcwatch-sge-")), {"SGE_QMASTER_PORT": str(free_ports(2)),
                                                                         **settings}))


@pytest.fixture(scope="session")
def sge_cell():
    """A cell with 8 slots (tiny jobs side by side on a 2-core box), 2 fake GPUs, max_aj_tasks 100."""
    with running_cell(SGE_SLOTS="8", FAKE_GPUS="2", MAX_ARRAY_SIZE="100") as cell:
        yield cell


def importable_setup() -> str:
    """Return the job script line that makes this worktree's dlcwatch importable in a job."""
    return f"export PYTHONPATH={shlex.quote(str(Path(dlcwatch.__file__).resolve().parent.parent))}"


def sge_settings(**values) -> Node:
    """Return executor.sge settings: the schema's defaults, then values (a dict for a sub-section
    replaces only the keys it names)."""
    return section_settings(SGE_SECTION, "sge", **values)
