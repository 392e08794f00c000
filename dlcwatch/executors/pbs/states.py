"""What PBS Professional / OpenPBS says about jobs, and what dlcwatch makes of it (pure functions, no I/O).

One source per poll: `qstat -f -F json -t [-x] IDS`, one JSON object whose "Jobs" holds every job,
array and subjob asked for, by id ('123.server', '123[].server', '123[4].server'). With -x (only
where the server keeps history: job_history_enable) it also holds ended jobs, state F (X for a
subjob), with their Exit_status and substate. Without history an ended job is unknown to qstat
("Unknown Job Id"), and an ended subjob is listed as X with no exit status at all: then the
worker's result file decides.

Every job state (qstat(1B): B E F H M Q R S T U W X) is mapped to an Outcome below, explicitly; a
state missing from the table is reported as not ended, never guessed to be a failure. How an ended
job ended comes from, in this order:
- substate 91 (TERMINATED): deleted with qdel, by a person or an admin;
- Exit_status < 0: PBS's own code (JOB_EXEC_* in OpenPBS src/include/job.h): -29 the walltime
  was exceeded, -27/-26 mem/vmem (MoM's own enforcement), codes of a host that failed under the
  job, and codes of a job PBS refused to run;
- Exit_status >= 256: killed by signal Exit_status - 256 (what MoM records for a job whose top
  process died of a signal; 271 = SIGTERM is qdel's). A kill with the cgroup hook's "mem limit
  exceeded" in resources_used.diag_messages, or SIGKILL at its memory request, is a memory kill;
  one at its walltime (PBS before OpenPBS 22.05 had no -29) a time-limit kill;
- otherwise the worker's exit code (0 completed).
tests/pbs_recorded/README.md says where each code and sample comes from.
"""

from __future__ import annotations

import json
import re
import signal as signals
from dataclasses import dataclass

from dlcwatch.executors.base import JobStatus, Outcome, signal_name
from dlcwatch.executors.cluster import command_unreachable, one_line_message, says_any
from dlcwatch.run import CommandResult

# Every job state qstat shows (qstat(1B), "The job's state"), and what it means here.
STATE_OUTCOMES: dict[str, Outcome | None] = {
    "Q": Outcome.PENDING,   # queued
    "H": Outcome.PENDING,   # held (by a person, or the server after repeated start failures)
    "W": Outcome.PENDING,   # waiting for its start time, or after a failed stage-in
    "T": Outcome.PENDING,   # being moved to a new location
    "R": Outcome.RUNNING,
    "E": Outcome.RUNNING,   # exiting after having run: its exit status follows
    "S": Outcome.RUNNING,   # suspended (preempted by suspension, or by an admin): resumes by itself
    "U": Outcome.RUNNING,   # suspended while its workstation is busy (cycle harvesting): resumes
    "B": Outcome.RUNNING,   # an array with at least one subjob running (only arrays, never ours)
    "F": None,              # finished: Exit_status and substate say how
    "X": None,              # a subjob that finished or was deleted: the same
    "M": Outcome.LOST,      # moved to another server: dlcwatch cannot follow it there
}
STATE_WORDS = {"Q": "queued", "H": "held", "W": "waiting for its start time", "T": "being moved",
               "E": "exiting", "S": "suspended", "U": "suspended (workstation busy)", "B": "array begun"}

SUBSTATE_TERMINATED = 91   # deleted by qdel (OpenPBS job.h JOB_SUBSTATE_TERMINATED)
SUBSTATE_FINISHED = 92
SUBSTATE_FAILED = 93
SIGNAL_BASE = 256          # Exit_status of a job killed by signal N is 256 + N (MoM: WTERMSIG + 0x100)

# PBS's own exit statuses (OpenPBS src/include/job.h, JOB_EXEC_*), by what dlcwatch does about them.
EXEC_KILL_WALLTIME = -29
EXEC_KILLED_FOR_MEMORY = {-27: "mem", -26: "vmem"}
# The host under the job failed or PBS requeued it: the same again is fine.
EXEC_HOST_FAILED = {
    -1: "PBS could not start it on the host (before its files were staged)",
    -2: "PBS could not start it on the host (after its files were staged)",
    -3: "PBS could not start it on the host, to be tried again",
    -4: "its host's MoM restarted and aborted it",
    -5: "its host's MoM restarted and aborted it (checkpointed)",
    -6: "its host's MoM restarted and aborted it (checkpointed, may migrate)",
    -7: "its restart from a checkpoint failed",
    -11: "PBS requeued it to run again",
    -14: "PBS requeued it: a sister host failed",
    -16: "a hook refused to start it on that host, to be tried later",
    -18: "a hook requeued it",
    -20: "PBS lost contact with its host (mother superior)",
    -22: "a hook failed (an exception or a timeout)",
    -30: "its hosts could not be joined",
}
EXEC_PREEMPTED = {-12: "checkpointed and killed (preempted)", -15: "requeued to restart from a checkpoint"}
# PBS will not run it as asked: more of the same cannot help.
EXEC_REFUSED = {
    -10: "its user or group is not valid on the host",
    -13: "a bad password",
    -17: "a hook refused it",
    -19: "a hook deleted it",
    -21: "a security check of PBS's folders on the host failed",
    -23: "no Kerberos credentials",
    -24: "it used more CPUs than it asked for (burst)",
    -25: "it used more CPUs than it asked for (sum)",
    -28: "it used up its CPU time (cput)",
}

# What qsub, qstat, qdel and qselect print (on stderr) when the server does not answer.
UNREACHABLE_MARKERS = ("cannot connect to server", "connection refused", "no route to host", "connection timed out",
                       "communication failure", "could not connect to server", "pbs_iff")
# qsub refused for a limit on the jobs of a user, group or project (max_queued; OpenPBS pbs_messages.c).
SUBMIT_LIMIT_MARKERS = ("would exceed", "maximum number of jobs")
UNKNOWN_JOB_MARKER = "unknown job id"
NO_HISTORY_MARKER = "not configured to maintain job history"
# qdel of a job that already ended (history), that PBS forgot, or that is exiting: it is ending anyway.
GONE_MARKERS = ("unknown job id", "job has finished", "request invalid for state of job")
_PREFIXES = ("qsub: ", "qstat: ", "qdel: ", "qselect: ")
_UNKNOWN_JOB = re.compile(r"unknown job id\s+(\S+)", re.IGNORECASE)
_JOB_ID = re.compile(r"(?P<sequence>\d+)(?P<array>\[(?P<index>\d*)\])?(?P<server>\.\S+)?")
_LIMIT = re.compile(r"\[\s*(?P<kind>[ugpo]):(?P<who>[^=\]]+)=(?P<value>\d+)\s*\]")


@dataclass(frozen=True)
class PbsRecord:
    """One job, array or subjob as `qstat -f -F json` reports it."""

    job_id: str                       # "123.server", "123[].server", "123[4].server"
    state: str                        # job_state letter
    substate: int | None = None
    exit_status: int | None = None
    name: str = ""                    # Job_Name
    owner: str = ""                   # Job_Owner, user@host
    comment: str = ""
    walltime_s: float | None = None   # resources_used.walltime
    walltime_limit_s: float | None = None  # Resource_List.walltime
    mem_kb: int | None = None         # resources_used.mem
    mem_limit_kb: int | None = None   # Resource_List.mem
    diagnosis: str = ""               # resources_used.diag_messages (the cgroup hook's words)


def parse_qstat_json(text: str) -> dict[str, PbsRecord]:
    """Given `qstat -f -F json` output, return a record per job, array and subjob by id. Output with
    no "Jobs" (none of them known) gives {}. Raise ValueError for output that is not qstat's JSON."""
    try:
        data = json.loads(text)  # PBS before 22.05 could print NaN or Infinity for odd values: json takes them
    except ValueError as error:
        raise ValueError(f"qstat printed no JSON ({error})") from error
    if not isinstance(data, dict) or "pbs_version" not in data and "Jobs" not in data:
        raise ValueError("qstat printed JSON without pbs_version or Jobs")
    records = {}
    for job_id, attributes in (data.get("Jobs") or {}).items():
        if not isinstance(attributes, dict):
            continue
        used = attributes.get("resources_used") or {}
        asked = attributes.get("Resource_List") or {}
        records[job_id] = PbsRecord(
            job_id, state=str(attributes.get("job_state", "")), substate=_integer(attributes.get("substate")),
            exit_status=_integer(attributes.get("Exit_status")), name=str(attributes.get("Job_Name", "")),
            owner=str(attributes.get("Job_Owner", "")), comment=str(attributes.get("comment", "")),
            walltime_s=parse_duration(used.get("walltime")), walltime_limit_s=parse_duration(asked.get("walltime")),
            mem_kb=parse_size_kb(used.get("mem")), mem_limit_kb=parse_size_kb(asked.get("mem")),
            diagnosis=str(used.get("diag_messages", "")))
    return records


def status_of(record: PbsRecord) -> JobStatus | None:
    """Given what qstat says about a job or subjob, return its status for the daemon; None for one that
    ended without an exit status PBS kept (a subjob without history, a job deleted before it ran
    that PBS did not mark terminated): the worker's result file has to decide."""
    if record.state not in STATE_OUTCOMES:
        return JobStatus(Outcome.PENDING, f"PBS state {record.state or '(none)'} is not known to dlcwatch; waiting")
    outcome = STATE_OUTCOMES[record.state]
    if outcome is Outcome.LOST:
        return JobStatus(outcome, "PBS moved it to another server, where dlcwatch cannot follow it")
    if outcome is not None:
        if record.state == "R":
            return JobStatus(outcome, "")
        detail = STATE_WORDS[record.state] + (f" ({record.comment})" if outcome is Outcome.PENDING and record.comment
                                              else "")
        return JobStatus(outcome, detail)
    return _ended(record)


def _ended(record: PbsRecord) -> JobStatus | None:
    code = record.exit_status
    if record.substate == SUBSTATE_TERMINATED:
        killed = f", killed by {signal_name(code - SIGNAL_BASE)}" if code is not None and code > SIGNAL_BASE else ""
        return JobStatus(Outcome.CANCELLED, f"deleted (qdel){killed}", _signal_code(code))
    if code is None:
        return None
    if code == 0:
        return JobStatus(Outcome.COMPLETED, "", 0)
    if code < 0:
        return _pbs_code(record, code)
    if code > SIGNAL_BASE:
        return _killed(record, code - SIGNAL_BASE)
    return JobStatus(Outcome.FAILED, f"exit code {code}", code)


def _pbs_code(record: PbsRecord, code: int) -> JobStatus:
    said = f"PBS exit status {code}"
    if code == EXEC_KILL_WALLTIME:
        return JobStatus(Outcome.TIMEOUT, f"{said}: it used up its walltime")
    if code in EXEC_KILLED_FOR_MEMORY:
        return JobStatus(Outcome.OUT_OF_MEMORY, f"{said}: it used more {EXEC_KILLED_FOR_MEMORY[code]} than it "
                                                "asked for")
    if code in EXEC_HOST_FAILED:
        return JobStatus(Outcome.NODE_FAIL, f"{said}: {EXEC_HOST_FAILED[code]}")
    if code in EXEC_PREEMPTED:
        return JobStatus(Outcome.PREEMPTED, f"{said}: {EXEC_PREEMPTED[code]}")
    if code in EXEC_REFUSED:
        return JobStatus(Outcome.FAILED, f"{said}: {EXEC_REFUSED[code]}")
    return JobStatus(Outcome.FAILED, f"{said} (a code of PBS's own dlcwatch does not know)"
                                     + (f"; {record.comment}" if record.comment else ""))


def _killed(record: PbsRecord, number: int) -> JobStatus:
    """A job whose top process a signal killed: at its memory or walltime, PBS (or the cgroup hook)
    did; otherwise something else did, and the worker's result says what it finished."""
    how = f"killed by {signal_name(number)}"
    if "mem limit exceeded" in record.diagnosis.lower() or (
            number == signals.SIGKILL and record.mem_kb and record.mem_limit_kb
            and record.mem_kb >= record.mem_limit_kb):
        return JobStatus(Outcome.OUT_OF_MEMORY, f"{how} at its memory limit", -number)
    if record.walltime_s is not None and record.walltime_limit_s and record.walltime_s >= record.walltime_limit_s:
        return JobStatus(Outcome.TIMEOUT, f"{how} at its walltime", -number)
    return JobStatus(Outcome.FAILED, how, -number)


def _signal_code(code: int | None) -> int | None:
    return -(code - SIGNAL_BASE) if code is not None and code > SIGNAL_BASE else code


# ---------------------------------------------------------------------- job ids

def split_id(pbs_id: str) -> tuple[str, int | None, bool, str]:
    """Given a PBS job id, return (sequence number, subjob index or None, whether it names an array,
    '.server' or ''): '123[4].srv' -> ('123', 4, False, '.srv'); '123[].srv' -> ('123', None, True, '.srv')."""
    match = _JOB_ID.fullmatch(pbs_id.strip())
    if not match:
        raise ValueError(f"not a PBS job id: {pbs_id!r}")
    index = match["index"]
    return match["sequence"], int(index) if index else None, match["array"] is not None and not index, \
        match["server"] or ""


def short_id(pbs_id: str) -> str:
    """Given a job id, return it without its server: '123[4].srv.example.org' -> '123[4]' (ids are
    unique within one server, and the server's name may be written short or long)."""
    return pbs_id.strip().split(".", 1)[0]


def subjob_id(array_id: str, index: int) -> str:
    """Given an array's id ('123[].srv') and one of its indexes, return the subjob's id ('123[4].srv')."""
    sequence, _, is_array, server = split_id(array_id)
    if not is_array:
        raise ValueError(f"{array_id!r} is not the id of a PBS job array")
    return f"{sequence}[{index}]{server}"


def array_of(pbs_id: str) -> str | None:
    """Given a subjob id ('123[4].srv'), return its array's ('123[].srv'); None for a job that is no subjob."""
    sequence, index, _, server = split_id(pbs_id)
    return f"{sequence}[]{server}" if index is not None else None


def task_index(pbs_id: str) -> int | None:
    """Given a job or subjob id, return the subjob index (dlcwatch's task index: arrays run -J 0-N)."""
    return split_id(pbs_id)[1]


# ---------------------------------------------------------------------- what the commands print

def message_of(stderr: str, stdout: str = "") -> str:
    """Given a PBS command's output, return its message for a person, on one line."""
    return one_line_message(stderr or stdout, prefixes=_PREFIXES)


def cannot_reach(result: CommandResult, problem: str | None = None) -> bool:
    """Given a failed PBS command, return whether the server (or the login node) did not answer, as
    opposed to refusing: ssh could not get there, the command hung, or PBS says so itself."""
    return command_unreachable(result, message_of(result.stderr, result.stdout) if problem is None else problem,
                               UNREACHABLE_MARKERS)


def is_submit_limit(message: str) -> bool:
    return says_any(message, SUBMIT_LIMIT_MARKERS)


def is_gone(message: str) -> bool:
    return says_any(message, GONE_MARKERS)


def unknown_ids(stderr: str) -> set[str]:
    """Given qstat's stderr, return the ids it says it does not know ('Unknown Job Id 123.srv'), short."""
    return {short_id(match[1]) for match in _UNKNOWN_JOB.finditer(stderr)}


def history_refused(stderr: str) -> bool:
    """Given qstat's or qselect's stderr, return whether it refused -x: the server keeps no history."""
    return NO_HISTORY_MARKER in stderr.lower()


def other_problems(stderr: str) -> str:
    """Given qstat's stderr, return what it said besides unknown ids and a refused -x ('' if nothing)."""
    lines = [line for line in stderr.splitlines() if line.strip() and UNKNOWN_JOB_MARKER not in line.lower()
             and NO_HISTORY_MARKER not in line.lower()]
    return message_of("\n".join(lines)) if lines else ""


# ---------------------------------------------------------------------- the server's configuration

def parse_server_json(text: str) -> dict:
    """Given `qstat -B -f -F json` output, return the server's attributes (the first server's)."""
    try:
        data = json.loads(text)
    except ValueError:
        return {}
    servers = data.get("Server") if isinstance(data, dict) else None
    if isinstance(servers, dict):
        for attributes in servers.values():
            if isinstance(attributes, dict):
                return attributes
    return {}


def history_enabled(server: dict) -> bool | None:
    """Given the server's attributes, return whether it keeps ended jobs (job_history_enable); None
    when they could not be read."""
    if not server:
        return None
    return str(server.get("job_history_enable", "False")).strip().lower() in ("true", "1", "t", "y", "yes")


def largest_array(server: dict) -> int:
    """Given the server's attributes, return the most subjobs one array may have (max_array_size;
    PBS's default is 10000)."""
    value = _integer(server.get("max_array_size"))
    return value if value and value > 0 else 10000


def queued_limit(server: dict, user: str) -> int:
    """Given the server's attributes and our user, return the most jobs (subjobs count one each) it
    lets us have queued and running (max_queued: [u:user=N], [u:PBS_GENERIC=N], [o:PBS_ALL=N]); 0: none."""
    text = server.get("max_queued", "")
    text = " ".join(text) if isinstance(text, list) else str(text)
    limits = {}
    for match in _LIMIT.finditer(text):
        limits[(match["kind"], match["who"].strip().strip("'\""))] = int(match["value"])
    mine = limits.get(("u", user), limits.get(("u", "PBS_GENERIC")))
    candidates = [value for value in (mine, limits.get(("o", "PBS_ALL"))) if value]
    return min(candidates, default=0)


# ---------------------------------------------------------------------- values

def parse_duration(value) -> float | None:
    """Given a PBS duration ('01:30:00', '90:00', 5400, '5400'), return seconds; None if absent."""
    if value is None or value == "":
        return None
    if isinstance(value, (int, float)):
        return float(value)
    seconds = 0.0
    for part in str(value).split(":"):
        try:
            seconds = seconds * 60 + float(part)
        except ValueError:
            return None
    return seconds


_UNITS = {"b": 1 / 1024, "w": 8 / 1024, "kb": 1, "kw": 8, "mb": 1024, "mw": 8 * 1024, "gb": 1024 ** 2,
          "gw": 8 * 1024 ** 2, "tb": 1024 ** 3, "tw": 8 * 1024 ** 3, "pb": 1024 ** 4}


def parse_size_kb(value) -> int | None:
    """Given a PBS size ('7060kb', '16gb', '1500mb', a bare number of bytes), return kilobytes."""
    if value is None or value == "":
        return None
    match = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*([kmgtp]?[bw])?\s*", str(value), re.IGNORECASE)
    if not match:
        return None
    return int(float(match[1]) * _UNITS[(match[2] or "b").lower()])


def _integer(value) -> int | None:
    if isinstance(value, bool):
        return None
    if isinstance(value, (int, float)):
        return int(value)
    text = str(value).strip() if value is not None else ""
    return int(text) if text.lstrip("-").isdigit() else None
