"""The interface every executor implements, and the outcomes it reports.

The daemon never asks an executor what happened to a video: it asks whether the job still
runs and, once it ended, how (an Outcome). The worker's result file says the rest.
"""

from __future__ import annotations

import enum
import signal
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Protocol

from dlcwatch.errors import ExecutorError
from dlcwatch.store import Job

if TYPE_CHECKING:
    from dlcwatch.transport.job_files import SharedFiles, StagedFiles


# In the spec and log paths of an array submission, each task puts its own index here.
ARRAY_TASK_ID = "${SLURM_ARRAY_TASK_ID}"


class Outcome(str, enum.Enum):
    PENDING = "pending"          # accepted, waiting for resources
    RUNNING = "running"
    COMPLETED = "completed"      # ended by itself; read the result file
    FAILED = "failed"            # ended with an error; read the result file
    TIMEOUT = "timeout"          # killed for running past its time limit
    OUT_OF_MEMORY = "out_of_memory"
    NODE_FAIL = "node_fail"      # the machine under it failed; same again is fine
    PREEMPTED = "preempted"
    CANCELLED = "cancelled"      # cancelled by a person
    LOST = "lost"                # the executor no longer knows the job

    @property
    def ended(self) -> bool:
        return self not in (Outcome.PENDING, Outcome.RUNNING)


@dataclass(frozen=True)
class JobStatus:
    outcome: Outcome
    detail: str = ""             # e.g. "exit code 75", for the events table
    exit_code: int | None = None


@dataclass(frozen=True)
class Submission:
    """What the daemon hands an executor: the spec to run, where to log, what it may use."""

    job_id: int
    spec_path: Path
    log_path: Path
    work_dir: Path
    resources: dict


class Executor(Protocol):
    name: str
    poll_interval_s: float  # the daemon asks no more often than this
    unreachable: str        # why the scheduler does not answer now; '' when it does
    files: "SharedFiles | StagedFiles"  # how job files reach where jobs run (dlcwatch.transport.job_files)

    def next_resources(self, outcome: Outcome, resources: dict) -> dict | None:
        """Given how a job ended and what it asked for, return what the retry asks for, or None
        when more of the same cannot help (e.g. the time limit is already at its cap)."""

    def choose_resources(self, resources: dict) -> dict:
        """Given what a job's videos ask for, return what to submit it with now (e.g. a CPU
        partition while the GPUs are all taken)."""

    def slots(self, active_jobs: int) -> int:
        """Given how many of our jobs are active, return how many more may be submitted now."""

    def submit(self, submission: Submission) -> str:
        """Start a job; return the executor's id for it. Raise ExecutorError."""

    def max_array_tasks(self) -> int:
        """Return how many jobs one submit_array call may carry now; 1: this executor has no arrays."""

    def submit_array(self, submission: Submission, count: int) -> list[str]:
        """Given a submission whose spec and log paths hold ARRAY_TASK_ID, start count jobs as one
        array (task i reads the spec with i in place of ARRAY_TASK_ID); return their ids in task
        order. Raise ExecutorError; then none of them started."""

    def poll(self, jobs: list[Job]) -> dict[int, JobStatus]:
        """Given active jobs, return their status by job id, in one round trip to the scheduler."""

    def adopt(self, jobs: list[Job]) -> dict[int, str]:
        """Given jobs recorded but never confirmed as submitted (the daemon stopped in between),
        return the executor's ids of those it has after all, by job id. Raise ExecutorError when
        it cannot be asked now."""

    def cancel(self, job: Job) -> None:
        """Stop a job. Raise ExecutorError."""

    def reconfigure(self, config) -> None:
        """Given a reloaded config of the same executor kind, take its new settings."""

    def close(self) -> None:
        """Release what the executor holds; running jobs keep running."""


def signal_name(number: int) -> str:
    """Given a signal number a job was killed by, return its name ('SIGKILL'), or 'signal N' if unknown."""
    try:
        return signal.Signals(number).name
    except ValueError:
        return f"signal {number}"
