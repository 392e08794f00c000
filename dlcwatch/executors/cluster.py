"""What every batch-scheduler executor (SLURM, Grid Engine) does the same way, whatever the scheduler.

ClusterExecutor is the base both extend. It owns:
- the one runner for scheduler commands (argv in, CommandResult out; over ssh in remote mode);
- the scheduler's health: while it does not answer, no commands until a pause that doubles up to
  unreachable_backoff_max_s (dlcwatch.backoff), said once in the log; slots() offers none;
- the submit-limit pause: after the scheduler refused a job for a per-user limit, no submissions
  until one of ours ends (or LIMIT_PAUSE_S), and the next arrays at most half as large;
- the job script written into the job's folder as the cluster sees it (and copied to scratch);
- the retry policy by cause (more time after a time-limit kill, more memory after a memory kill,
  the same again after a node failure), and the CPU fallback while GPU jobs wait;
- judging a job the scheduler no longer knows by the worker's result file;
- the bookkeeping of adopt(): how a job recorded before a restart was named when submitted.

It also runs the commands every scheduler has in the same shape: reading the cluster's limits
once (_read_config), submitting a script (_submit_script: refused, not answering, or a submit
limit), checking an array's size, and cancelling a job (_cancel_command).

A subclass brings what is its scheduler's own: the script renderer, the submit, status, cancel
and adopt commands, its limits (_job_limits), and its states module that reads what they print.
"""

from __future__ import annotations

import logging
import math
import shlex
import time
from pathlib import Path, PurePosixPath

from dlcwatch.backoff import Backoff
from dlcwatch.errors import SubmitLimitReached
from dlcwatch.transport.job_files import SharedFiles
from dlcwatch.executors.base import ARRAY_TASK_ID, ExecutorError, JobStatus, Outcome, Submission
from dlcwatch.jobs.spec import EXIT_OK, ArrayFolder, read_result
from dlcwatch.run import CommandResult, Runner, run
from dlcwatch.store import Job

LIMIT_PAUSE_S = 300.0     # after a submit-limit refusal, submit again after this or when one of ours ends

# Causes whose retry is decided by next_resources(); other endings are retried the same way again.
RETRY_BY_CAUSE = frozenset({Outcome.TIMEOUT, Outcome.OUT_OF_MEMORY, Outcome.NODE_FAIL, Outcome.PREEMPTED})


def gb_to_mb(gigabytes: float) -> int:
    return int(round(gigabytes * 1024))


def default_resources(settings) -> dict:
    """Given a cluster executor's settings, return the resources a first attempt asks for."""
    return {"time_min": settings.time_limit_min, "mem_mb": gb_to_mb(settings.mem_gb),
            "cpus": settings.cpus, "gpus": settings.gpus}


def next_resources(outcome: Outcome, resources: dict, settings) -> dict | None:
    """Given how a job ended and the resources it had ({} = the configured defaults), return the
    resources for the next attempt of its videos, or None when this cause gets no retry from here.

    TIMEOUT: time grows by settings.retry_growth, up to max_time_limit_min. OUT_OF_MEMORY: memory
    grows the same way, up to max_mem_gb (a job that asked for no memory gets max_mem_gb). NODE_FAIL
    and PREEMPTED: the same again. None for every other outcome (the daemon's own per-video policy
    decides) and when the cap is already reached: more of the same would fail again.
    """
    current = {**default_resources(settings), **resources}
    if outcome in (Outcome.NODE_FAIL, Outcome.PREEMPTED):
        return current
    if outcome is Outcome.TIMEOUT:
        grown = _grow(current["time_min"], settings.retry_growth, settings.max_time_limit_min)
        return None if grown is None else {**current, "time_min": grown}
    if outcome is Outcome.OUT_OF_MEMORY:
        cap = gb_to_mb(settings.max_mem_gb)
        if not current["mem_mb"]:  # the cluster's default was too little; we do not know how much it was
            return {**current, "mem_mb": cap} if cap else None
        grown = _grow(current["mem_mb"], settings.retry_growth, cap)
        return None if grown is None else {**current, "mem_mb": grown}
    return None


def _grow(value: int, factor: float, cap: int) -> int | None:
    """Given a resource amount, return it grown by factor and held at cap; None if already at cap."""
    if not value or not cap or value >= cap:
        return None
    return min(cap, max(value + 1, math.ceil(value * factor)))


class ClusterExecutor:
    """The part of a batch-scheduler executor that is no scheduler's own (see the module docstring).

    A subclass sets name, scheduler (its name for people), server (what answers its commands:
    'controller', 'qmaster'), SCRIPT_NAME and FALLBACK_PLACE (the resource key the CPU fallback
    changes: 'partition', 'queue') and states (its states module, which reads what its commands
    print: message_of(stderr, stdout), cannot_reach(result, problem), is_submit_limit(message)), and
    implements render_script() and _job_limits()."""

    name = ""
    scheduler = ""
    server = ""
    states = None
    SCRIPT_NAME = ""
    FALLBACK_PLACE = ""

    def __init__(self, settings, *, runner: Runner | None = None, clock=time.time, files=None):
        self.settings = settings
        self.runner = runner or run
        self.files = files or SharedFiles()
        self.clock = clock
        self._quiet_until = 0.0                       # the scheduler did not answer: no commands until then
        self._failures = 0                            # questions in a row the scheduler did not answer
        self._backoff_s = 0.0
        self._unreachable_since: float | None = None
        self._last_problem = ""
        self._limit_until = 0.0                       # a submit limit was hit: no submissions until then
        self._gpu_wait_s = 0.0                        # how long our longest-waiting GPU job has pended
        self._array_cap = 0                           # after a submit-limit refusal: smaller arrays (0: none)
        self._cluster: dict[str, str] | None = None   # the cluster's configuration, read once (_read_config)

    @property
    def poll_interval_s(self) -> float:
        return self.settings.poll_interval_s

    def render_script(self, submission: Submission, **array) -> str:
        """Given a job as the cluster sees it, return its job script. Raise ValueError."""
        raise NotImplementedError

    def close(self) -> None:
        """Nothing is held between commands; running jobs keep running."""

    def reconfigure(self, config) -> None:
        """Take the new executor.<kind> settings (submitted jobs keep what they were given), and read
        the cluster's limits again: a reload is when an admin changed them."""
        self.settings = config.executor[self.name]
        self._cluster = None
        self._array_cap = 0

    # ------------------------------------------------------------------ what the scheduler says

    def message_of(self, result: CommandResult) -> str:
        """Given a command of this scheduler that failed, return its message for a person, on one line."""
        return self.states.message_of(result.stderr, result.stdout)

    def cannot_reach(self, result: CommandResult, problem: str) -> bool:
        """Given a failed command and its message, return whether the scheduler (or the login node) did
        not answer, as opposed to refusing."""
        return self.states.cannot_reach(result, problem)

    def is_submit_limit(self, problem: str) -> bool:
        """Given a refused submission's message, return whether a per-user submit limit was reached."""
        return self.states.is_submit_limit(problem)

    def _job_limits(self) -> list[int | None] | None:
        """Return the cluster's limits on our jobs in flight (None or 0: none), or None while it cannot be asked."""
        raise NotImplementedError

    # ------------------------------------------------------------------ resources

    def next_resources(self, outcome: Outcome, resources: dict) -> dict | None:
        """TIMEOUT: more time; OUT_OF_MEMORY: more memory (None at the caps); otherwise the same."""
        if outcome in RETRY_BY_CAUSE:
            return next_resources(outcome, resources, self.settings)
        return resources

    def choose_resources(self, resources: dict) -> dict:
        """Given what a job's videos ask for, return what to submit it with: in the CPU fallback's
        place (partition or queue), without GPUs, while one of our GPU jobs has pended past the
        configured time."""
        fallback = self.settings.cpu_fallback
        place = fallback[self.FALLBACK_PLACE]
        if not place or not self._wants_gpu(resources):
            return resources
        if self._gpu_wait_s < fallback.after_pending_min * 60:
            return resources
        return {**resources, self.FALLBACK_PLACE: place, "gpus": 0, "cpus": fallback.cpus,
                "time_min": max(fallback.time_limit_min, resources.get("time_min", 0))}

    def _wants_gpu(self, resources: dict) -> bool:
        return resources.get("gpus", self.settings.gpus) > 0

    # ------------------------------------------------------------------ limits

    def slots(self, active_jobs: int) -> int:
        """Given how many of our jobs are active, return how many more may be submitted now: none
        while the scheduler does not answer or a submit limit was hit, else up to max_jobs_in_flight
        and the cluster's own limits (_job_limits)."""
        if self._submission_paused():
            return 0
        limits = self._job_limits()
        if limits is None:
            return 0
        cap = min([self.settings.max_jobs_in_flight, *(limit for limit in limits if limit)])
        return max(0, cap - active_jobs)

    def _read_config(self, argv: list[str], parse) -> dict[str, str] | None:
        """Return the cluster's configuration (argv's output, parse()d), asked once and kept ({} when
        the command was refused: then only our own settings limit us); None while unreachable."""
        if self._cluster is None:
            if self.clock() < self._quiet_until:
                return None
            result = self._run(argv)
            if not result.ok:
                problem = self.message_of(result)
                if self.cannot_reach(result, problem):
                    self._unreachable(problem)
                    return None
                logging.getLogger(f"dlcwatch.executors.{self.name}").warning(
                    "cannot read the %s configuration (%s); only executor.%s limits apply", self.scheduler,
                    problem, self.name)
                self._cluster = {}
            else:
                self._reachable()
                self._cluster = parse(result.stdout)
        return self._cluster

    def _check_array_size(self, count: int, largest: int | None, limit_name: str) -> None:
        """Given an array's task count and the cluster's largest array (None or 0: no limit) by its
        name, raise ExecutorError when the array cannot be submitted as one."""
        if count < 1:
            raise ExecutorError("a job array needs at least one task")
        if largest and count > largest:
            raise ExecutorError(f"a job array of {count} tasks is larger than the cluster allows "
                                f"({limit_name} = {largest}); submit it in parts of at most {largest}")

    def _submission_paused(self) -> bool:
        """Return whether no job may be submitted now: the scheduler does not answer, or a submit
        limit was hit and none of ours has ended since."""
        now = self.clock()
        return now < self._quiet_until or now < self._limit_until

    def _array_limit(self, *limits: int | None) -> int:
        """Given the scheduler's own limits on one array (None or 0: none), return how many tasks one
        array may carry: executor.<kind>.array_tasks within them and within half of the last array a
        submit limit refused."""
        return max(1, min([self.settings.array_tasks, *(limit for limit in (self._array_cap, *limits) if limit)]))

    def _submit_limit_hit(self, what: str, problem: str, count: int = 1) -> None:
        """The scheduler refused `what` for a per-user submit limit: pause submissions until one of
        ours ends, and make the next arrays smaller than this one."""
        self._limit_until = self.clock() + LIMIT_PAUSE_S
        if count > 1:
            self._array_cap = max(1, count // 2)  # the limit counts every task: split the next arrays
        log = logging.getLogger(f"dlcwatch.executors.{self.name}")
        log.warning("%s refused %s for a submit limit (%s); submitting again when one of ours ends",
                    self.scheduler, what, problem)

    # ------------------------------------------------------------------ submit and cancel

    def _submit_script(self, argv: list[str], what: str, count: int = 1) -> CommandResult:
        """Run a submit command (argv[0]: sbatch, qsub) for what (e.g. "job 12") of count jobs;
        return its result once the scheduler accepted. Raise ExecutorError with the scheduler's
        own words when it refuses or does not answer, SubmitLimitReached for a per-user limit."""
        result = self._run(argv)
        if not result.ok:
            problem = self.message_of(result)
            if self.cannot_reach(result, problem):
                self._unreachable(problem)
                raise ExecutorError(f"{self.scheduler} {self.server} not answering, {what} not submitted: {problem}")
            if self.is_submit_limit(problem):
                self._submit_limit_hit(what, problem, count)
                raise SubmitLimitReached(f"{self.scheduler} refused {what}: submit limit reached ({problem}); "
                                         "submitting again when one of our jobs ends")
            raise ExecutorError(f"{PurePosixPath(argv[0]).name} refused {what}: {problem}")
        self._reachable()
        return result

    def _cancel_command(self, argv: list[str], job: Job, already_ended) -> None:
        """Run a cancel command (argv[0]: scancel, qdel) for job; a job already_ended(message) says
        has ended is fine. Raise ExecutorError."""
        result = self._run(argv)
        problem = self.message_of(result)
        if result.ok or already_ended(problem):
            return
        if self.cannot_reach(result, problem):
            self._unreachable(problem)
        raise ExecutorError(f"{PurePosixPath(argv[0]).name} of {self.scheduler} job {job.executor_job_id} failed: "
                            f"{problem}")

    # ------------------------------------------------------------------ the job script

    def _write_script(self, submission: Submission, **array) -> str:
        """Write the job's script into its folder (as paths are on the cluster), copy the folder there
        if the cluster has its own scratch; return the script's path on the cluster."""
        files = self.files
        on_cluster = Submission(submission.job_id, Path(files.job_path(submission.spec_path)),
                                Path(files.job_path(submission.log_path)), Path(files.job_path(submission.work_dir)),
                                submission.resources)
        try:
            text = self.render_script(on_cluster, **array)
        except ValueError as error:
            raise ExecutorError(f"cannot write the {self.SCRIPT_NAME} script of job {submission.job_id}: "
                                f"{error}") from error
        try:
            submission.work_dir.mkdir(parents=True, exist_ok=True)
            submission.log_path.parent.mkdir(parents=True, exist_ok=True)
            path = submission.work_dir / self.SCRIPT_NAME
            path.write_text(text, encoding="utf-8")
            files.push([submission.work_dir])
        except OSError as error:
            raise ExecutorError(f"cannot write the {self.SCRIPT_NAME} script of job {submission.job_id}: "
                                f"{error.strerror or error}") from error
        return files.job_path(path)

    # ------------------------------------------------------------------ after a poll

    def _polled(self, ours: list[Job], statuses: dict[int, JobStatus]) -> None:
        """Given our jobs and what a poll found: a job of ours that ended makes room under a submit
        limit; remember how long our longest-waiting GPU job has pended (for the CPU fallback)."""
        if any(status.outcome.ended for status in statuses.values()):
            self._limit_until = 0.0
        now = self.clock()
        self._gpu_wait_s = max((now - job.created for job in ours if job.id in statuses
                                and statuses[job.id].outcome is Outcome.PENDING and self._wants_gpu(job.resources)),
                               default=0.0)

    def _judge_by_result(self, job: Job, definite: bool, sources: str) -> JobStatus | None:
        """Given a job the scheduler no longer lists, return its status from the worker's result file;
        LOST without one when the scheduler's silence is definite (sources: who was asked), else None."""
        result = read_result(job.result_path) or {}
        code = result.get("exit_code") if result.get("finished") else None
        if code is not None:
            outcome = Outcome.COMPLETED if code == EXIT_OK else Outcome.FAILED
            return JobStatus(outcome, f"{self.scheduler} no longer lists job {job.executor_job_id}; its worker "
                                      f"ended with exit code {code}", code)
        if not definite:
            return None
        return JobStatus(Outcome.LOST, f"{self.scheduler} job {job.executor_job_id} is known to neither {sources}, "
                                       "and its worker wrote no final result")

    # ------------------------------------------------------------------ after a restart

    def _adoption_failed(self, program: str, result: CommandResult, problem: str) -> ExecutorError:
        """The scheduler's `program` could not be asked which jobs it has after a restart: pause as a
        poll does when it did not answer; return the error to raise (the daemon asks again later)."""
        if self.cannot_reach(result, problem):
            self._unreachable(problem)
        return ExecutorError(f"{program} could not be asked about jobs submitted before the stop: {problem}")

    def _adoption_wanted(self, jobs: list[Job]) -> dict[tuple[str, str, int | None], int]:
        """Given jobs recorded but never confirmed as submitted, return our job ids by how they were
        submitted: (job name, job folder on the cluster, array task index or None). A job without a
        spec stopped before anything was written: it was never submitted. Raise ExecutorError while
        the scheduler does not answer."""
        wanted = {}
        for job in jobs:
            if job.spec_path:
                wanted[submitted_as(job, self.files)] = job.id
        if wanted and self.clock() < self._quiet_until:
            raise ExecutorError(f"{self.scheduler} not answering: {self._last_problem}")
        return wanted

    # ------------------------------------------------------------------ the scheduler's health

    def _run(self, argv: list[str]) -> CommandResult:
        return self.runner(argv, self.settings.command_timeout_s)

    def _unreachable(self, problem: str, *, cannot_reach: bool = True) -> None:
        """The scheduler did not answer (or its status command failed otherwise): pause, longer each
        time, and say so once."""
        now = self.clock()
        self._failures += 1
        self._backoff_s = Backoff(self.settings.unreachable_backoff_s,
                                  self.settings.unreachable_backoff_max_s).delay(self._failures)
        self._quiet_until = now + self._backoff_s
        self._last_problem = problem
        log = logging.getLogger(f"dlcwatch.executors.{self.name}")
        what = f"{self.scheduler} {self.server} not answering" if cannot_reach else f"{self.scheduler} command failed"
        if self._unreachable_since is None:
            self._unreachable_since = now
            log.warning("%s (%s); our jobs keep running; asking again in %.0f s, then less often while it "
                        "lasts", what, problem, self._backoff_s)
        else:
            log.debug("%s again (%s); next try in %.0f s", what, problem, self._backoff_s)

    def _reachable(self) -> None:
        if self._unreachable_since is not None:
            log = logging.getLogger(f"dlcwatch.executors.{self.name}")
            log.info("%s %s answers again, after %.0f s", self.scheduler, self.server,
                     self.clock() - self._unreachable_since)
        self._unreachable_since = None
        self._failures = 0
        self._backoff_s = 0.0
        self._quiet_until = 0.0

    @property
    def unreachable(self) -> str:
        """Why the scheduler counts as unreachable now, or '' when it answers."""
        return self._last_problem if self._unreachable_since is not None else ""


def submitted_as(job: Job, files) -> tuple[str, str, int | None]:
    """Given a job, return how the scheduler would list it had it been submitted: (job name, job
    folder on the cluster, array task index or None), as the executors name and submit jobs."""
    spec = Path(job.spec_path)
    task = ArrayFolder.task_of(spec)
    first = ArrayFolder(spec.parent).first_job_id if task is not None else job.id
    return job_name(first), files.job_path(spec.parent).rstrip("/"), task


def job_name(job_id: int | str) -> str:
    """Given our job id (an array's first; or a pattern such as '*'), return the scheduler job name
    it is submitted as."""
    return f"dlcwatch-{job_id}"


# ---------------------------------------------------------------------- what commands print (pure)

def one_line_message(text: str, prefixes: tuple[str, ...] = (), skip: tuple[str, ...] = ()) -> str:
    """Given what a scheduler command printed, return it for a person on one line: blank lines,
    repeated lines and lines in skip dropped, each of prefixes cut off in turn where a line starts
    with it (e.g. "Unable to run job: ", then "error: "); 'no message' when nothing is left."""
    cleaned = []
    for line in text.splitlines():
        line = line.strip()
        for prefix in prefixes:
            line = line.removeprefix(prefix)
        if line and line not in cleaned and line not in skip:
            cleaned.append(line)
    return "; ".join(cleaned) or "no message"


def says_any(message: str, markers: tuple[str, ...]) -> bool:
    """Given a command's message and phrases in lower case, return whether it says any of them."""
    text = message.lower()
    return any(marker in text for marker in markers)


def command_unreachable(result: CommandResult, problem: str, markers: tuple[str, ...]) -> bool:
    """Given a failed command, its message and what the scheduler prints when its server does not
    answer, return whether it did not answer: ssh could not get there, the command hung, or it says so."""
    return result.unreachable or result.timed_out or says_any(problem, markers)


# ---------------------------------------------------------------------- job scripts (pure)

def shell_path(path: str, task_variable: str) -> str:
    """Given a path that may hold ARRAY_TASK_ID, return it quoted for bash, with each ARRAY_TASK_ID
    replaced by the expansion of task_variable (a shell variable the job script sets)."""
    return f'"${{{task_variable}}}"'.join(single_quote(part) if part else "" for part in path.split(ARRAY_TASK_ID))


def single_quote(text: str) -> str:
    """Like shlex.quote, but always quoted, so a path reads as one in the script."""
    return "'" + text.replace("'", "'\"'\"'") + "'"


def format_memory(megabytes: int) -> str:
    """Given megabytes, return memory as sbatch and qsub read it: 16384 -> '16G', 1500 -> '1500M'."""
    return f"{megabytes // 1024}G" if megabytes % 1024 == 0 else f"{megabytes}M"


def job_resources(settings, submission: Submission, known: tuple[str, ...], *, array_size: int = 0,
                  array_throttle: int = 0) -> dict:
    """Given a cluster executor's settings and a job for its script renderer, return the resources
    the script asks for: the configured defaults, then the job's own (a retry with more time, the
    CPU fallback's place). Raise ValueError for resources not in known, a negative array size or
    throttle, or spec and log paths that do not agree with being an array (ARRAY_TASK_ID in both)."""
    unknown = sorted(set(submission.resources) - set(known))
    if unknown:
        raise ValueError(f"unknown resources {', '.join(unknown)}; known: {', '.join(known)}")
    if array_size < 0 or array_throttle < 0:
        raise ValueError("array_size and array_throttle cannot be negative")
    in_paths = [ARRAY_TASK_ID in str(path) for path in (submission.spec_path, submission.log_path)]
    if array_size and not all(in_paths):
        raise ValueError(f"a job array needs {ARRAY_TASK_ID} in the spec and log paths, one file per task")
    if not array_size and any(in_paths):
        raise ValueError(f"{ARRAY_TASK_ID} in the spec or log path of a job that is no array")
    return {**default_resources(settings), **submission.resources}


def refuse_line_breaks(**paths: str) -> None:
    """Given paths a job script writes on one line (what: path), raise ValueError for one with a line break."""
    for what, path in paths.items():
        if "\n" in path or "\r" in path or "\0" in path:
            raise ValueError(f"the {what.replace('_', ' ')} {path!r} contains a line break, which a job script "
                             "cannot hold")


def extra_options(lines: list[str], prefix: str, program: str) -> list[str]:
    """Given an admin's extra options for the job script (each may start with the script's own prefix,
    e.g. '#SBATCH'), return them without it, blank ones dropped. Raise ValueError for one with a
    line break, which would end the directive line and start a command."""
    options = []
    for extra in lines:
        extra = extra.strip()
        extra = extra[len(prefix):].strip() if extra.upper().startswith(prefix.upper()) else extra
        if "\n" in extra or "\r" in extra:
            raise ValueError(f"an extra {program} option {extra!r} contains a line break, which a {prefix} line "
                             "cannot hold")
        if extra:
            options.append(extra)
    return options


def script_head(prefix: str, options: list[str], job_id: int) -> list[str]:
    """Given the scheduler's directive prefix ('#SBATCH', '#$', '#PBS'), the options and our job id,
    return the lines that open a job script."""
    return ["#!/bin/bash", *(f"{prefix} {option}" for option in options),
            f"# dlcwatch job {job_id}: runs the worker, whose exit code becomes the job's."]


def worker_lines(settings, spec_path: str, task_variable: str) -> list[str]:
    """Given the settings and the spec path (which may hold ARRAY_TASK_ID, expanded from
    task_variable), return the lines that end every job script: stop at the first failing line,
    unbuffered output, the admin's setup lines as written, then the worker (after the command
    prefix, e.g. a container) in the shell's place, so its exit code is the job's."""
    command = [settings.command_prefix.strip()] if settings.command_prefix.strip() else []
    command += [shlex.quote(settings.python), "-m", "dlcwatch.worker", shell_path(spec_path, task_variable)]
    return ["set -e", "export PYTHONUNBUFFERED=1", *settings.setup, "exec " + " ".join(command)]
