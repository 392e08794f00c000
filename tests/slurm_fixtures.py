"""A real single-node SLURM for tests (tests/slurm_cluster.sh), as pytest fixtures and helpers.

A test module takes the fixtures by naming this module as a plugin (it is not a conftest):

    pytest_plugins = ["slurm_fixtures"]

The cluster starts once per session and stops at its end (its jobs are cancelled first: they
would outlive slurmd). Its commands run with SLURM_CONF set through `cluster.runner`, so nothing
here touches os.environ. Without root, or when apt-get cannot install SLURM, the tests skip.

PYTEST_DONT_REWRITE: test modules import helpers from here before pytest takes it as a plugin,
so it raises its own errors rather than relying on pytest's rewritten asserts.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import pytest

from dlcwatch.config import Node, Section
from dlcwatch.run import CommandResult, run
from dlcwatch.executors.slurm.schema import SLURM_SECTION

SCRIPT = Path(__file__).with_name("slurm_cluster.sh")
EXIT_CANNOT_INSTALL = 3


@dataclass
class Cluster:
    """A running test cluster: its folder, the environment its commands need, and controls."""

    prefix: Path
    settings: dict  # the slurm_cluster.sh settings it was started with

    @property
    def env(self) -> dict:
        return {**os.environ, "SLURM_CONF": str(self.prefix / "etc" / "slurm.conf")}

    def runner(self, argv: list[str], timeout: float) -> CommandResult:
        """The executor's runner, pointed at this cluster."""
        return run(argv, timeout, env=self.env)

    def command(self, *argv: str, check: bool = True) -> str:
        """Run a SLURM command (scontrol, sacctmgr, squeue…) for a test; return its stdout."""
        completed = subprocess.run(argv, capture_output=True, text=True, env=self.env, timeout=60)
        if check and completed.returncode != 0:
            raise AssertionError(f"{' '.join(argv)} failed: {completed.stderr}")
        return completed.stdout

    def control(self, action: str) -> None:
        """start / stop the whole cluster, or ctld-stop / ctld-start the controller alone."""
        completed = subprocess.run(["bash", str(SCRIPT), action], capture_output=True, text=True,
                                   env={**os.environ, **self.settings, "SLURM_PREFIX": str(self.prefix)}, timeout=900)
        if completed.returncode == EXIT_CANNOT_INSTALL:
            pytest.skip(f"no SLURM for these tests: {completed.stderr.strip()}")
        if completed.returncode != 0:
            raise AssertionError(f"slurm_cluster.sh {action} failed:\n{completed.stdout}\n{completed.stderr}")

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


def start_cluster(folder: Path, **settings: str) -> Cluster:
    """Start a cluster in folder with slurm_cluster.sh settings (FAKE_GPUS=…, …); skip if impossible."""
    why = unavailable()
    if why:
        pytest.skip(why)
    settings = {"SLURM_PORT": str(_free_ports(4)), **settings}
    cluster = Cluster(folder, settings)
    cluster.control("start")
    return cluster


def _free_ports(count: int) -> int:
    """Return the first of count consecutive free TCP ports on 127.0.0.1."""
    for first in range(16817, 30000, 10):
        if all(_port_free(port) for port in range(first, first + count)):
            return first
    raise RuntimeError("no free ports for a test SLURM")


def _port_free(port: int) -> bool:
    with socket.socket() as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind(("127.0.0.1", port))
        except OSError:
            return False
        return True


@contextlib.contextmanager
def running_cluster(**settings: str):
    """Start a cluster in a fresh folder (right under the temporary folder: munged, which runs as
    the munge user, must be able to enter it); stop it and remove the folder afterwards."""
    folder = Path(tempfile.mkdtemp(prefix="dlcwatch-slurm-"))
    try:
        cluster = start_cluster(folder, **settings)
        try:
            yield cluster
        finally:
            cluster.control("stop")
    finally:
        shutil.rmtree(folder, ignore_errors=True)


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


# ---------------------------------------------------------------------- helpers for tests

def slurm_settings(**values) -> Node:
    """Return executor.slurm settings: the schema's defaults, then values (a dict for a sub-section
    replaces only the keys it names)."""
    defaults = _defaults(SLURM_SECTION)
    unknown = set(values) - set(defaults)
    if unknown:
        raise KeyError(f"not executor.slurm options: {', '.join(sorted(unknown))}")
    for key, value in values.items():
        defaults[key] = Node({**defaults[key], **value}) if isinstance(value, dict) else value
    return defaults


def _defaults(section: Section) -> Node:
    return Node({key: _defaults(option) if isinstance(option, Section) else
                 list(option.default) if isinstance(option.default, list) else option.default
                 for key, option in section.options.items()})


def fake_python(folder: Path) -> Path:
    """Write a stand-in for the worker's python: `fake -m dlcwatch.worker SPEC` prints the spec path,
    sleeps spec['sleep'] seconds, writes the result file if spec['result'] is set, and exits with
    spec['exit']. For tests of the scheduler, where DeepLabCut would only cost time."""
    path = folder / "fake-python"
    path.write_text(f"""#!{sys.executable}
import json, os, sys, time
assert sys.argv[1:3] == ["-m", "dlcwatch.worker"], sys.argv
print("fake worker spec:", sys.argv[3], flush=True)
print("task:", os.environ.get("SLURM_ARRAY_TASK_ID"), "gpus:", os.environ.get("CUDA_VISIBLE_DEVICES"), flush=True)
spec = json.load(open(sys.argv[3]))
time.sleep(spec.get("sleep", 0))
if spec.get("result"):
    with open(spec["result"], "w") as stream:
        json.dump({{"finished": time.time(), "exit_code": spec.get("exit", 0), "videos": {{}}}}, stream)
sys.exit(spec.get("exit", 0))
""")
    path.chmod(0o755)
    return path


def executable(path: Path, text: str) -> Path:
    path.write_text(text)
    path.chmod(0o755)
    return path


def sleeping_python(folder: Path) -> Path:
    """A stand-in for the worker's python that never finishes by itself (tasks stay in the queue)."""
    return executable(folder / "sleeping-python", "#!/bin/sh\nexec sleep 600\n")


def reporting_python(folder: Path, *, odd_ids_sleep: bool = False) -> Path:
    """A stand-in worker that reports the first video of its job analyzed (with the path it was
    given) and ends; with odd_ids_sleep, a job whose first video has an odd id sleeps instead."""
    return executable(folder / "reporting-python", f"""#!{sys.executable}
import json, os, sys, time
spec = json.load(open(sys.argv[3]))
video = spec["videos"][0]
if {odd_ids_sleep!r} and video["id"] % 2:
    time.sleep(600)
os.makedirs(os.path.dirname(spec["result"]), exist_ok=True)  # an array task's own folder is new
entry = {{"status": "ok", "frames": video["frames"], "seconds": 0.1, "scorer": "fake", "path": video["path"]}}
json.dump({{"finished": time.time(), "exit_code": 0, "videos": {{str(video["id"]): entry}}}}, open(spec["result"], "w"))
""")


def placeholder_model(folder: Path) -> Path:
    """A model.config that exists (the config check wants one) for tests whose workers are stand-ins."""
    model = folder / "model" / "config.yaml"
    model.parent.mkdir(parents=True, exist_ok=True)
    model.write_text("Task: none\n")
    return model


def write_spec(path: Path, **spec) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(spec))
    return path


class CountingRunner:
    """Wraps a runner and records every command it runs (argv lists), to count them."""

    def __init__(self, runner):
        self.runner = runner
        self.calls: list[list[str]] = []

    def __call__(self, argv, timeout):
        self.calls.append(list(argv))
        return self.runner(argv, timeout)

    def count(self, program: str) -> int:
        return sum(1 for argv in self.calls if argv[0] == program)


def wait_for(predicate, timeout: float, what: str, interval: float = 0.3):
    """Call predicate until it returns something true; return that. Fail after timeout seconds."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout:.0f} s waiting for {what}")
        time.sleep(interval)
