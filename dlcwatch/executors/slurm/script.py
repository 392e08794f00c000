"""The sbatch script of a job, from the settings and the job alone (a pure function, no I/O).

Two quoting rules meet in one file. `#SBATCH` lines are read by sbatch itself, which splits on
blanks, groups with quotes, takes a backslash as an escape and a `#` as a comment; the log path
there is double-quoted with `\\` and `"` escaped, and its `%` doubled (sbatch's filename patterns).
The rest is bash: the spec path is single-quoted (as shlex.quote does). Those two paths are the only paths
the script holds; setup lines and the command prefix are the admin's shell code, written as is.

For a job array, the spec and log paths contain ARRAY_TASK_ID; it stays expandable in the shell
(spec-"${SLURM_ARRAY_TASK_ID}".json) and becomes %a in the log file pattern.
"""

from __future__ import annotations

import re

from dlcwatch.executors.base import ARRAY_TASK_ID, Submission
from dlcwatch.executors.cluster import (
    extra_options,
    format_memory,
    job_name,
    job_resources,
    script_head,
    worker_lines,
)

RESOURCE_KEYS = ("time_min", "mem_mb", "cpus", "gpus", "partition")
# A value made only of these needs no quotes on an #SBATCH line.
_PLAIN_VALUE = re.compile(r"[A-Za-z0-9_.,:&|!*()\[\]+=@/%-]+")


def render_sbatch_script(settings, submission: Submission, *, array_size: int = 0, array_throttle: int = 0) -> str:
    """Given executor.slurm settings and a job, return its sbatch script. Raise ValueError for a
    job that cannot be written as one (a newline in a path, unknown resources, a bad array).

    submission.resources may override time_min, mem_mb, cpus, gpus and partition (a retry with
    more time or memory, a job sent to the CPU partition). With array_size N > 0 the script is a job array of tasks 0..N-1, at most
    array_throttle of them running at once (0: no limit)."""
    resources = job_resources(settings, submission, RESOURCE_KEYS, array_size=array_size,
                              array_throttle=array_throttle)
    spec_path, log_path = str(submission.spec_path), str(submission.log_path)

    options = [
        f"--job-name={job_name(submission.job_id)}",
        f"--output={_log_pattern(log_path)}",
        "--open-mode=append",  # a requeued job (preempted, node failure) adds to its log
        "--nodes=1",
        "--ntasks=1",
        f"--cpus-per-task={int(resources['cpus'])}",
    ]
    if resources["mem_mb"]:
        options.append(f"--mem={format_memory(int(resources['mem_mb']))}")
    options.append(f"--time={format_minutes(int(resources['time_min']))}")
    # A job may go elsewhere than the configured partition (the CPU fallback).
    places = {"partition": resources.get("partition") or settings.partition, "account": settings.account,
              "qos": settings.qos}
    for name, value in places.items():
        if value:
            options.append(f"--{name}={_sbatch_value(value)}")
    if resources["gpus"]:
        kind = f"{settings.gpu_type}:" if settings.gpu_type else ""
        if settings.gpu_option == "gpus":
            options.append(f"--gpus={_sbatch_value(kind)}{int(resources['gpus'])}")
        else:
            options.append(f"--gres=gpu:{_sbatch_value(kind)}{int(resources['gpus'])}")
    if settings.constraint:
        options.append(f"--constraint={_sbatch_value(settings.constraint)}")
    if array_size:
        throttle = f"%{array_throttle}" if array_throttle else ""
        options.append(f"--array=0-{array_size - 1}{throttle}")
    options += extra_options(settings.extra_sbatch, "#SBATCH", "sbatch")

    lines = script_head("#SBATCH", options, submission.job_id)
    lines += worker_lines(settings, spec_path, "SLURM_ARRAY_TASK_ID")
    return "\n".join(lines) + "\n"


def format_minutes(minutes: int) -> str:
    """Given whole minutes, return sbatch's time: 90 -> '01:30:00', 2880 -> '2-00:00:00'."""
    if minutes < 1:
        raise ValueError(f"a time limit must be at least one minute, got {minutes}")
    days, rest = divmod(minutes, 24 * 60)
    clock = f"{rest // 60:02d}:{rest % 60:02d}:00"
    return f"{days}-{clock}" if days else clock


def _log_pattern(path: str) -> str:
    """Given the log path, return it as a quoted sbatch filename pattern (task id -> %a)."""
    _one_line(path, "the log path")
    if "\\" in path:  # sbatch would take it as "no patterns here" and drop it: the log would go elsewhere
        raise ValueError(f"the log path {path!r} contains a backslash, which sbatch cannot take in --output")
    pattern = "%a".join(part.replace("%", "%%") for part in path.split(ARRAY_TASK_ID))
    return '"' + pattern.replace('"', '\\"') + '"'


def _sbatch_value(value: str) -> str:
    """Given a setting for an #SBATCH line, return it as sbatch reads it back, quoted when needed."""
    _one_line(value, "an sbatch setting")
    if not value or _PLAIN_VALUE.fullmatch(value):
        return value
    return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'


def _one_line(text: str, what: str) -> None:
    if "\n" in text or "\r" in text:
        raise ValueError(f"{what} {text!r} contains a line break, which an #SBATCH line cannot hold")
