"""What Grid Engine says about jobs, and what dlcwatch makes of it (pure functions, no I/O).

Three sources, asked in this order by the Grid Engine executor:
- `qstat -xml` knows our pending and running jobs; an ended job leaves it at once;
- `qacct -j` reads the accounting file, where the execd's record of an ended job lands within
  reporting_params' flush_time (15 s by default). A job deleted while pending gets no record at all;
- the worker's result file, for what neither knows.

Every qstat state (sge_status(5): a string of letters) is mapped to an Outcome below, explicitly;
a state missing from the table is reported as not ended, never guessed to be a failure. An
ended job's outcome comes from qacct's `failed` code (why Grid Engine ended it) and `exit_status`.
"""

from __future__ import annotations

import re
import xml.etree.ElementTree as ElementTree
from dataclasses import dataclass

from dlcwatch.executors.base import JobStatus, Outcome, signal_name
from dlcwatch.executors.cluster import command_unreachable, one_line_message, says_any
from dlcwatch.run import CommandResult

# Every job state qstat shows (sge_status(5), "Job state" table), and what it means here.
STATE_OUTCOMES: dict[str, Outcome] = {
    # pending
    "qw": Outcome.PENDING, "hqw": Outcome.PENDING, "hRwq": Outcome.PENDING,
    # running; t: being sent to the execd; R: restarted (its host failed; -r y)
    "r": Outcome.RUNNING, "t": Outcome.RUNNING, "Rr": Outcome.RUNNING, "Rt": Outcome.RUNNING,
    # suspended by a person (s), with its queue (S) or for a load threshold (T): resumes by itself
    "s": Outcome.RUNNING, "ts": Outcome.RUNNING, "S": Outcome.RUNNING, "tS": Outcome.RUNNING,
    "T": Outcome.RUNNING, "tT": Outcome.RUNNING, "Rs": Outcome.RUNNING, "Rts": Outcome.RUNNING,
    "RS": Outcome.RUNNING, "RtS": Outcome.RUNNING, "RT": Outcome.RUNNING, "RtT": Outcome.RUNNING,
    # error: Grid Engine could not start it (no such folder, unwritable output, …) and keeps it
    # until a person clears or deletes it; it will never run by itself
    "Eqw": Outcome.FAILED, "Ehqw": Outcome.FAILED, "EhRqw": Outcome.FAILED,
    # being deleted (qdel); its accounting record follows
    "dr": Outcome.RUNNING, "dt": Outcome.RUNNING, "dRr": Outcome.RUNNING, "dRt": Outcome.RUNNING,
    "ds": Outcome.RUNNING, "dS": Outcome.RUNNING, "dT": Outcome.RUNNING, "dRs": Outcome.RUNNING,
    "dRS": Outcome.RUNNING, "dRT": Outcome.RUNNING,
}
STATE_WORDS = {"h": "held", "R": "restarted", "s": "suspended", "S": "queue suspended",
               "T": "suspended at a load threshold", "t": "starting", "d": "being deleted", "E": "error"}

# qacct's `failed` codes (sge_shepherd / qacct(1)) and what they mean here. 0: the job script ran
# and ended by itself; its exit_status says how.
FAILED_TIME_OR_MEMORY = 37   # "qmaster enforced h_rt, h_cpu, or h_vmem limit"
FAILED_AFTER_JOB = 100       # "assumedly after job": killed by a signal once it ran (qdel does this)
FAILED_RESCHEDULED = 25      # "rescheduling": its host failed and it is tried elsewhere
# 1-16 and 18-21: the shepherd failed before, around or after the job (prolog, pe start, epilog,
# writing the exit status…): a fault of the host, not of the job; the same again is fine.
FAILED_ON_THE_HOST = frozenset({*range(1, 17), 18, 19, 20, 21})

# What qsub, qstat, qacct and qdel print when the qmaster does not answer.
UNREACHABLE_MARKERS = ("unable to contact qmaster", "unable to send message to qmaster", "commlib error",
                       "can't unpack gdi request", "cell directory", "got select error", "connection refused")
SUBMIT_LIMIT_MARKERS = ("jobs are allowed per user", "max_u_jobs", "jobs are allowed per cluster",
                        "max_jobs")
UNKNOWN_JOB_MARKERS = ("does not exist", "not found")


@dataclass(frozen=True)
class SgeRecord:
    """One job (or array task) as qstat or qacct reports it."""

    job_id: str                 # "123", or "123.4" for task 4 of an array
    state: str = ""             # qstat's letters, e.g. "qw"; "" for a qacct record
    failed: int | None = None   # qacct: why Grid Engine ended it (0: it ended by itself)
    failed_text: str = ""       # qacct: the words after the code
    exit_status: int | None = None
    name: str = ""              # JB_name / jobname
    wallclock_s: float = 0.0    # qacct ru_wallclock
    category: str = ""          # qacct: the resources it asked for, e.g. "-l h_rt=60,h_vmem=1G -pe smp 2"


def parse_qstat_xml(text: str) -> dict[str, SgeRecord]:
    """Given `qstat -xml` output, return a record per job and per array task, by id ('123',
    '123.4'). Pending tasks come as one entry with a task list ('3-6:1', '3,5'); each is expanded.
    Raise ValueError for output that is not qstat's XML."""
    try:
        root = ElementTree.fromstring(text)
    except ElementTree.ParseError as error:
        raise ValueError(f"qstat printed no XML ({error})") from error
    records = {}
    for entry in root.iter("job_list"):
        number = (entry.findtext("JB_job_number") or "").strip()
        if not number.isdigit():
            continue
        state = (entry.findtext("state") or "").strip()
        name = (entry.findtext("JB_name") or "").strip()
        tasks = (entry.findtext("tasks") or "").strip()
        ids = [f"{number}.{task}" for task in expand_tasks(tasks)] if tasks else [number]
        for job_id in ids:
            records[job_id] = SgeRecord(job_id, state=state, name=name)
    return records


def expand_tasks(text: str) -> list[int]:
    """Given qstat's task list ('4', '3-6:1', '1,3', '1-7:2,10'), return the task numbers. Raise ValueError."""
    tasks = []
    for part in text.split(","):
        match = re.fullmatch(r"(\d+)(?:-(\d+)(?::(\d+))?)?", part.strip())
        if not match:
            raise ValueError(f"not a Grid Engine task list: {text!r}")
        first, last, step = int(match[1]), int(match[2] or match[1]), int(match[3] or 1)
        tasks.extend(range(first, last + 1, max(1, step)))
    return tasks


def parse_qacct(text: str) -> dict[str, SgeRecord]:
    """Given `qacct -j` output (one block per job or task, each after a line of '='), return records
    by id ('123', '123.4'). A job run again after its host failed has several; the last counts."""
    records = {}
    for block in re.split(r"^=+\s*$", text, flags=re.MULTILINE):
        fields = {}
        for line in block.splitlines():
            key, _, value = line.partition(" ")
            if key:
                fields[key] = value.strip()
        number = fields.get("jobnumber", "")
        if not number.isdigit():
            continue
        task = fields.get("taskid", "undefined")
        job_id = f"{number}.{task}" if task.isdigit() else number
        failed, _, failed_text = fields.get("failed", "").partition(":")
        records[job_id] = SgeRecord(job_id, failed=_number(failed), failed_text=failed_text.strip(),
                                    exit_status=_number(fields.get("exit_status", "").split(" ")[0]),
                                    name=fields.get("jobname", ""),
                                    wallclock_s=_seconds(fields.get("ru_wallclock", "")),
                                    category=fields.get("category", ""))
    return records


def status_of(record: SgeRecord) -> JobStatus:
    """Given what qstat or qacct says about a job, return its status for the daemon."""
    if record.state:
        return _status_from_qstat(record)
    return _status_from_qacct(record)


def _status_from_qstat(record: SgeRecord) -> JobStatus:
    outcome = STATE_OUTCOMES.get(record.state)
    words = ", ".join(STATE_WORDS[letter] for letter in dict.fromkeys(record.state) if letter in STATE_WORDS)
    if outcome is None:
        return JobStatus(Outcome.PENDING, f"Grid Engine state {record.state} is not known to dlcwatch; waiting")
    if outcome is Outcome.FAILED:
        return JobStatus(outcome, f"Grid Engine could not start it (state {record.state}; `qstat -j "
                                  f"{record.job_id.split('.')[0]}` says why)")
    if outcome is Outcome.RUNNING and record.state == "r":
        return JobStatus(outcome, "")
    return JobStatus(outcome, f"{record.state}" + (f" ({words})" if words else ""))


def _status_from_qacct(record: SgeRecord) -> JobStatus:
    code, failed = record.exit_status, record.failed
    why = f"failed {failed}: {record.failed_text}" if record.failed_text else f"failed {failed}"
    killed = code is not None and code > 128
    if failed == 0:
        if code == 0:
            return JobStatus(Outcome.COMPLETED, "", 0)
        if killed:
            return JobStatus(Outcome.FAILED, f"killed by {signal_name(code - 128)}", -(code - 128))
        return JobStatus(Outcome.FAILED, f"exit code {code}", code)
    if failed == FAILED_TIME_OR_MEMORY:
        return JobStatus(_time_or_memory(record), why, code)
    if failed == FAILED_AFTER_JOB and killed:
        return JobStatus(Outcome.CANCELLED, f"{why}, killed by {signal_name(code - 128)} (qdel)", -(code - 128))
    if failed == FAILED_RESCHEDULED or failed in FAILED_ON_THE_HOST:
        return JobStatus(Outcome.NODE_FAIL, why, code)
    return JobStatus(Outcome.FAILED, why, code)


def _time_or_memory(record: SgeRecord) -> Outcome:
    """failed 37 says 'h_rt, h_cpu or h_vmem'; the category says which limits it had and the wall
    clock whether it used up its time."""
    limits = category_limits(record.category)
    h_rt = limits.get("h_rt")
    if h_rt is not None and record.wallclock_s >= h_rt - 1:
        return Outcome.TIMEOUT
    if "h_vmem" in limits:
        return Outcome.OUT_OF_MEMORY
    return Outcome.TIMEOUT


def category_limits(category: str) -> dict[str, float]:
    """Given qacct's category ('-l h_rt=120,mem_free=1G -pe smp 2'), return its -l requests; h_rt in seconds."""
    limits: dict[str, float] = {}
    for match in re.finditer(r"-l\s+(\S+)", category):
        for request in match[1].split(","):
            key, _, value = request.partition("=")
            if key == "h_rt":
                limits[key] = parse_time(value)
            elif key:
                limits[key] = 0.0
    return limits


def parse_time(text: str) -> float:
    """Given a Grid Engine time ('90', '0:1:30', '1:30:00'), return seconds."""
    seconds = 0.0
    for part in text.split(":"):
        seconds = seconds * 60 + (float(part) if part.replace(".", "", 1).isdigit() else 0.0)
    return seconds


def _seconds(text: str) -> float:
    number = re.match(r"[\d.]+", text or "")
    return float(number[0]) if number else 0.0


def _number(text: str) -> int | None:
    text = text.strip()
    return int(text) if text.lstrip("-").isdigit() else None


def message_of(stderr: str, stdout: str = "") -> str:
    """Given a Grid Engine command's output, return its message for a person, on one line."""
    return one_line_message(stderr or stdout, prefixes=("Unable to run job: ", "error: "), skip=("Exiting.",))


def cannot_reach(result: CommandResult, problem: str | None = None) -> bool:
    """Given a failed Grid Engine command, return whether the qmaster (or the submit host) did not
    answer, as opposed to refusing: ssh could not get there, the command hung, or it says so."""
    return command_unreachable(result, message_of(result.stderr, result.stdout) if problem is None else problem,
                               UNREACHABLE_MARKERS)


def is_submit_limit(message: str) -> bool:
    return says_any(message, SUBMIT_LIMIT_MARKERS)


def is_unknown_job(message: str) -> bool:
    return says_any(message, UNKNOWN_JOB_MARKERS)


def is_no_accounting_yet(message: str) -> bool:
    """qacct before the first job ever ended: the accounting file does not exist yet."""
    text = message.lower()
    return "accounting" in text and "no such file or directory" in text


def parse_global_config(text: str) -> dict[str, str]:
    """Given `qconf -sconf` output ('name   value' lines), return its values by name."""
    values = {}
    for line in text.splitlines():
        key, _, value = line.strip().partition(" ")
        if key and not key.startswith("#"):
            values[key] = value.strip()
    return values


def config_limit(config: dict[str, str], key: str) -> int:
    """Given parsed `qconf -sconf`, return a limit such as max_u_jobs; 0 when there is none."""
    value = config.get(key, "")
    return int(value) if value.isdigit() else 0
