"""The PBS executor (OpenPBS, PBS Professional): each job is one qsub job running `python -m dlcwatch.worker SPEC`.

NOT YET RUN AGAINST A REAL PBS SERVER: none can be installed on the machines dlcwatch is developed
on (no Debian package). What it sends and reads is PBS's documented interface, checked against
OpenPBS's source and real output recorded by others (tests/pbs_recorded/README.md), and its tests
run it against a stand-in for qsub/qstat/qdel/qselect (tests/pbs_standin.py) that replays those
formats and really runs the job scripts.

A poll costs one command whatever the number of jobs: `qstat -f -F json -t -x` over our arrays
(by their own id, which lists every subjob) and lone jobs. -x shows ended jobs with their exit
status where the server keeps history (job_history_enable, read once with `qstat -B -f -F json`);
where it does not, an ended job is "Unknown Job Id" (an ended subjob a bare X) and the worker's
result file decides. What is no scheduler's own (the server's health, the submit-limit pause, the
job script's place, retries by cause, the CPU fallback, judging by result file) comes from
ClusterExecutor, shared with SLURM and Grid Engine.

Job ids are PBS's own, as qsub prints them: '123.server' for a job, '123[4].server' for subjob 4 of
array '123[].server' (qdel takes both). Subjob i runs spec-i.json: arrays run -J 0-(N-1).
"""

from __future__ import annotations

import getpass
import logging
import re
import time
from pathlib import PurePosixPath

from dlcwatch.executors.base import ExecutorError, JobStatus, Outcome, Submission
from dlcwatch.executors.cluster import ClusterExecutor
from dlcwatch.executors.pbs import states as pbs_states
from dlcwatch.executors.pbs.script import render_pbs_script
from dlcwatch.executors.pbs.states import (
    PbsRecord,
    array_of,
    cannot_reach,
    history_enabled,
    history_refused,
    is_gone,
    largest_array,
    message_of,
    other_problems,
    parse_qstat_json,
    parse_server_json,
    queued_limit,
    short_id,
    split_id,
    status_of,
    subjob_id,
    unknown_ids,
)
from dlcwatch.run import Runner
from dlcwatch.store import Job

log = logging.getLogger("dlcwatch.executors.pbs.executor")

SCRIPT_NAME = "job.pbs"
_SUBMITTED = re.compile(r"\d+(\[\])?(\.\S+)?")  # qsub: "123.server", an array "123[].server"


class PbsExecutor(ClusterExecutor):
    name = "pbs"
    scheduler = "PBS"
    server = "server"
    states = pbs_states
    SCRIPT_NAME = SCRIPT_NAME
    FALLBACK_PLACE = "queue"

    def __init__(self, settings, *, runner: Runner | None = None, clock=time.time, files=None):
        super().__init__(settings, runner=runner, clock=clock, files=files)
        self._history: bool | None = None          # does the server keep ended jobs (qstat -x)? None: not known yet
        self._running_since: dict[str, float] = {}  # when a poll first saw each of our jobs running

    def render_script(self, submission: Submission, **array) -> str:
        return render_pbs_script(self.settings, submission, **array)

    def reconfigure(self, config) -> None:
        super().reconfigure(config)
        self._history = None

    def _command(self, program: str) -> str:
        """Return how to call one of PBS's commands: from settings.commands_dir, else by name (PATH)."""
        folder = self.settings.commands_dir
        return str(PurePosixPath(folder) / program) if folder else program

    def _user(self) -> str:
        return self.settings.host.rpartition("@")[0] if "@" in self.settings.host else getpass.getuser()

    # ------------------------------------------------------------------ limits

    def cluster_config(self) -> dict | None:
        """Return the server's attributes (`qstat -B -f -F json`), asked once and kept; None while unreachable."""
        config = self._read_config([self._command("qstat"), "-B", "-f", "-F", "json"], parse_server_json)
        if config is not None and self._history is None:
            self._history = history_enabled(config)
        return config

    def _job_limits(self) -> list[int | None] | None:
        """The server's max_queued for our user (each subjob counts)."""
        server = self.cluster_config()
        return None if server is None else [queued_limit(server, self._user())]

    def max_array_tasks(self) -> int:
        """Return how many jobs one array may carry: executor.pbs.array_tasks within the server's
        max_array_size and max_queued, and half the size of the last array a submit limit refused."""
        server = self.cluster_config() or {}
        return self._array_limit(largest_array(server), queued_limit(server, self._user()))

    # ------------------------------------------------------------------ submit

    def submit(self, submission: Submission) -> str:
        """Write the job's script next to its spec and submit it; return PBS's job id ('123.server').
        Raise ExecutorError with PBS's own words when it refuses or does not answer."""
        script = self._write_script(submission)
        return self._qsub(script, f"job {submission.job_id}", array=False)

    def submit_array(self, submission: Submission, count: int, *, throttle: int | None = None) -> list[str]:
        """Given a submission whose spec and log paths hold ARRAY_TASK_ID, submit one job array of count
        subjobs (qsub -J 0-(count-1)), at most throttle running at once (None: executor.pbs.
        array_throttle; 0: no limit); return the subjob ids in our task order ('123[0].server', …).
        Raise ExecutorError for fewer than two subjobs (PBS refuses them) or beyond max_array_size."""
        self._check_array_size(count, largest_array(self.cluster_config() or {}), "max_array_size")
        if count < 2:
            raise ExecutorError("a PBS job array needs at least two subjobs; submit one job instead")
        throttle = self.settings.array_throttle if throttle is None else throttle
        script = self._write_script(submission, array_size=count, array_throttle=throttle)
        array_id = self._qsub(script, f"job array {submission.job_id} ({count} subjobs)", array=True, count=count)
        return [subjob_id(array_id, index) for index in range(count)]

    def _qsub(self, script: str, what: str, *, array: bool, count: int = 1) -> str:
        """Submit a script; return the id qsub printed ('123.server', for an array '123[].server')."""
        result = self._submit_script([self._command("qsub"), script], what, count)
        answer = result.stdout.strip().splitlines()[-1].strip() if result.stdout.strip() else ""
        if not _SUBMITTED.fullmatch(answer) or answer.split(".")[0].endswith("[]") != array:
            raise ExecutorError(f"qsub accepted {what} but answered {result.stdout.strip()!r}, not "
                                f"{'an array' if array else 'a job'} id")
        return answer

    # ------------------------------------------------------------------ poll

    def poll(self, jobs: list[Job]) -> dict[int, JobStatus]:
        """Given active jobs, return the status of those PBS (or the worker) has news of, in one qstat call."""
        ours = [job for job in jobs if job.executor_job_id]
        if not ours or self.clock() < self._quiet_until:
            return {}
        if self._history is None and self.cluster_config() is None:  # read once: whether to ask with -x
            return {}  # the server did not answer that either
        asked = sorted({array_of(job.executor_job_id) or job.executor_job_id for job in ours}, key=_id_order)
        history = self._history is not False
        result = self._run([self._command("qstat"), "-f", "-F", "json", "-t", *(["-x"] if history else []), *asked])
        listed = self._listed(result, history)
        if listed is None:
            return {}
        records, gone = listed
        now = self.clock()
        statuses = {}
        for job in ours:
            key = short_id(job.executor_job_id)
            record = records.get(key)
            status = status_of(record) if record else None
            if status is None and record is not None:
                # It ended, but PBS kept no exit status (a subjob on a server without job history).
                status = self._judge_by_result(job, False, "") or self._ran_out_of_time(job, now) or JobStatus(
                    Outcome.LOST, f"PBS kept no exit status of job {job.executor_job_id} (the server keeps no job "
                                  "history) and its worker wrote no final result")
            elif status is None:
                # Unknown to PBS (ended on a server without history, or forgotten): the result file decides.
                definite = key in gone or short_id(array_of(job.executor_job_id) or "") in gone
                status = self._judge_by_result(job, definite, "qstat nor its job history" if history
                                               else "qstat (the server keeps no job history)")
                if status is not None and status.outcome is Outcome.LOST:
                    status = self._ran_out_of_time(job, now) or status
            if status is None:
                continue
            statuses[job.id] = status
            if status.outcome is Outcome.RUNNING:
                self._running_since.setdefault(job.executor_job_id, now)
        asked_about = {job.executor_job_id for job in ours}  # forget jobs the daemon no longer asks about
        self._running_since = {pbs_id: since for pbs_id, since in self._running_since.items() if pbs_id in asked_about}
        self._polled(ours, statuses)
        return statuses

    def _listed(self, result, history: bool) -> tuple[dict[str, PbsRecord], set[str]] | None:
        """Given qstat's answer, return (its records by short id, the short ids it says it does not
        know); None when it could not be asked (or refused -x: then the next poll asks without it)."""
        if history and history_refused(result.stderr):
            log.info("the PBS server keeps no job history (job_history_enable is off): ended jobs are judged by "
                     "their workers' result files")
            self._history = False
            return None
        try:
            records = parse_qstat_json(result.stdout)
        except ValueError as error:
            problem = message_of(result.stderr, result.stdout) if not result.ok else str(error)
            self._unreachable(problem, cannot_reach=cannot_reach(result, problem))
            return None
        problem = other_problems(result.stderr)
        if problem and (not result.ok and not records or cannot_reach(result, problem)):
            # e.g. "cannot connect to server": qstat still prints its JSON prologue, without jobs.
            self._unreachable(problem, cannot_reach=cannot_reach(result, problem))
            return None
        self._reachable()
        return {short_id(job_id): record for job_id, record in records.items()}, unknown_ids(result.stderr)

    def _ran_out_of_time(self, job: Job, now: float) -> JobStatus | None:
        """A job PBS kept no record of that ended without a result: if we saw it run for its whole
        walltime, PBS killed it for that (the exit status that would say so is gone with the job)."""
        since = self._running_since.get(job.executor_job_id)
        limit_s = 60 * int(job.resources.get("time_min", self.settings.time_limit_min))
        if since is None or now - since < limit_s:
            return None
        return JobStatus(Outcome.TIMEOUT, f"PBS keeps no record of job {job.executor_job_id} (no job history) and "
                                          f"its worker wrote no final result, after running its whole walltime "
                                          f"({limit_s // 60} min)")

    # ------------------------------------------------------------------ after a restart

    def adopt(self, jobs: list[Job]) -> dict[int, str]:
        """Given jobs recorded but never confirmed as submitted, return the PBS ids of those PBS has:
        found by the job name their script gave them among this user's jobs (qselect -N, one call per
        name: an array's subjob by its index). Raise ExecutorError while PBS does not answer."""
        wanted = self._adoption_wanted(jobs)
        if not wanted:
            return {}
        if self._history is None:
            self.cluster_config()
        found = {}
        for name in sorted({name for name, _, _ in wanted}):
            argv = [self._command("qselect"), "-N", name, "-u", self._user(), *(["-x"] if self._history else [])]
            result = self._run(argv)
            if not result.ok:
                raise self._adoption_failed("qselect", result, message_of(result.stderr, result.stdout))
            self._reachable()
            for pbs_id in result.stdout.split():
                try:
                    _, _, is_array, _ = split_id(pbs_id)
                except ValueError:
                    continue
                for (wanted_name, _, task), job_id in wanted.items():
                    if wanted_name != name or (task is None) == is_array:
                        continue
                    found[job_id] = subjob_id(pbs_id, task) if is_array else pbs_id
        return found

    # ------------------------------------------------------------------ cancel

    def cancel(self, job: Job) -> None:
        """Delete the job in PBS (qdel); a job that already ended is fine. Raise ExecutorError."""
        if job.executor_job_id:
            self._cancel_command([self._command("qdel"), job.executor_job_id], job, is_gone)


def _id_order(pbs_id: str) -> tuple[int, str]:
    sequence = pbs_id.split("[")[0].split(".")[0]
    return (int(sequence) if sequence.isdigit() else 0, pbs_id)
