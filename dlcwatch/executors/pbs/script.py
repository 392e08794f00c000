"""The PBS job script of a job, from the settings and the job alone (a pure function, no I/O).

Options go on `#PBS` lines, which qsub reads itself (until the first command) and splits on
blanks; so only names and numbers go there (queue, account, project, the select statement,
walltime), and a value with a blank, quote or line break is refused. No path is ever on a `#PBS`
line: PBS's own output goes to /dev/null (-j oe -o /dev/null; a path there would be read as
[host:]path, so a colon in a folder name would break it), and the script sends everything after
its first lines to the log path itself, and changes to the job's folder itself (PBS starts a job
in the user's home folder). Paths in the script are single-quoted for bash (as shlex.quote does);
setup lines and the command prefix are the admin's shell code, written as is.

A job array is `-J 0-(N-1)`: PBS numbers subjobs as dlcwatch numbers its task files (ArrayFolder),
so every ARRAY_TASK_ID in the spec and log paths expands to "${PBS_ARRAY_INDEX}". PBS wants at
least two subjobs (`-J 0-0` is refused) and takes a limit on running subjobs as `-J 0-N%K`
(max_run_subjobs: OpenPBS 22.05 and later, PBS Professional 2020.1 and later).
"""

from __future__ import annotations

import re

from dlcwatch.executors.base import Submission
from dlcwatch.executors.cluster import (
    job_name,
    extra_options,
    job_resources,
    script_head,
    refuse_line_breaks,
    shell_path,
    single_quote,
    worker_lines,
)

RESOURCE_KEYS = ("time_min", "mem_mb", "cpus", "gpus", "queue")
TASK_VARIABLE = "PBS_ARRAY_INDEX"
# A value made only of these needs no quotes on a #PBS line (queues, accounts, resource values).
_PLAIN_VALUE = re.compile(r"[A-Za-z0-9_.,:@*!|&()\[\]+=/-]+")


def render_pbs_script(settings, submission: Submission, *, array_size: int = 0, array_throttle: int = 0) -> str:
    """Given executor.pbs settings and a job, return its job script. Raise ValueError for a job that
    cannot be written as one (a line break in a path, unknown resources, an array of fewer than two
    subjobs, a setting qsub would split).

    submission.resources may override time_min, mem_mb, cpus, gpus and queue (a retry with more time
    or memory, a job sent to the CPU queue). With array_size N > 0 the script is a job array of
    subjobs 0..N-1, at most array_throttle of them running at once (0: no limit)."""
    resources = job_resources(settings, submission, RESOURCE_KEYS, array_size=array_size, array_throttle=array_throttle)
    if array_size == 1:
        raise ValueError("a PBS job array needs at least two subjobs (qsub refuses -J 0-0); submit one job instead")
    spec_path, log_path, folder = str(submission.spec_path), str(submission.log_path), str(submission.work_dir)
    refuse_line_breaks(spec_path=spec_path, log_path=log_path, job_folder=folder)

    options = [
        f"-N {job_name(submission.job_id)}",
        "-S /bin/bash",
        "-j oe",
        "-o /dev/null",  # the script sends its output to the log path itself (a path never goes on a #PBS line)
        "-r y",          # run it again when its host fails, rather than drop it (arrays always are)
        f"-l select={select_statement(settings, resources)}",
        f"-l walltime={format_walltime(int(resources['time_min']))}",
    ]
    queue = resources.get("queue") or settings.queue  # the CPU fallback may send a job elsewhere
    if queue:
        options.append(f"-q {_pbs_value(queue, 'queue')}")
    if settings.account:
        options.append(f"-A {_pbs_value(settings.account, 'account')}")
    if settings.project:
        options.append(f"-P {_pbs_value(settings.project, 'project')}")
    if array_size:
        throttle = f"%{array_throttle}" if array_throttle else ""
        options.append(f"-J 0-{array_size - 1}{throttle}")
    options += extra_options(settings.extra_qsub, "#PBS", "qsub")

    lines = script_head("#PBS", options, submission.job_id)
    lines.append(f"exec >>{shell_path(log_path, TASK_VARIABLE)} 2>&1")
    lines.append(f"cd {single_quote(folder)} || exit 1  # PBS starts a job in the home folder")
    lines += worker_lines(settings, spec_path, TASK_VARIABLE)
    return "\n".join(lines) + "\n"


def select_statement(settings, resources: dict) -> str:
    """Given the settings and a job's resources, return its one chunk: '1:ncpus=4:ngpus=1:mem=16gb'
    (GPUs and memory only when asked for), then settings.chunk_resources."""
    parts = ["1", f"ncpus={int(resources['cpus'])}"]
    if resources["gpus"]:
        parts.append(f"{_pbs_value(settings.gpu_resource, 'gpu_resource')}={int(resources['gpus'])}")
    if resources["mem_mb"]:
        parts.append(f"mem={format_size(int(resources['mem_mb']))}")
    if settings.chunk_resources:
        parts.append(_pbs_value(settings.chunk_resources.strip(":"), "chunk_resources"))
    return ":".join(parts)


def format_walltime(minutes: int) -> str:
    """Given whole minutes, return walltime as hours:minutes:seconds: 90 -> '01:30:00', 2880 -> '48:00:00'."""
    if minutes < 1:
        raise ValueError(f"a time limit must be at least one minute, got {minutes}")
    return f"{minutes // 60:02d}:{minutes % 60:02d}:00"


def format_size(megabytes: int) -> str:
    """Given megabytes, return a PBS size: 16384 -> '16gb', 1500 -> '1500mb'."""
    return f"{megabytes // 1024}gb" if megabytes % 1024 == 0 else f"{megabytes}mb"


def _pbs_value(value: str, setting: str) -> str:
    """Given a name for a #PBS line, return it; raise ValueError for one qsub would split or misread."""
    if not _PLAIN_VALUE.fullmatch(value):
        raise ValueError(f"executor.pbs.{setting} {value!r} cannot go on a #PBS line: use letters, digits and "
                         "_ . , : @ * ! | & ( ) [ ] + = / - only")
    return value
