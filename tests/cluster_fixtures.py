"""What the tests of every cluster executor share (SLURM, Grid Engine, PBS): a scheduler started for
the tests, settings from a schema section, stand-ins for the worker's python, job rows recorded as
the daemon records them, and waiting for things to happen.

Each scheduler's own fixtures module (slurm_fixtures, sge_fixtures, pbs_fixtures) starts its
scheduler and names its settings; test modules import the helpers from here.

PYTEST_DONT_REWRITE: test modules import helpers from here, so it raises its own errors rather than
relying on pytest's rewritten asserts.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import socket
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import pytest

from dlcwatch.config import Node, Section
from dlcwatch.executors.base import Outcome, Submission
from dlcwatch.jobs.spec import write_json_atomic
from dlcwatch.run import CommandResult, run
from dlcwatch.states import JobState, VideoState
from dlcwatch.store import Store

EXIT_CANNOT_INSTALL = 3  # a control script's exit code when the scheduler cannot be installed here: skip


@dataclass
class TestScheduler:
    """A scheduler started for the tests by a control script: its folder, the settings it was
    started with, and the environment its commands need (a subclass says which)."""

    __test__ = False  # a helper, not a test class

    prefix: Path
    settings: dict
    SCRIPT = Path()        # the control script (start, stop, …)
    PREFIX_VARIABLE = ""   # the variable that tells the control script its folder
    NAME = ""

    @property
    def env(self) -> dict:
        raise NotImplementedError

    def runner(self, argv: list[str], timeout: float) -> CommandResult:
        """The executor's runner, pointed at this scheduler."""
        return run(argv, timeout, env=self.env)

    def command(self, *argv: str, check: bool = True) -> str:
        """Run one of the scheduler's commands for a test; return its stdout."""
        completed = subprocess.run(argv, capture_output=True, text=True, env=self.env, timeout=60)
        if check and completed.returncode != 0:
            raise AssertionError(f"{' '.join(argv)} failed: {completed.stderr}")
        return completed.stdout

    def control(self, action: str) -> None:
        """Run the control script with an action (start, stop, …); skip when it cannot install the scheduler."""
        completed = subprocess.run(["bash", str(self.SCRIPT), action], capture_output=True, text=True,
                                   env={**os.environ, **self.settings, self.PREFIX_VARIABLE: str(self.prefix)},
                                   timeout=900)
        if completed.returncode == EXIT_CANNOT_INSTALL:
            pytest.skip(f"no {self.NAME} for these tests: {completed.stderr.strip()}")
        if completed.returncode != 0:
            raise AssertionError(f"{self.SCRIPT.name} {action} failed:\n{completed.stdout}\n{completed.stderr}")


def free_ports(count: int) -> int:
    """Return the first of count consecutive free TCP ports on 127.0.0.1."""
    for first in range(16817, 30000, 10):
        if all(_port_free(port) for port in range(first, first + count)):
            return first
    raise RuntimeError("no free ports for a test scheduler")


def _port_free(port: int) -> bool:
    with socket.socket() as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind(("127.0.0.1", port))
        except OSError:
            return False
        return True


@contextlib.contextmanager
def running(scheduler: TestScheduler):
    """Start a test scheduler in its folder; stop it and remove the folder afterwards."""
    try:
        scheduler.control("start")
        try:
            yield scheduler
        finally:
            scheduler.control("stop")
    finally:
        shutil.rmtree(scheduler.prefix, ignore_errors=True)


# ---------------------------------------------------------------------- settings

def section_settings(section: Section, kind: str, **values) -> Node:
    """Return executor.<kind> settings: section's defaults, then values (a dict for a sub-section
    replaces only the keys it names)."""
    defaults = _defaults(section)
    unknown = set(values) - set(defaults)
    if unknown:
        raise KeyError(f"not executor.{kind} options: {', '.join(sorted(unknown))}")
    for key, value in values.items():
        defaults[key] = Node({**defaults[key], **value}) if isinstance(value, dict) else value
    return defaults


def _defaults(section: Section) -> Node:
    return Node({key: _defaults(option) if isinstance(option, Section) else
                 list(option.default) if isinstance(option.default, list) else option.default
                 for key, option in section.options.items()})


# ---------------------------------------------------------------------- job scripts

GOLDEN = Path(__file__).with_name("golden")
# The job side every renderer's full example sets: an environment loaded, a container, a python.
FULL_JOB_SIDE = {"setup": ["module load cuda/12.1", "source ~/miniconda3/etc/profile.d/conda.sh", "conda activate dlc"],
                 "command_prefix": "apptainer exec --nv /images/deeplabcut.sif", "python": "python3"}


def script_submission(folder: str = "/scratch/dlcwatch/jobs/job12", spec: str = "spec.json", log: str = "worker.log",
                      **resources) -> Submission:
    """Return job 12 as a renderer sees it, in folder, with resources of its own (a retry's, the CPU fallback's)."""
    work = Path(folder)
    return Submission(12, work / spec, work / log, work, resources)


def matches_golden(script: str, name: str) -> bool:
    """Given a rendered script, return whether it is tests/golden/<name>; DLCWATCH_UPDATE_GOLDEN=1 rewrites it."""
    path = GOLDEN / name
    if os.environ.get("DLCWATCH_UPDATE_GOLDEN"):
        path.write_text(script)
    return script == path.read_text()


# ---------------------------------------------------------------------- stand-ins for the worker's python

def executable(path: Path, text: str) -> Path:
    path.write_text(text)
    path.chmod(0o755)
    return path


def fake_python(folder: Path) -> Path:
    """Write a stand-in for the worker's python: `fake -m dlcwatch.worker SPEC` prints the spec path,
    sleeps spec['sleep'] seconds, holds spec['hold_mb'] MB of memory meanwhile, writes the result
    file if spec['result'] is set, and exits with spec['exit']. For tests of the scheduler, where
    DeepLabCut would only cost time."""
    return executable(folder / "fake-python", f"""#!{sys.executable}
import json, os, sys, time
assert sys.argv[1:3] == ["-m", "dlcwatch.worker"], sys.argv
print("fake worker spec:", sys.argv[3], flush=True)
print("task:", os.environ.get("SLURM_ARRAY_TASK_ID"), "gpus:", os.environ.get("CUDA_VISIBLE_DEVICES"), flush=True)
spec = json.load(open(sys.argv[3]))
held = bytearray(spec.get("hold_mb", 0) * 1024 * 1024)
for offset in range(0, len(held), 4096):  # touch every page, so it counts as resident
    held[offset] = 1
time.sleep(spec.get("sleep", 0))
if spec.get("result"):
    with open(spec["result"], "w") as stream:
        json.dump({{"finished": time.time(), "exit_code": spec.get("exit", 0), "videos": {{}}}}, stream)
sys.exit(spec.get("exit", 0))
""")


def fake_worker_settings(folder: Path, **settings) -> dict:
    """Return settings for an executor whose jobs run fake_python: one CPU, no GPU, a quarter GB,
    five minutes; then settings."""
    return {"python": str(fake_python(folder)), "cpus": 1, "gpus": 0, "mem_gb": 0.25, "time_limit_min": 5,
            **settings}


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


def write_cluster_config(folder: Path, model, kind: str, videos_per_job: int = 2, **settings) -> Path:
    """Write a config (conftest.write_config) for a lab in folder whose jobs go to a cluster executor:
    one CPU, one GPU, half a GB and ten minutes per job, polled every second, the worker run by this
    Python; then settings for executor.<kind>."""
    from conftest import write_config  # conftest is pytest's: imported when a test uses this

    base = {"cpus": 1, "gpus": 1, "mem_gb": 0.5, "time_limit_min": 10, "poll_interval_s": 1.0,
            "python": sys.executable}
    return write_config(folder, model, watch={"settle_s": 0.2},
                        executor={"kind": kind, "videos_per_job": videos_per_job, kind: {**base, **settings}})


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


# ---------------------------------------------------------------------- jobs, as the daemon records them

def job_row(store: Store, folder: Path, executor: str, executor_job_id: str | None = None):
    """Record a job of one video for an executor (its name) as the daemon does; return it,
    SUBMITTED if given the executor's id for it."""
    video = store.add_video(str(folder / f"v{len(store.videos()) + 1}.mp4"), str(folder), "v.mp4", size=1,
                            mtime_ns=1)
    store.set_video_state(video.id, VideoState.QUEUED, "test")
    job = store.create_job(executor, [video.id])
    work = folder / f"job{job.id}"
    store.update_job(job.id, spec_path=str(work / "spec.json"), result_path=str(work / "result.json"),
                     log_path=str(work / "worker.log"))
    job = store.job(job.id)
    if executor_job_id:
        job = store.set_job_state(job.id, JobState.SUBMITTED, "test", executor_job_id=executor_job_id)
    return job


def submit_fake_job(store: Store, executor, folder: Path, **spec):
    """Submit a job whose spec holds `spec` (sleep, exit, hold_mb: for fake_python); return its Job row."""
    job = job_row(store, folder, executor.name)
    write_spec(Path(job.spec_path), **spec)
    executor_id = executor.submit(Submission(job.id, Path(job.spec_path), Path(job.log_path),
                                             Path(job.spec_path).parent, {}))
    return store.set_job_state(job.id, JobState.SUBMITTED, "test", executor_job_id=executor_id)


def many_jobs_and_two_unknown(store: Store, executor, folder: Path, count: int, unknown_ids: tuple[str, str]):
    """Submit count fake-worker jobs, every fifth exiting 75, and record two jobs under ids the
    scheduler never heard of (as after a reinstall), the first with its worker's final result
    written; return (the submitted jobs, that finished one, the vanished one)."""
    jobs = [submit_fake_job(store, executor, folder, exit=75 if index % 5 == 0 else 0) for index in range(count)]
    finished = job_row(store, folder, executor.name, unknown_ids[0])
    write_json_atomic(finished.result_path, {"finished": time.time(), "exit_code": 0, "videos": {}})
    vanished = job_row(store, folder, executor.name, unknown_ids[1])
    return jobs, finished, vanished


def every_fifth_failed(jobs, statuses) -> bool:
    """Given many_jobs_and_two_unknown's jobs and their statuses, return whether exactly every fifth
    failed and the rest completed."""
    failed = {job.id for job in jobs if statuses[job.id].outcome is Outcome.FAILED}
    return failed == {job.id for index, job in enumerate(jobs) if index % 5 == 0} and \
        all(statuses[job.id].outcome in (Outcome.COMPLETED, Outcome.FAILED) for job in jobs)


def start_timeout_job(executor, folder: Path):
    """Submit a job that sleeps ten minutes under an executor whose limit is one minute; return
    (executor, its Job row, when it was submitted): a module submits it first and checks it last,
    so the real minute overlaps its other tests."""
    job = submit_fake_job(Store(folder / "db"), executor, folder, sleep=600)
    return executor, job, time.monotonic()


def queue_videos(daemon, count: int) -> None:
    """Record count videos as queued, as intake would after probing them (no files are needed until a
    worker runs, and these workers only sleep)."""
    first = len(daemon.store.videos())
    for index in range(first, first + count):
        video = daemon.store.add_video(f"/lab/v{index}.mp4", "/lab", f"v{index}.mp4", size=1, mtime_ns=1)
        daemon.store.set_video_state(video.id, VideoState.QUEUED, "probed", frames=100 + index, fps=30.0)


# ---------------------------------------------------------------------- counting and waiting

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


def wait_ended(executor, job, timeout: float = 60):
    """Poll the executor about one job until it reports the job ended; return that status."""
    def ended():
        status = executor.poll([job]).get(job.id)
        return status if status and status.outcome.ended else None
    return wait_for(ended, timeout, f"job {job.id} ({executor.scheduler} {job.executor_job_id}) to end")


def tick_until(daemon, condition, timeout, what, now=time.time):
    """Run the daemon's loop tick by tick until condition() is true; return it."""
    def step():
        daemon.tick(now())
        return condition()
    return wait_for(step, timeout, what, interval=0.3)


def poll_until(daemon, condition, timeout, what, ahead_s: float = 0.0):
    """Let the daemon poll (ahead_s seconds in its future, past its poll interval) until condition() is true."""
    def step():
        daemon.poll(time.time() + ahead_s)
        return condition()
    return wait_for(step, timeout, what, interval=1.1)
