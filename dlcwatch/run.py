"""The one way dlcwatch runs an external command: an argv (never a shell), a timeout, and an answer
that says what happened instead of an exception to decode.

Probing videos (ffprobe), SLURM (sbatch, squeue, …), ssh and rsync all go through `run`; a command
that should run on another machine goes through `dlcwatch.transport.ssh.ssh_runner`, which answers the same
way and sets `unreachable` when ssh itself could not get there. Callers judge the command's own
words (SLURM's, rsync's) and these flags, never text that dlcwatch wrote itself.
"""

from __future__ import annotations

import contextlib
import subprocess
import tempfile
import time
from dataclasses import dataclass
from typing import Callable

NOT_FOUND = 127
CANNOT_START = 126
TIMED_OUT = 124
WATCH_INTERVAL_S = 0.2


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


def run(argv: list[str], timeout: float | None, *, env: dict | None = None,
        watch: Callable[[int], None] | None = None,
        feed: Callable[[Callable[[bytes], None]], None] | None = None) -> CommandResult:
    """Given an argv and a timeout in seconds (None: none), run it without a shell; return what happened.

    `watch(pid)` is called about every 0.2 s while it runs (e.g. to follow the bytes it has read);
    an exception from it kills the command, without waiting for it (a process stuck in a hung NFS
    read dies only when the read returns), and propagates. `feed(write)` is called once to send the
    command its stdin: each write(chunk) goes to it while it takes them, and is quietly dropped
    once it stopped reading, so the feeder (which may be hashing the same bytes) always finishes.
    What feed raises kills the command and propagates. Otherwise never raises."""
    if not argv:
        return CommandResult(NOT_FOUND, stderr="no command given", not_found=True)
    argv = [str(arg) for arg in argv]
    if watch is None and feed is None:
        try:
            completed = subprocess.run(argv, capture_output=True, text=True, errors="replace", timeout=timeout,
                                       stdin=subprocess.DEVNULL, env=env)
        except subprocess.TimeoutExpired:
            return CommandResult(TIMED_OUT, stderr=f"{argv[0]} timed out after {timeout:g} s", timed_out=True)
        except OSError as error:
            return _cannot_start(argv, error)
        return CommandResult(completed.returncode, completed.stdout, completed.stderr)
    # Output goes to files, not pipes: nobody reads a pipe while we feed or watch, and a full one would stall it.
    with tempfile.TemporaryFile() as stdout, tempfile.TemporaryFile() as stderr:
        try:
            process = subprocess.Popen(argv, stdin=subprocess.PIPE if feed is not None else subprocess.DEVNULL,
                                       stdout=stdout, stderr=stderr, env=env)
        except OSError as error:
            return _cannot_start(argv, error)
        started = time.monotonic()
        try:
            if feed is not None:
                _feed(process, feed)
            while True:
                try:
                    process.wait(timeout=WATCH_INTERVAL_S)
                    break
                except subprocess.TimeoutExpired:
                    pass
                if watch is not None:
                    watch(process.pid)
                if timeout is not None and time.monotonic() - started > timeout:
                    process.kill()
                    return CommandResult(TIMED_OUT, stderr=f"{argv[0]} timed out after {timeout:g} s",
                                         timed_out=True)
        finally:
            if process.returncode is None:
                process.kill()
        stdout.seek(0)
        stderr.seek(0)
        return CommandResult(process.returncode, stdout.read().decode("utf-8", "replace"),
                             stderr.read().decode("utf-8", "replace"))


def _feed(process: subprocess.Popen, feed: Callable[[Callable[[bytes], None]], None]) -> None:
    """Let feed write the process's stdin while it takes it, then close it."""
    taking = True

    def write(chunk: bytes) -> None:
        nonlocal taking
        if taking:
            try:
                process.stdin.write(chunk)
            except (BrokenPipeError, ValueError):
                taking = False  # it stopped reading: the feeder goes on without it

    feed(write)
    with contextlib.suppress(BrokenPipeError, ValueError):
        process.stdin.close()


def _cannot_start(argv: list[str], error: OSError) -> CommandResult:
    if isinstance(error, FileNotFoundError):
        return CommandResult(NOT_FOUND, stderr=f"{argv[0]} is not installed", not_found=True)
    return CommandResult(CANNOT_START, stderr=f"{argv[0]}: {error.strerror or error}")


def bytes_read(pid: int) -> int:
    """Given a process id, return the bytes it has read so far (0 if /proc does not say)."""
    try:
        with open(f"/proc/{pid}/io", "rb") as stream:
            for line in stream:
                if line.startswith(b"rchar:"):
                    return int(line.split()[1])
    except (OSError, ValueError):
        pass
    return 0


def last_line(text: str) -> str:
    """Return the last non-blank line of text ('' if none): where most tools say why."""
    lines = [line.strip() for line in (text or "").splitlines() if line.strip()]
    return lines[-1] if lines else ""
