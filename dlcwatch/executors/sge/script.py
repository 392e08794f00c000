"""The Grid Engine job script of a job, from the settings and the job alone (a pure function, no I/O).

Options go on `#$` lines, which qsub reads itself and splits on blanks; so only names and numbers go
there (queue, project, parallel environment, resources), and a value with a blank, quote or line
break is refused. No path is ever on a `#$` line: the working folder goes to qsub as one argv word
(-wd), the job's own output goes to /dev/null, and the script sends everything after its first
lines to the log path itself. Paths in the script are single-quoted for bash (as shlex.quote does);
setup lines and the command prefix are the admin's shell code, written as is.

Grid Engine numbers array tasks from 1 (qsub -t 1-N); dlcwatch's task files (ArrayFolder) from 0.
The script says so once: DLCWATCH_TASK=$((SGE_TASK_ID - 1)), and every ARRAY_TASK_ID in the spec
and log paths expands to "${DLCWATCH_TASK}".
"""

from __future__ import annotations

import math
import re

from dlcwatch.executors.base import Submission
from dlcwatch.executors.cluster import (
    format_memory,
    job_name,
    extra_options,
    job_resources,
    script_head,
    refuse_line_breaks,
    shell_path,
    worker_lines,
)

RESOURCE_KEYS = ("time_min", "mem_mb", "cpus", "gpus", "queue")
TASK_VARIABLE = "DLCWATCH_TASK"
# A value made only of these needs no quotes on a #$ line (queue lists, host patterns, projects).
_PLAIN_VALUE = re.compile(r"[A-Za-z0-9_.,:@*!|&()\[\]+=/-]+")


def render_qsub_script(settings, submission: Submission, *, array_size: int = 0, array_throttle: int = 0) -> str:
    """Given executor.sge settings and a job, return its job script. Raise ValueError for a job that
    cannot be written as one (a line break in a path, unknown resources, a bad array, a setting
    qsub would split).

    submission.resources may override time_min, mem_mb, cpus, gpus and queue (a retry with more
    time or memory, a job sent to the CPU queue). With array_size N > 0 the script is a job array
    of tasks 1..N (Grid Engine's numbers; the spec and log files are 0..N-1), at most
    array_throttle of them running at once (0: no limit)."""
    resources = job_resources(settings, submission, RESOURCE_KEYS, array_size=array_size, array_throttle=array_throttle)
    spec_path, log_path = str(submission.spec_path), str(submission.log_path)
    refuse_line_breaks(spec_path=spec_path, log_path=log_path)

    cpus = int(resources["cpus"])
    options = [
        f"-N {job_name(submission.job_id)}",
        "-S /bin/bash",
        "-o /dev/null",  # the script sends its output to the log path itself (a path never goes on a #$ line)
        "-j y",
        "-r y",          # rerun when its host fails, rather than drop it
    ]
    if settings.parallel_environment and cpus > 1:
        options.append(f"-pe {_qsub_value(settings.parallel_environment, 'parallel_environment')} {cpus}")
    options.append(f"-l h_rt={format_walltime(int(resources['time_min']))}")
    if resources["mem_mb"]:
        options.append(f"-l {_memory_request(settings, int(resources['mem_mb']), cpus)}")
    if resources["gpus"]:
        options.append(f"-l {_qsub_value(settings.gpu_resource, 'gpu_resource')}={int(resources['gpus'])}")
    queue = resources.get("queue") or settings.queue  # the CPU fallback may send a job elsewhere
    if queue:
        options.append(f"-q {_qsub_value(queue, 'queue')}")
    if settings.project:
        options.append(f"-P {_qsub_value(settings.project, 'project')}")
    if array_size:
        options.append(f"-t 1-{array_size}")
        if array_throttle:
            options.append(f"-tc {array_throttle}")
    options += extra_options(settings.extra_qsub, "#$", "qsub")

    lines = script_head("#$", options, submission.job_id)
    if array_size:
        lines.append(f"# Grid Engine numbers array tasks from 1, dlcwatch's task files from 0.")
        lines.append(f"{TASK_VARIABLE}=$((SGE_TASK_ID - 1))")
    lines.append(f"exec >>{shell_path(log_path, TASK_VARIABLE)} 2>&1")
    lines += worker_lines(settings, spec_path, TASK_VARIABLE)
    return "\n".join(lines) + "\n"


def format_walltime(minutes: int) -> str:
    """Given whole minutes, return h_rt as hours:minutes:seconds: 90 -> '1:30:00', 2880 -> '48:00:00'."""
    if minutes < 1:
        raise ValueError(f"a time limit must be at least one minute, got {minutes}")
    return f"{minutes // 60}:{minutes % 60:02d}:00"


def _memory_request(settings, megabytes: int, cpus: int) -> str:
    """h_vmem is a per-slot limit (Grid Engine multiplies it by the slots of a -pe job); mem_free is
    what the host must have free for the whole job."""
    if settings.memory_resource == "h_vmem":
        slots = cpus if settings.parallel_environment else 1
        return f"h_vmem={format_memory(math.ceil(megabytes / slots))}"
    return f"mem_free={format_memory(megabytes)}"


def _qsub_value(value: str, setting: str) -> str:
    """Given a name for a #$ line, return it; raise ValueError for one qsub would split or misread."""
    if not _PLAIN_VALUE.fullmatch(value):
        raise ValueError(f"executor.sge.{setting} {value!r} cannot go on a #$ line: use letters, digits and "
                         "_ . , : @ * ! | & ( ) [ ] + = / - only")
    return value
