"""The local executor: jobs are worker processes on this machine, a few at a time.

Each job runs in its own session (process group), so a restart of the daemon does not kill it
and a cancel or time limit stops the worker together with anything it started. A job is known
by "pid:start-time"; the start time (from /proc) tells a live worker from a recycled pid after
the daemon restarts and can no longer wait() for it.
"""

from __future__ import annotations

import contextlib
import logging
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import dlcwatch
from dlcwatch.transport.job_files import SharedFiles
from dlcwatch.executors.base import ExecutorError, JobStatus, Outcome, Submission
from dlcwatch.jobs.spec import EXIT_ATTEMPT_FAILED, EXIT_BAD_INPUT, EXIT_OK, read_result
from dlcwatch.store import Job

log = logging.getLogger("dlcwatch.executors.local")

KILL_GRACE_S = 10.0


class LocalExecutor:
    name = "local"
    poll_interval_s = 0.0  # asking /proc costs nothing
    files = SharedFiles()  # jobs run here: they see our paths
    unreachable = ""

    def next_resources(self, outcome: Outcome, resources: dict) -> dict | None:
        return resources  # one machine: a retry gets the same again

    def __init__(self, settings, *, clock=time.time):
        self.max_parallel = settings.max_parallel
        self.python = settings.python or sys.executable
        self.time_limit_s = settings.time_limit_s
        self.clock = clock
        self._children: dict[str, subprocess.Popen] = {}
        self._killed: dict[str, Outcome] = {}

    def reconfigure(self, config) -> None:
        """Take new limits from a reloaded config; running jobs are not touched."""
        settings = config.executor.local
        self.max_parallel = settings.max_parallel
        self.python = settings.python or sys.executable
        self.time_limit_s = settings.time_limit_s

    def slots(self, active_jobs: int) -> int:
        return max(0, self.max_parallel - active_jobs)

    def adopt(self, jobs: list[Job]) -> dict[int, str]:
        """Find workers started just before the daemon stopped by their command line, which names
        the job's spec; return their ids (pid:start-time) by job id."""
        wanted = {job.spec_path: job.id for job in jobs if job.spec_path}
        found = {}
        for pid, argv in _worker_processes():
            if argv[-1] in wanted:
                found[wanted[argv[-1]]] = f"{pid}:{_start_time(pid)}"
        return found

    def choose_resources(self, resources: dict) -> dict:
        return resources

    def max_array_tasks(self) -> int:
        return 1  # each job is its own process group already; an array would add nothing

    def submit_array(self, submission: Submission, count: int) -> list[str]:
        raise ExecutorError("the local executor runs no job arrays; submit jobs one by one")

    def submit(self, submission: Submission) -> str:
        submission.log_path.parent.mkdir(parents=True, exist_ok=True)
        environment = dict(os.environ, PYTHONUNBUFFERED="1")
        # The worker runs the same dlcwatch code as the daemon, even in a separate DeepLabCut env.
        package_parent = str(Path(dlcwatch.__file__).resolve().parents[1])
        environment["PYTHONPATH"] = os.pathsep.join(filter(None, [package_parent, environment.get("PYTHONPATH")]))
        argv = [self.python, "-m", "dlcwatch.worker", str(submission.spec_path)]
        try:
            with open(submission.log_path, "ab") as log_file:
                child = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=log_file, stderr=subprocess.STDOUT,
                                         cwd=submission.work_dir, env=environment, start_new_session=True)
        except OSError as error:
            raise ExecutorError(f"cannot start the worker with {self.python}: {error}") from error
        job_key = f"{child.pid}:{_start_time(child.pid)}"
        self._children[job_key] = child
        return job_key

    def poll(self, jobs: list[Job]) -> dict[int, JobStatus]:
        statuses = {}
        for job in jobs:
            statuses[job.id] = self._status(job)
        return statuses

    def _status(self, job: Job) -> JobStatus:
        key = job.executor_job_id or ""
        child = self._children.get(key)
        if child is not None:
            code = child.poll()
            alive = code is None
        else:
            code, alive = None, _is_alive(key)
        if alive:
            started = job.started or job.created
            if self.time_limit_s and self.clock() - started > self.time_limit_s:
                self._kill(key, Outcome.TIMEOUT)
                return JobStatus(Outcome.RUNNING, "past its time limit; stopping it")
            return JobStatus(Outcome.RUNNING)
        self._children.pop(key, None)
        killed = self._killed.pop(key, None)
        if killed is not None:
            why = f"past its time limit of {self.time_limit_s:.0f} s" if killed is Outcome.TIMEOUT else "cancelled"
            return JobStatus(killed, why, code)
        if code is None:
            # Not our child (the daemon restarted): the worker's result file holds its exit code.
            result = read_result(job.result_path) or {}
            code = result.get("exit_code") if result.get("finished") else None
            if code is None:
                return JobStatus(Outcome.LOST, "the worker process ended without writing its result")
        if code in (EXIT_OK, EXIT_BAD_INPUT, EXIT_ATTEMPT_FAILED):
            return JobStatus(Outcome.COMPLETED if code == EXIT_OK else Outcome.FAILED, f"exit code {code}", code)
        if code < 0:
            name = signal.Signals(-code).name if -code in signal.valid_signals() else str(-code)
            hint = " (the kernel's out-of-memory killer sends this)" if -code == signal.SIGKILL else ""
            return JobStatus(Outcome.FAILED, f"killed by {name}{hint}", code)
        return JobStatus(Outcome.FAILED, f"exit code {code}", code)

    def cancel(self, job: Job) -> None:
        self._kill(job.executor_job_id or "", Outcome.CANCELLED)

    def _kill(self, key: str, why: Outcome) -> None:
        if key in self._killed:
            return
        self._killed[key] = why
        pid = _pid(key)
        if pid is None or not (key in self._children or _is_alive(key)):
            return
        try:
            os.killpg(pid, signal.SIGTERM)
        except ProcessLookupError:
            return
        except PermissionError as error:
            raise ExecutorError(f"cannot stop job {key}: {error}") from error
        deadline = time.monotonic() + KILL_GRACE_S
        while time.monotonic() < deadline and _is_alive(key) and not self._reaped(key):
            time.sleep(0.1)
        if _is_alive(key) and not self._reaped(key):
            with contextlib.suppress(ProcessLookupError):
                os.killpg(pid, signal.SIGKILL)

    def _reaped(self, key: str) -> bool:
        child = self._children.get(key)
        return child is not None and child.poll() is not None

    def close(self) -> None:
        self._children.clear()


def _pid(key: str) -> int | None:
    try:
        return int(key.split(":", 1)[0])
    except ValueError:
        return None


def _worker_processes():
    """Yield (pid, argv) of every process running `… -m dlcwatch.worker SPEC` on this machine."""
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            argv = (entry / "cmdline").read_bytes().decode(errors="replace").split("\0")[:-1]
        except OSError:
            continue  # ended meanwhile, or not ours to read
        if len(argv) >= 4 and argv[-3:-1] == ["-m", "dlcwatch.worker"]:
            yield int(entry.name), argv


def _proc_stat(pid: int) -> list[str] | None:
    """Return the fields of /proc/PID/stat after the command name (state first), None if gone."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    # The command name may contain spaces and parentheses: split after the last ')'.
    return stat.rsplit(")", 1)[1].split()


def _start_time(pid: int) -> str:
    """Return the process start time from /proc (clock ticks since boot), '' if unknown."""
    fields = _proc_stat(pid)
    return fields[19] if fields else ""


def _is_alive(key: str) -> bool:
    pid = _pid(key)
    if pid is None:
        return False
    expected = key.split(":", 1)[1] if ":" in key else ""
    fields = _proc_stat(pid)
    if fields is None or fields[0] == "Z":
        return False
    return not expected or fields[19] == expected
