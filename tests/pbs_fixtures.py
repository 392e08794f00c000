"""A stand-in PBS server for tests (tests/pbs_standin.py), as pytest fixtures and helpers.

NOT A REAL PBS: no PBS server can be installed here (Debian 12 packages none, and nothing may be
downloaded), so the PBS tests run against a stand-in that replays what OpenPBS documents and prints
(tests/pbs_recorded/README.md) and really runs the job scripts. What passes here has not been
shown to work against a real PBS server.

A test module takes the fixtures by naming this module as a plugin (it is not a conftest):

    pytest_plugins = ["pbs_fixtures"]

Each test gets its own server (a folder of commands, qsub qstat qdel qselect, and a server process
that runs the jobs), stopped at its end with its jobs. Its commands are found through `server.env`
(PATH) or `server.bin` (executor.pbs.commands_dir), so nothing here touches os.environ. Jobs start
with a clean environment, like PBS's: `importable_setup()` gives the setup line that makes this
worktree's dlcwatch importable in a job.

PYTEST_DONT_REWRITE: test modules import helpers from here before pytest takes it as a plugin.
"""

from __future__ import annotations

import json
import os
import shlex
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import pytest

import dlcwatch
from cluster_fixtures import TestScheduler, section_settings
from dlcwatch.config import Node
from dlcwatch.executors.pbs.schema import PBS_SECTION

STANDIN = Path(__file__).with_name("pbs_standin.py")
COMMANDS = ("qsub", "qstat", "qdel", "qselect")


@dataclass
class StandinServer(TestScheduler):
    """A running stand-in PBS server: its spool folder (prefix), its settings, its commands' folder."""

    NAME = "PBS stand-in"
    process: subprocess.Popen | None = None

    @property
    def bin(self) -> Path:
        return self.prefix / "bin"

    @property
    def env(self) -> dict:
        return {**os.environ, "PATH": f"{self.bin}:{os.environ['PATH']}"}

    def start(self) -> None:
        self.bin.mkdir(parents=True, exist_ok=True)
        self.configure()
        for command in COMMANDS:
            path = self.bin / command
            path.write_text(f"#!{sys.executable}\nimport sys\nsys.path.insert(0, {str(STANDIN.parent)!r})\n"
                            f"import pbs_standin\nsys.exit(pbs_standin.main({command!r}, {str(self.prefix)!r}, "
                            "sys.argv[1:]))\n")
            path.chmod(0o755)
        log = open(self.prefix / "server.log", "ab")
        self.process = subprocess.Popen([sys.executable, str(STANDIN), "serve", str(self.prefix)], stdout=log,
                                        stderr=log, stdin=subprocess.DEVNULL)
        log.close()

    def configure(self, **settings) -> None:
        """Change the server's settings (history, ncpus, ngpus, max_queued, …; pbs_standin.DEFAULT_SERVER)."""
        self.settings.update(settings)
        (self.prefix / "server.json").write_text(json.dumps(self.settings))

    def stop(self) -> None:
        if self.process is not None:
            self.process.terminate()  # kills its running jobs' process groups first
            self.process.wait(timeout=30)

    def set_down(self, down: bool) -> None:
        """The server stops answering (every command: "cannot connect to server"), or answers again."""
        flag = self.prefix / "down"
        flag.touch() if down else flag.unlink(missing_ok=True)

    def fail_node(self) -> None:
        """The node under every running job fails: they die and go back to the queue (node_fail_requeue)."""
        subprocess.run([sys.executable, str(STANDIN), "node-fail", str(self.prefix)], check=True, timeout=30)

    def jobs(self, *ids: str, history: bool = True) -> dict:
        """qstat -f -F json -t [-x] ids, parsed: the jobs by id."""
        output = self.command("qstat", "-f", "-F", "json", "-t", *(["-x"] if history else []), *ids, check=False)
        return json.loads(output).get("Jobs", {})


@pytest.fixture
def pbs_server(tmp_path_factory):
    """A stand-in PBS server for one test: 8 CPUs, 2 GPUs, job history kept, max_array_size 100."""
    server = StandinServer(tmp_path_factory.mktemp("pbs"), {"ncpus": 8, "ngpus": 2, "history": True,
                                                            "max_array_size": 100, "queues": ["workq", "cpuq"]})
    server.start()
    try:
        yield server
    finally:
        server.stop()


def importable_setup() -> str:
    """Return the job script line that makes this worktree's dlcwatch importable in a job."""
    return f"export PYTHONPATH={shlex.quote(str(Path(dlcwatch.__file__).resolve().parent.parent))}"


def pbs_settings(**values) -> Node:
    """Return executor.pbs settings: the schema's defaults, then values (a dict for a sub-section
    replaces only the keys it names)."""
    return section_settings(PBS_SECTION, "pbs", **values)


def wait_state(server: StandinServer, pbs_id: str, states: str, timeout: float = 30) -> dict:
    """Wait until qstat shows a job in one of states (letters); return its attributes."""
    deadline = time.monotonic() + timeout
    while True:
        attributes = server.jobs(pbs_id).get(pbs_id, {})
        if attributes.get("job_state", "") in states:
            return attributes
        if time.monotonic() > deadline:
            raise AssertionError(f"{pbs_id} did not reach {states} in {timeout} s: {attributes}")
        time.sleep(0.2)
