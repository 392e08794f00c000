"""A real single-node Grid Engine for tests (tests/sge_cluster.sh), as pytest fixtures and helpers.

A test module takes the fixtures by naming this module as a plugin (it is not a conftest):

    pytest_plugins = ["sge_fixtures"]

The cell starts once per session and stops at its end (qconf -kej takes its jobs with it). Its
commands find it through SGE_ROOT, SGE_CELL and the ports, set through `cell.runner`, so nothing
here touches os.environ. Without root, or when apt-get cannot install Grid Engine, the tests skip.

Grid Engine starts jobs with a clean environment, so a job finds this worktree's dlcwatch only
through the job script's setup lines: `importable_setup()` gives the line that exports PYTHONPATH.

PYTEST_DONT_REWRITE: test modules import helpers from here before pytest takes it as a plugin.
"""

from __future__ import annotations

import contextlib
import os
import shlex
import shutil
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path

import pytest

import dlcwatch
from dlcwatch.config import Node
from dlcwatch.executors.sge.schema import SGE_SECTION
from dlcwatch.run import CommandResult, run
from slurm_fixtures import _defaults, _free_ports

SCRIPT = Path(__file__).with_name("sge_cluster.sh")
EXIT_CANNOT_INSTALL = 3


@dataclass
class Cell:
    """A running Grid Engine cell: its folder, the environment its commands need, and controls."""

    prefix: Path
    settings: dict  # the sge_cluster.sh settings it was started with

    @property
    def env(self) -> dict:
        port = int(self.settings["SGE_QMASTER_PORT"])
        return {**os.environ, "SGE_ROOT": str(self.prefix / "root"), "SGE_CELL": "dlcwatch",
                "SGE_QMASTER_PORT": str(port), "SGE_EXECD_PORT": str(port + 1)}

    def runner(self, argv: list[str], timeout: float) -> CommandResult:
        """The executor's runner, pointed at this cell."""
        return run(argv, timeout, env=self.env)

    def command(self, *argv: str, check: bool = True) -> str:
        """Run a Grid Engine command (qstat, qdel, qconf…) for a test; return its stdout."""
        completed = subprocess.run(argv, capture_output=True, text=True, env=self.env, timeout=60)
        if check and completed.returncode != 0:
            raise AssertionError(f"{' '.join(argv)} failed: {completed.stderr}")
        return completed.stdout

    def control(self, action: str) -> None:
        completed = subprocess.run(["bash", str(SCRIPT), action], capture_output=True, text=True,
                                   env={**os.environ, **self.settings, "SGE_PREFIX": str(self.prefix)}, timeout=900)
        if completed.returncode == EXIT_CANNOT_INSTALL:
            pytest.skip(f"no Grid Engine for these tests: {completed.stderr.strip()}")
        if completed.returncode != 0:
            raise AssertionError(f"sge_cluster.sh {action} failed:\n{completed.stdout}\n{completed.stderr}")


@contextlib.contextmanager
def running_cell(**settings: str):
    """Start a cell in a fresh folder; stop it and remove the folder afterwards. Skip without root."""
    if os.geteuid() != 0:
        pytest.skip("Grid Engine tests need root: they install Grid Engine and run sge_qmaster and sge_execd")
    if not Path("/usr/bin/apt-get").exists() and not Path("/usr/sbin/sge_qmaster").exists():
        pytest.skip("Grid Engine tests need apt-get (Debian or Ubuntu) to install Grid Engine")
    folder = Path(tempfile.mkdtemp(prefix="dlcwatch-sge-"))
    cell = Cell(folder, {"SGE_QMASTER_PORT": str(_free_ports(2)), **settings})
    try:
        cell.control("start")
        try:
            yield cell
        finally:
            cell.control("stop")
    finally:
        shutil.rmtree(folder, ignore_errors=True)


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
    defaults = _defaults(SGE_SECTION)
    unknown = set(values) - set(defaults)
    if unknown:
        raise KeyError(f"not executor.sge options: {', '.join(sorted(unknown))}")
    for key, value in values.items():
        defaults[key] = Node({**defaults[key], **value}) if isinstance(value, dict) else value
    return defaults

