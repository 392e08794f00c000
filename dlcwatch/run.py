"""The one way dlcwatch runs an external command: an argv (never a shell), a timeout, and an answer
that says what happened instead of an exception to decode.

Probing videos (ffprobe), SLURM (sbatch, squeue, …), ssh and rsync all go through `run`; a command
that should run on another machine goes through `dlcwatch.ssh.ssh_runner`, which answers the same
way and sets `unreachable` when ssh itself could not get there. Callers judge the command's own
words (SLURM's, rsync's) and these flags, never text that dlcwatch wrote itself.
"""

from __future__ import annotations

import subprocess
from dataclasses import dataclass
from typing import Callable

NOT_FOUND = 127
CANNOT_START = 126
TIMED_OUT = 124


@dataclass(frozen=True)
class CommandResult:
    code: int                  # the command's exit code (127 not found, 124 timed out, 126 could not start)
    stdout: str = ""
    stderr: str = ""
    timed_out: bool = False    # it ran past its timeout and was killed
    not_found: bool = False    # the program is not installed (or not on PATH)
    unreachable: bool = False  # it was to run on another machine, and ssh could not get there

    @property
    def ok(self) -> bool:
        return self.code == 0 and not self.timed_out

    def reason(self, what: str = "") -> str:
        """Return why it failed, on one line: the last line the command printed, or what we know."""
        said = last_line(self.stderr) or last_line(self.stdout)
        if self.timed_out and not said:
            return f"{what or 'the command'} did not finish in time"
        return said or f"exit code {self.code}"


Runner = Callable[[list, float], CommandResult]


def run(argv: list[str], timeout: float, *, env: dict | None = None) -> CommandResult:
    """Given an argv and a timeout in seconds, run it without a shell; return what happened. Never raises."""
    if not argv:
        return CommandResult(NOT_FOUND, stderr="no command given", not_found=True)
    try:
        completed = subprocess.run([str(arg) for arg in argv], capture_output=True, text=True, errors="replace",
                                   timeout=timeout, stdin=subprocess.DEVNULL, env=env)
    except FileNotFoundError:
        return CommandResult(NOT_FOUND, stderr=f"{argv[0]} is not installed", not_found=True)
    except subprocess.TimeoutExpired:
        return CommandResult(TIMED_OUT, stderr=f"{argv[0]} timed out after {timeout:g} s", timed_out=True)
    except OSError as error:
        return CommandResult(CANNOT_START, stderr=f"{argv[0]}: {error.strerror or error}")
    return CommandResult(completed.returncode, completed.stdout, completed.stderr)


def last_line(text: str) -> str:
    """Return the last non-blank line of text ('' if none): where most tools say why."""
    lines = [line.strip() for line in (text or "").splitlines() if line.strip()]
    return lines[-1] if lines else ""
