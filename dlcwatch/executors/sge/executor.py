"""The Grid Engine executor: each job is one qsub job running `python -m dlcwatch.worker SPEC`.

Son of Grid Engine 8.1.9 is what it is tested against (tests/sge_cluster.sh); the commands and
outputs it uses (qsub -terse, qstat -xml, qacct -j, qdel, qconf -sconf) are the same in Univa /
Altair Grid Engine and Open Grid Scheduler. What is no scheduler's own (the scheduler's health,
the submit-limit pause, the job script's place, retries by cause, the CPU fallback, judging by
result file) comes from ClusterExecutor, shared with SLURM.

A poll costs at most two commands whatever the number of jobs: one `qstat -xml` (our own jobs;
an array's pending tasks come as one entry) and, only for jobs qstat no longer lists, one `qacct`.
A job neither knows is judged by the worker's result file; without one it counts as LOST only
after accounting_lag_s, since Grid Engine writes accounting records up to flush_time after a job
ends. A job in an error state (Eqw: it can never start by itself) is reported FAILED and deleted.

Job ids: '123' for a job, '123.4' for task 4 of an array (Grid Engine's own notation; qdel takes
it). Grid Engine numbers tasks from 1, our task files from 0: task i+1 runs spec-i.json.
"""

from __future__ import annotations

import logging
import re
import time

from dlcwatch.executors.base import ExecutorError, JobStatus, Outcome, Submission
from dlcwatch.executors.cluster import ClusterExecutor, job_name
from dlcwatch.executors.sge.script import render_qsub_script
from dlcwatch.executors.sge import states as sge_states
from dlcwatch.executors.sge.states import (
    SgeRecord,
    config_limit,
    is_no_accounting_yet,
    is_unknown_job,
    message_of,
    parse_global_config,
    parse_qacct,
    parse_qstat_xml,
    cannot_reach,
    status_of,
)
from dlcwatch.run import Runner
from dlcwatch.store import Job

log = logging.getLogger("dlcwatch.executors.sge.executor")

SCRIPT_NAME = "job.qsub"
ACCOUNTING_MARGIN_S = 86400.0  # qacct -b reads the cluster's local time; a day covers any time zone
_SUBMITTED = re.compile(r"(\d+)(?:\.(\d+)-(\d+):(\d+))?")  # qsub -terse: "123" or "123.1-4:1"


def sge_task_id(array_id: str, task_index: int) -> str:
    """Given a Grid Engine array's job number and one of our task indexes (0-based, ArrayFolder),
    return the task's id as Grid Engine writes it: ('123', 0) -> '123.1'."""
    return f"{array_id}.{task_index + 1}"


def task_index(sge_id: str) -> int | None:
    """Given a Grid Engine job or task id, return our task index: '123.1' -> 0, '123' -> None."""
    _, _, task = sge_id.partition(".")
    return int(task) - 1 if task.isdigit() else None


class SgeExecutor(ClusterExecutor):
    name = "sge"
    scheduler = "Grid Engine"
    server = "qmaster"
    states = sge_states
    SCRIPT_NAME = SCRIPT_NAME
    FALLBACK_PLACE = "queue"

    def __init__(self, settings, *, runner: Runner | None = None, clock=time.time, files=None):
        super().__init__(settings, runner=runner, clock=clock, files=files)
        self._missing_since: dict[str, float] = {}    # ids neither qstat nor qacct knows, since when

    def render_script(self, submission: Submission, **array) -> str:
        return render_qsub_script(self.settings, submission, **array)

    # ------------------------------------------------------------------ limits

    def cluster_config(self) -> dict[str, str] | None:
        """Return the global configuration (`qconf -sconf`), asked once and kept; None while unreachable."""
        return self._read_config(["qconf", "-sconf"], parse_global_config)

    def _job_limits(self) -> list[int | None] | None:
        """The cluster's max_u_jobs and max_jobs."""
        cluster = self.cluster_config()
        return None if cluster is None else [config_limit(cluster, "max_u_jobs"), config_limit(cluster, "max_jobs")]

    def max_array_tasks(self) -> int:
        """Return how many jobs one array may carry: executor.sge.array_tasks within the cluster's
        max_aj_tasks and half the size of the last array a submit limit refused."""
        return self._array_limit(config_limit(self.cluster_config() or {}, "max_aj_tasks"))

    # ------------------------------------------------------------------ submit

    def submit(self, submission: Submission) -> str:
        """Write the job's script next to its spec and submit it; return Grid Engine's job id.
        Raise ExecutorError with Grid Engine's own words when it refuses or does not answer."""
        script = self._write_script(submission)
        job_id, _ = self._qsub(script, submission, f"job {submission.job_id}")
        return job_id

    def submit_array(self, submission: Submission, count: int, *, throttle: int | None = None) -> list[str]:
        """Given a submission whose spec and log paths hold ARRAY_TASK_ID, submit one job array of
        count tasks (qsub -t 1-count), at most throttle running at once (None: executor.sge.
        array_throttle; 0: no limit); return the task ids in our task order ('123.1' runs spec-0).
        Raise ExecutorError beyond the cluster's max_aj_tasks."""
        self._check_array_size(count, config_limit(self.cluster_config() or {}, "max_aj_tasks"), "max_aj_tasks")
        throttle = self.settings.array_throttle if throttle is None else throttle
        script = self._write_script(submission, array_size=count, array_throttle=throttle)
        array_id, tasks = self._qsub(script, submission, f"job array {submission.job_id} ({count} tasks)", count)
        if tasks != count:
            raise ExecutorError(f"qsub accepted job array {submission.job_id} as {array_id} with {tasks} tasks, "
                                f"not {count}")
        return [sge_task_id(array_id, index) for index in range(count)]

    def _qsub(self, script: str, submission: Submission, what: str, count: int = 0) -> tuple[str, int]:
        """Submit script from the job's folder; return (Grid Engine's job number, its task count; 0: no array)."""
        result = self._submit_script(["qsub", "-terse", "-wd", self.files.job_path(submission.work_dir), script],
                                     what, count)
        answer = result.stdout.strip().splitlines()[-1].strip() if result.stdout.strip() else ""
        match = _SUBMITTED.fullmatch(answer)
        if not match:
            raise ExecutorError(f"qsub accepted {what} but answered {result.stdout.strip()!r}, not a job id")
        tasks = 0
        if match[2]:
            tasks = len(range(int(match[2]), int(match[3]) + 1, int(match[4])))
        return match[1], tasks

    # ------------------------------------------------------------------ poll

    def poll(self, jobs: list[Job]) -> dict[int, JobStatus]:
        """Given active jobs, return the status of those Grid Engine (or the worker) has news of: one
        qstat call, and one qacct call for the jobs qstat no longer lists."""
        ours = [job for job in jobs if job.executor_job_id]
        if not ours or self.clock() < self._quiet_until:
            return {}
        listed = self._qstat()
        if listed is None:
            return {}
        statuses = {job.id: status_of(listed[job.executor_job_id]) for job in ours if job.executor_job_id in listed}
        errors = [job for job in ours if job.id in statuses and statuses[job.id].outcome is Outcome.FAILED]
        if errors:
            self._delete_stuck(errors)
        missing = [job for job in ours if job.executor_job_id not in listed]
        if missing:
            accounted, definite = self._qacct(missing)
            now = self.clock()
            for job in missing:
                record = accounted.get(job.executor_job_id)
                if record:
                    status = status_of(record)
                else:
                    since = self._missing_since.setdefault(job.executor_job_id, now)
                    recent = now - since < self.settings.accounting_lag_s
                    status = self._judge_by_result(job, definite and not recent, "qstat nor qacct")
                if status is not None:
                    statuses[job.id] = status
        for job in ours:
            if job.id in statuses and statuses[job.id].outcome.ended:
                self._missing_since.pop(job.executor_job_id, None)
        self._polled(ours, statuses)
        return statuses

    def _qstat(self) -> dict[str, SgeRecord] | None:
        """Return every job of ours Grid Engine lists, by id; None when it could not be asked."""
        result = self._run(["qstat", "-xml"])
        if result.ok:
            try:
                listed = parse_qstat_xml(result.stdout)
            except ValueError as error:
                self._unreachable(str(error), cannot_reach=False)
                return None
            self._reachable()
            return listed
        problem = message_of(result.stderr, result.stdout)
        self._unreachable(problem, cannot_reach=cannot_reach(result, problem))
        return None

    def _qacct(self, jobs: list[Job]) -> tuple[dict[str, SgeRecord], bool]:
        """Given jobs qstat does not list, return (qacct's records, definite): definite is False when
        qacct could not be asked, so a job missing from it is not known to be gone. One call: by job
        number when they are all tasks of one job, else by our job names, ended since the earliest of
        them was created (less a day: qacct reads the cluster's local time)."""
        numbers = sorted({job.executor_job_id.partition(".")[0] for job in jobs}, key=int)
        if len(numbers) == 1:
            argv = ["qacct", "-j", numbers[0]]
        else:
            since = time.localtime(min(job.created for job in jobs) - ACCOUNTING_MARGIN_S)
            argv = ["qacct", "-j", job_name("*"), "-b", time.strftime("%Y%m%d%H%M", since)]
        result = self._run(argv)
        if result.ok:
            return parse_qacct(result.stdout), True
        problem = message_of(result.stderr, result.stdout)
        if is_unknown_job(problem) or is_no_accounting_yet(problem):
            return {}, True  # "job id 12 not found", "job name dlcwatch-* not found", no accounting file yet
        if cannot_reach(result, problem):
            self._unreachable(problem)
        log.warning("qacct failed (%s); jobs qstat no longer lists wait for it, or for their result files", problem)
        return {}, False

    def _delete_stuck(self, jobs: list[Job]) -> None:
        """Jobs in an error state (Eqw) never start by themselves and would take a place in the queue
        until a person clears them: delete them (one qdel), as they are reported FAILED."""
        ids = sorted(job.executor_job_id for job in jobs)
        result = self._run(["qdel", *ids])
        if not result.ok and not is_unknown_job(message_of(result.stderr, result.stdout)):
            log.warning("could not delete Grid Engine jobs %s in an error state: %s", ", ".join(ids),
                        message_of(result.stderr, result.stdout))

    # ------------------------------------------------------------------ after a restart

    def adopt(self, jobs: list[Job]) -> dict[int, str]:
        """Given jobs recorded but never confirmed as submitted, return the Grid Engine ids of those
        qstat has: found by the job name their script gave them (an array task also by its index;
        Grid Engine's task is ours + 1) among this user's jobs, in one qstat call. Raise ExecutorError
        while Grid Engine does not answer."""
        wanted = {(name, task): job_id for (name, _, task), job_id in self._adoption_wanted(jobs).items()}
        if not wanted:
            return {}
        result = self._run(["qstat", "-xml"])
        problem = message_of(result.stderr, result.stdout)
        try:
            listed = parse_qstat_xml(result.stdout) if result.ok else None
        except ValueError as error:
            listed, problem = None, str(error)
        if listed is None:
            raise self._adoption_failed("qstat", result, problem)
        self._reachable()
        found = {}
        for sge_id, record in listed.items():
            job_id = wanted.get((record.name, task_index(sge_id)))
            if job_id is not None:
                found[job_id] = sge_id
        return found

    # ------------------------------------------------------------------ cancel

    def cancel(self, job: Job) -> None:
        """Delete the job in Grid Engine (qdel); a job that already ended is fine. Raise ExecutorError."""
        if not job.executor_job_id:
            return
        self._cancel_command(["qdel", job.executor_job_id], job, is_unknown_job)
