"""What SLURM says about jobs, and what dlcwatch makes of it (pure functions, no I/O).

Three sources, asked in this order by the SLURM executor:
- `squeue` knows pending, running and recently ended jobs (for MinJobAge seconds, 300 by default);
- `sacct` knows every job, if the cluster keeps accounting;
- `scontrol show config` tells the cluster's limits (read once).

Every SLURM job state is mapped to an Outcome below, explicitly: a state missing from the table
is reported as not ended, never guessed to be a failure. The retry policy by cause (more time after
a TIMEOUT, more memory after OUT_OF_MEMORY, the same again after a node failure or preemption) is
every cluster executor's: dlcwatch.executors.cluster.next_resources.
"""

from __future__ import annotations

from dataclasses import dataclass

from dlcwatch.executors.base import JobStatus, Outcome, signal_name
# The retry policy by cause is every cluster executor's; importable from here as before.
from dlcwatch.executors.cluster import RETRY_BY_CAUSE, default_resources, gb_to_mb, next_resources  # noqa: F401
from dlcwatch.executors.cluster import command_unreachable, one_line_message, says_any
from dlcwatch.run import CommandResult

# squeue -O: full values (":" without a width), "|" after each; the reason goes last, so a
# reason with a "|" in it cannot shift the other columns.
SQUEUE_FORMAT = "JobArrayID:|,State:|,exit_code:|,Reason:|"
SACCT_FORMAT = "JobID,State,ExitCode,Reason"

# Every state SLURM reports for a job (squeue long names, sacct names), and what it means here.
STATE_OUTCOMES: dict[str, Outcome] = {
    # Not started yet.
    "PENDING": Outcome.PENDING,
    "CONFIGURING": Outcome.PENDING,      # nodes allocated, still booting: the worker has not started
    "POWER_UP_NODE": Outcome.PENDING,
    "REQUEUED": Outcome.PENDING,         # going back to the queue (e.g. after preemption), same id
    "REQUEUE_FED": Outcome.PENDING,
    "REQUEUE_HOLD": Outcome.PENDING,
    "RESV_DEL_HOLD": Outcome.PENDING,
    # Started, not ended: the worker may already have finished some videos.
    "RUNNING": Outcome.RUNNING,
    "COMPLETING": Outcome.RUNNING,       # ending; the final state (and exit code) follows
    "SUSPENDED": Outcome.RUNNING,        # paused by an admin or the scheduler; resumes by itself
    "STOPPED": Outcome.RUNNING,          # SIGSTOPped; resumes by itself
    "RESIZING": Outcome.RUNNING,
    "SIGNALING": Outcome.RUNNING,
    "STAGE_OUT": Outcome.RUNNING,
    "UPDATE_DB": Outcome.RUNNING,
    # Ended.
    "COMPLETED": Outcome.COMPLETED,      # exit code 0
    "FAILED": Outcome.FAILED,            # non-zero exit (the worker's result says which videos)
    "CANCELLED": Outcome.CANCELLED,      # scancel, by a person or an admin
    "TIMEOUT": Outcome.TIMEOUT,
    "OUT_OF_MEMORY": Outcome.OUT_OF_MEMORY,
    "NODE_FAIL": Outcome.NODE_FAIL,
    "BOOT_FAIL": Outcome.NODE_FAIL,      # the node never came up: same again is fine
    "PREEMPTED": Outcome.PREEMPTED,
    "DEADLINE": Outcome.FAILED,          # could not end before its --deadline: more time is no fix
    "SPECIAL_EXIT": Outcome.FAILED,      # requeued and held by a site's epilog for a special exit
    "REVOKED": Outcome.LOST,             # federation: a sibling job runs it on another cluster
}

# What sbatch, squeue and scancel print when the controller does not answer.
# (A login node that does not answer, or a command that hangs, is told by the runner's CommandResult.)
UNREACHABLE_MARKERS = ("unable to contact slurm controller", "socket timed out", "connection refused",
                       "connection timed out", "zero bytes were transmitted")
# What sbatch says when a per-user or per-association submit limit (MaxSubmitJobs) is reached.
SUBMIT_LIMIT_MARKERS = ("maxsubmitjob", "job submit limit", "assocmaxsubmitjoblimit")
UNKNOWN_JOB_MARKER = "invalid job id specified"
ACCOUNTING_DISABLED_MARKER = "accounting storage is disabled"


@dataclass(frozen=True)
class SlurmRecord:
    """One job as squeue or sacct reports it."""

    job_id: str               # "123", or "123_4" for a task of a job array
    state: str                # e.g. "FAILED"; sacct's "CANCELLED by 0" is cut to "CANCELLED"
    exit_code: int | None = None
    signal: int | None = None
    reason: str = ""          # why it waits or why it ended, e.g. "Resources", "NonZeroExitCode"


def parse_squeue(text: str) -> dict[str, SlurmRecord]:
    """Given the output of `squeue --noheader --array --Format=SQUEUE_FORMAT`, return records by job id."""
    records = {}
    for line in text.splitlines():
        fields = line.split("|", 3)
        if len(fields) < 4 or not fields[0].strip():
            continue
        job_id, state, status, reason = (field.strip() for field in fields)
        code, signal_number = _wait_status(status)
        reason = reason[:-1] if reason.endswith("|") else reason
        records[job_id] = SlurmRecord(job_id, _state_name(state), code, signal_number, _reason(reason))
    return records


def parse_sacct(text: str) -> dict[str, SlurmRecord]:
    """Given the output of `sacct --noheader --parsable2 --allocations --format=SACCT_FORMAT`, return
    records by job id (the allocation lines only; job steps are ignored)."""
    records = {}
    for line in text.splitlines():
        fields = line.split("|", 3)
        if len(fields) < 3 or "." in fields[0] or not fields[0].strip():
            continue
        job_id, state, exit_code = (field.strip() for field in fields[:3])
        reason = fields[3].strip() if len(fields) > 3 else ""
        code, signal_number = parse_exit_code(exit_code)
        records[job_id] = SlurmRecord(job_id, _state_name(state), code, signal_number, _reason(reason))
    return records


def parse_exit_code(text: str) -> tuple[int | None, int | None]:
    """Given sacct's or scontrol's 'CODE:SIGNAL' (e.g. '75:0', '0:15'), return (code, signal)."""
    code, _, signal_number = text.partition(":")
    try:
        return int(code), int(signal_number or 0)
    except ValueError:
        return None, None


def parse_config(text: str) -> dict[str, str]:
    """Given `scontrol show config` output ('Key = Value' lines), return its values by key."""
    values = {}
    for line in text.splitlines():
        key, separator, value = line.partition("=")
        if separator and key.strip() and " " not in key.strip():
            values[key.strip()] = value.strip()
    return values


def config_number(config: dict[str, str], key: str) -> int | None:
    """Given parsed `scontrol show config`, return the whole number at the start of a value, or None."""
    words = config.get(key, "").split()
    return int(words[0]) if words and words[0].isdigit() else None


def status_of(record: SlurmRecord) -> JobStatus:
    """Given what SLURM says about a job, return its status for the daemon."""
    outcome = STATE_OUTCOMES.get(record.state)
    if outcome is None:
        return JobStatus(Outcome.PENDING, f"SLURM state {record.state} is not known to dlcwatch; waiting")
    if outcome is Outcome.PENDING:
        waiting = f" ({record.reason})" if record.reason else ""
        return JobStatus(outcome, f"{record.state.lower()}{waiting}")
    if outcome is Outcome.RUNNING:
        return JobStatus(outcome, "" if record.state == "RUNNING" else record.state.lower())
    code = -record.signal if record.signal else record.exit_code
    parts = [record.state]
    if record.signal:
        parts.append(f"killed by {signal_name(record.signal)}")
    elif record.exit_code:
        parts.append(f"exit code {record.exit_code}")
    if record.reason and record.reason not in ("NonZeroExitCode", "TimeLimit"):
        parts.append(record.reason)
    return JobStatus(outcome, ", ".join(parts), code)


# ---------------------------------------------------------------------- helpers

def _state_name(text: str) -> str:
    # sacct: "CANCELLED by 1000"; squeue can append flags after a "+" in compact forms.
    return text.split()[0].rstrip("+").upper() if text.strip() else "UNKNOWN"


def _reason(text: str) -> str:
    return "" if text in ("None", "(null)", "") else text


def _wait_status(text: str) -> tuple[int | None, int | None]:
    """squeue's exit_code is a raw wait status: 768 is exit code 3, 15 is killed by SIGTERM."""
    try:
        status = int(text)
    except ValueError:
        return None, None
    return (status >> 8) & 0xFF, status & 0x7F


def message_of(stderr: str, stdout: str = "") -> str:
    """Given a SLURM command's output, return its error message for a person, on one line."""
    return one_line_message(stderr or stdout, prefixes=("sbatch: error: ", "squeue: error: ", "scancel: error: ",
                                                        "sacct: error: ", "scontrol: error: ", "error: "))


def cannot_reach(result: CommandResult, problem: str | None = None) -> bool:
    """Given a failed SLURM command, return whether the controller (or the login node) did not answer,
    as opposed to refusing: ssh could not get there, the command hung, or SLURM says so itself."""
    return command_unreachable(result, message_of(result.stderr, result.stdout) if problem is None else problem,
                               UNREACHABLE_MARKERS)


def is_unreachable(message: str) -> bool:
    return says_any(message, UNREACHABLE_MARKERS)


def is_submit_limit(message: str) -> bool:
    return says_any(message, SUBMIT_LIMIT_MARKERS)


def is_unknown_job(message: str) -> bool:
    return UNKNOWN_JOB_MARKER in message.lower()


def is_gone(message: str) -> bool:
    """scancel of a job SLURM forgot, or that is already ending: fine."""
    return is_unknown_job(message) or "already completing or completed" in message.lower()


def is_accounting_disabled(message: str) -> bool:
    return ACCOUNTING_DISABLED_MARKER in message.lower()
