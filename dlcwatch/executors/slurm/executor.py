"""The SLURM executor: each job is one sbatch job running `python -m dlcwatch.worker SPEC`.

Every SLURM command goes through one runner (dlcwatch.run: argv in, CommandResult out, never a
shell), so `slurm.host: user@login` wraps it in ssh (dlcwatch.transport.ssh.ssh_runner) and nothing else changes.

A poll costs at most two commands whatever the number of jobs: one `squeue` for all of them and,
only for jobs squeue no longer lists (it forgets ended jobs after MinJobAge), one `sacct`. A job
neither knows is judged by the worker's result file, else reported LOST. While the controller
does not answer, poll() reports nothing (the daemon keeps every state as it is), slots() offers
none, and the executor asks again after a pause that doubles up to unreachable_backoff_max_s.

Job arrays: `submit_array` submits N specs as one array job (`--array=0-(N-1)%throttle`) and
returns one id per task ('123_4'), which poll() and cancel() take like any job id: the daemon
records one job per task, so a task's videos are delivered while the other tasks still run.
"""

from __future__ import annotations

import getpass
import logging
import re
import time

from dlcwatch.executors.base import ExecutorError, JobStatus, Submission
from dlcwatch.executors.cluster import ClusterExecutor
from dlcwatch.executors.slurm.script import render_sbatch_script
from dlcwatch.executors.slurm import states as slurm_states
from dlcwatch.executors.slurm.states import (
    SACCT_FORMAT,
    SQUEUE_FORMAT,
    SlurmRecord,
    config_number,
    cannot_reach,
    is_accounting_disabled,
    is_gone,
    is_unknown_job,
    message_of,
    parse_config,
    parse_sacct,
    parse_squeue,
    status_of,
)
from dlcwatch.run import Runner
from dlcwatch.store import Job

log = logging.getLogger("dlcwatch.executors.slurm.executor")


SCRIPT_NAME = "job.sbatch"
_JOB_ID = re.compile(r"\d+")


class SlurmExecutor(ClusterExecutor):
    """Controller health, submit-limit pause, job script writing, retries by cause, the CPU
    fallback and judging by result file come from ClusterExecutor; SLURM's own commands are here."""

    name = "slurm"
    scheduler = "SLURM"
    server = "controller"
    states = slurm_states
    SCRIPT_NAME = SCRIPT_NAME
    FALLBACK_PLACE = "partition"

    def __init__(self, settings, *, runner: Runner | None = None, clock=time.time, files=None):
        super().__init__(settings, runner=runner, clock=clock, files=files)
        self._accounting: bool | None = None          # True: sacct answers; False: accounting disabled
        self._sacct_failing = False
        self._submit_limit = 0                        # the account's MaxSubmitJobs, read with the config

    def reconfigure(self, config) -> None:
        """Take the new executor.slurm settings, and ask the cluster again about its limits and
        accounting: a reload is when an admin changed them."""
        super().reconfigure(config)
        self._accounting = None

    def render_script(self, submission: Submission, **array) -> str:
        return render_sbatch_script(self.settings, submission, **array)

    # ------------------------------------------------------------------ limits

    def _job_limits(self) -> list[int | None] | None:
        """The cluster's MaxJobCount and the account's MaxSubmitJobs."""
        cluster = self.cluster_config()
        return None if cluster is None else [config_number(cluster, "MaxJobCount"), self._submit_limit]

    def cluster_config(self) -> dict[str, str] | None:
        """Return `scontrol show config` as a dict, asked once and kept (with the account's
        MaxSubmitJobs from sacctmgr); None while unreachable."""
        if self._cluster is None and self._read_config(["scontrol", "show", "config"], parse_config) is not None:
            self._submit_limit = self._read_submit_limit()
        return self._cluster

    def _read_submit_limit(self) -> int:
        """Return the smallest MaxSubmitJobs of our user's associations (an accounting limit, not in
        `scontrol show config`), 0 when there is none or accounting cannot tell."""
        user = self.settings.host.rpartition("@")[0] if "@" in self.settings.host else getpass.getuser()
        result = self._run(["sacctmgr", "--noheader", "--parsable2", "show", "associations",
                                    f"user={user}", "format=MaxSubmit"])
        if not result.ok:
            log.debug("no association limits from sacctmgr (%s)", message_of(result.stderr, result.stdout))
            return 0
        limits = [int(value) for value in result.stdout.split() if value.strip().isdigit()]
        if limits:
            log.info("SLURM allows %s at most %d submitted jobs (MaxSubmitJobs); dlcwatch stays within it",
                     user, min(limits))
        return min(limits, default=0)

    # ------------------------------------------------------------------ submit

    def submit(self, submission: Submission) -> str:
        """Write the job's sbatch script next to its spec and submit it; return SLURM's job id.
        Raise ExecutorError with SLURM's own words when it refuses or does not answer."""
        script = self._write_script(submission)
        return self._sbatch(script, submission, f"job {submission.job_id}")

    def max_array_tasks(self) -> int:
        """Return how many jobs one array may carry: executor.slurm.array_tasks, within the
        cluster's MaxArraySize (task indexes run 0..MaxArraySize-1), the account's MaxSubmitJobs,
        and half the size of the last array a submit limit refused."""
        return self._array_limit(self._submit_limit, config_number(self.cluster_config() or {}, "MaxArraySize"))

    def submit_array(self, submission: Submission, count: int, *, throttle: int | None = None) -> list[str]:
        """Given a submission whose spec and log paths hold ARRAY_TASK_ID (slurm.script), submit
        one job array of count tasks, at most throttle running at once (None: executor.slurm.
        array_throttle; 0: no limit); return the task ids ('123_0', '123_1', …). Raise
        ExecutorError beyond the cluster's MaxArraySize."""
        self._check_array_size(count, config_number(self.cluster_config() or {}, "MaxArraySize"), "MaxArraySize")
        throttle = self.settings.array_throttle if throttle is None else throttle
        script = self._write_script(submission, array_size=count, array_throttle=throttle)
        array_id = self._sbatch(script, submission, f"job array {submission.job_id} ({count} tasks)", count)
        return [f"{array_id}_{task}" for task in range(count)]

    def _sbatch(self, script: str, submission: Submission, what: str, count: int = 1) -> str:
        result = self._submit_script(["sbatch", "--parsable", f"--chdir={self.files.job_path(submission.work_dir)}",
                                      script], what, count)
        job_id = result.stdout.strip().split(";")[0]  # "123" or "123;cluster"
        if not _JOB_ID.fullmatch(job_id):
            raise ExecutorError(f"sbatch accepted {what} but answered {result.stdout.strip()!r}, not a job id")
        if result.stderr.strip():
            log.info("sbatch said about %s (SLURM job %s): %s", what, job_id, message_of(result.stderr))
        return job_id

    # ------------------------------------------------------------------ poll

    def poll(self, jobs: list[Job]) -> dict[int, JobStatus]:
        """Given active jobs, return the status of those SLURM (or the worker) has news of: one
        squeue call, and one sacct call for the jobs squeue no longer lists."""
        ours = [job for job in jobs if job.executor_job_id]
        if not ours or self.clock() < self._quiet_until:
            return {}
        ids = _query_ids(job.executor_job_id for job in ours)
        result = self._run(["squeue", "--noheader", "--array", "--states=all", f"--jobs={','.join(ids)}",
                                    f"--Format={SQUEUE_FORMAT}"])
        if result.ok:
            listed = parse_squeue(result.stdout)
        elif is_unknown_job(message_of(result.stderr, result.stdout)):
            listed = {}  # asked about one job only, and squeue has forgotten it
        else:
            self._unreachable(message_of(result.stderr, result.stdout), cannot_reach=cannot_reach(result))
            return {}
        self._reachable()
        statuses = {job.id: status_of(listed[job.executor_job_id]) for job in ours if job.executor_job_id in listed}
        missing = [job for job in ours if job.executor_job_id not in listed]
        if missing:
            accounted, definite = self._sacct([job.executor_job_id for job in missing])
            for job in missing:
                record = accounted.get(job.executor_job_id)
                sources = "squeue nor sacct" if self._accounting else "squeue (accounting is disabled)"
                status = status_of(record) if record else self._judge_by_result(job, definite, sources)
                if status is not None:
                    statuses[job.id] = status
        self._polled(ours, statuses)
        return statuses

    def _sacct(self, ids: list[str]) -> tuple[dict[str, SlurmRecord], bool]:
        """Given job ids squeue does not list, return (sacct's records, definite): definite is False
        when sacct could not be asked, so a job missing from it is not known to be gone."""
        if self._accounting is False:
            return {}, True
        result = self._run(["sacct", "--noheader", "--parsable2", "--allocations",
                                    f"--jobs={','.join(_query_ids(ids))}", f"--format={SACCT_FORMAT}"])
        if not result.ok:
            problem = message_of(result.stderr, result.stdout)
            if is_accounting_disabled(problem):
                log.info("SLURM accounting is disabled: jobs squeue forgot are judged by their result files")
                self._accounting = False
                return {}, True
            if not self._sacct_failing:  # said once per stretch of failures, not at every poll
                log.warning("sacct failed (%s); jobs squeue no longer lists wait for it, or for their result "
                            "files", problem)
            self._sacct_failing = True
            return {}, False
        self._accounting, self._sacct_failing = True, False
        return parse_sacct(result.stdout), True

    # ------------------------------------------------------------------ after a restart

    def adopt(self, jobs: list[Job]) -> dict[int, str]:
        """Given jobs recorded but never confirmed as submitted, return the SLURM ids of those
        squeue has: found by the job name and working folder their sbatch script gave them (an array
        task also by its index), in one squeue call. Raise ExecutorError while SLURM does not answer."""
        wanted = self._adoption_wanted(jobs)
        if not wanted:
            return {}
        names = sorted({name for name, _, _ in wanted})
        result = self._run(["squeue", "--noheader", "--array", "--states=all", f"--name={','.join(names)}",
                                    "--Format=JobArrayID:|,Name:|,WorkDir:|"])
        if not result.ok:
            raise self._adoption_failed("squeue", result, message_of(result.stderr, result.stdout))
        self._reachable()
        found = {}
        for line in result.stdout.splitlines():
            fields = [field.strip() for field in line.split("|")]
            if len(fields) < 3:
                continue
            slurm_id, name, folder = fields[:3]
            task = slurm_id.partition("_")[2]
            task = int(task) if task.isdigit() else None
            job_id = wanted.get((name, folder.rstrip("/"), task))
            if job_id is not None:
                found[job_id] = slurm_id
        return found

    # ------------------------------------------------------------------ cancel

    def cancel(self, job: Job) -> None:
        """Cancel the job in SLURM (scancel); a job that already ended is fine. Raise ExecutorError."""
        if not job.executor_job_id:
            return
        self._cancel_command(["scancel", job.executor_job_id], job, is_gone)


def _query_ids(job_ids) -> list[str]:
    """Given our job and task ids, return what to ask squeue or sacct about: an array by its own id
    (which lists all of its tasks) rather than task by task, so the command stays short at
    thousands of tasks."""
    return sorted({job_id.partition("_")[0] for job_id in job_ids}, key=_id_order)


def _id_order(job_id: str) -> tuple[int, int]:
    array_id, _, task = job_id.partition("_")
    return (int(array_id) if array_id.isdigit() else 0, int(task) if task.isdigit() else -1)
