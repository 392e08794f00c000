"""One ssh connection to another machine (a results server, a cluster's login node), reused.

`SshHost` builds every ssh command: non-interactive (BatchMode), one shared connection per host
(ControlMaster) so each later command skips the handshake, the far side's host key kept in a
known_hosts file of our own. Three ways to run something there:

- `run(command)`: a shell command string (callers quote every name with shlex.quote); raises
  TransferError, or SshUnreachable when ssh itself failed.
- `wrap(argv)`: the local argv that runs argv there; the far side's shell gets shlex.join(argv),
  so no name is ever interpreted by it.
- `ssh_runner(host)`: a dlcwatch.run runner, argv in and CommandResult out, never raising, with
  `unreachable` set when ssh itself failed; for callers that judge exit codes (the SLURM executor).

rsync gets the same ssh command through `rsync_e()` (its -e value).
"""

from __future__ import annotations

import os
import shlex
import stat
import tempfile
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Callable

from dlcwatch.errors import SshUnreachable, TransferError
from dlcwatch.run import CommandResult, Runner, bytes_read, last_line, run

COMMAND_TIMEOUT_S = 600.0
SSH_FAILED = 255          # ssh's own exit code when it cannot connect or log in


@dataclass(frozen=True)
class SshHost:
    host: str                 # user@host
    control_dir: Path         # where ssh keeps the far side's host key (known_hosts)
    identity_file: str = ""
    port: int = 22
    options: tuple[str, ...] = ()

    @classmethod
    def configured(cls, host: str, settings, control_dir: Path) -> "SshHost":
        """Given user@host, a config section made by dlcwatch.config.ssh_section and the folder for
        known_hosts, return the host as the config describes it."""
        return cls(host, control_dir, identity_file=settings.identity_file, port=settings.port,
                   options=tuple(settings.options))

    def ssh_argv(self) -> list[str]:
        """Return the ssh command (without host) that every remote step uses. Creates the
        folders it names first, so any command built from it can run. Raise TransferError."""
        self._make_folders()
        argv = ["ssh", "-o", "BatchMode=yes", "-o", "ConnectTimeout=20",
                # One connection reused for every command, instead of a handshake each time.
                "-o", "ControlMaster=auto", "-o", f"ControlPath={socket_folder()}/%C",
                "-o", "ControlPersist=120",
                "-o", f"UserKnownHostsFile={self.control_dir}/known_hosts",
                "-o", "StrictHostKeyChecking=accept-new",
                # Errors only: ssh's notices ("Permanently added … to the list of known hosts")
                # would otherwise mix with the remote command's stderr, which callers read.
                "-o", "LogLevel=ERROR", "-p", str(self.port)]
        if self.identity_file:
            argv += ["-i", self.identity_file, "-o", "IdentitiesOnly=yes"]
        for option in self.options:
            argv += ["-o", option]
        return argv

    def rsync_e(self) -> str:
        """Return rsync's -e value: this ssh command as one string (rsync splits it itself)."""
        return shlex.join(self.ssh_argv())

    def wrap(self, argv: list[str]) -> list[str]:
        """Given an argv to run on the far side, return the local argv that runs it over ssh.

        ssh hands the far side one string for its shell, so that string is shlex.join(argv):
        each argument arrives as it was, spaces, quotes and `$(…)` included."""
        if not argv:
            raise ValueError("no command to run over ssh")
        return [*self.ssh_argv(), "--", self.host, shlex.join(str(arg) for arg in argv)]

    def run(self, command: str, timeout: float = COMMAND_TIMEOUT_S) -> str:
        """Given a shell command string for the far side, run it; return its stdout.

        Raise SshUnreachable when ssh cannot connect or log in, TransferError when the command
        fails or runs past timeout."""
        result = run([*self.ssh_argv(), "--", self.host, command], timeout)
        if result.ok:
            return result.stdout
        if result.code == SSH_FAILED:
            raise SshUnreachable(f"ssh {self.host} failed: cannot connect or log in ({result.reason()})")
        if result.timed_out:
            raise TransferError(f"ssh {self.host} failed: no answer within {timeout:g} s")
        raise TransferError(f"ssh {self.host} failed: {result.reason()}")

    def close(self) -> None:
        """Stop the shared connection, if one is open (at shutdown; a later command opens another)."""
        try:
            run([*self.ssh_argv(), "-O", "exit", "--", self.host], 30.0)
        except TransferError:
            pass

    def _make_folders(self) -> None:
        try:
            self.control_dir.mkdir(parents=True, exist_ok=True)
            folder = socket_folder()
            folder.mkdir(mode=0o700, exist_ok=True)
            info = folder.lstat()
        except OSError as error:
            raise TransferError(f"cannot prepare ssh's folders: {error}") from error
        # The socket folder sits in a shared /tmp: one made by someone else could hijack our
        # connections, so only our own private folder will do.
        if not stat.S_ISDIR(info.st_mode) or info.st_uid != os.getuid():
            raise TransferError(f"{folder} is not a folder of this user: remove it")
        if info.st_mode & 0o077:
            folder.chmod(0o700)


def ssh_runner(host: SshHost) -> Runner:
    """Given a host, return a runner that runs an argv there without any shell interpreting it.

    Its CommandResult is the far command's, except when ssh itself failed (exit 255): then
    `unreachable` is set and the reason says that the host could not be reached."""
    def runner(argv: list[str], timeout: float) -> CommandResult:
        if not argv:
            return CommandResult(127, stderr="no command given", not_found=True)
        try:
            local = host.wrap(argv)
        except TransferError as error:
            return CommandResult(SSH_FAILED, stderr=f"cannot reach {host.host} over ssh: {error}", unreachable=True)
        result = run(local, timeout)
        if result.code == SSH_FAILED:
            reason = last_line(result.stderr) or "ssh exited with code 255"
            return replace(result, stderr=f"cannot reach {host.host} over ssh: {reason}", unreachable=True)
        if result.timed_out:
            return replace(result, stderr=f"{argv[0]} on {host.host} timed out after {timeout:g} s")
        return result
    return runner


def socket_folder() -> Path:
    """Where ssh's shared-connection sockets live: a short path, since a socket path may not
    exceed 107 bytes (a deep staging folder would), private to this user."""
    return Path(tempfile.gettempdir()) / f"dlcwatch-ssh-{os.getuid()}"


def check_output(argv: list[str], what: str, timeout: float | None = COMMAND_TIMEOUT_S,
                 progress: Callable[[int], None] | None = None) -> str:
    """Given a local argv (ssh, rsync) and what it does in words, run it; return its stdout.

    With `progress`, it is called with the bytes the command has read so far while it runs, and
    there is no total timeout (a big copy may take hours; the caller gives up on no progress).
    Raise TransferError naming `what` and the last line of its stderr."""
    if progress is None:
        result = run(argv, timeout)
    else:
        result = run(argv, None, watch=lambda pid: progress(bytes_read(pid)))
    if result.ok:
        return result.stdout
    if result.not_found:
        raise TransferError(result.stderr)
    if result.timed_out:
        raise TransferError(f"{what} did not finish within {timeout:.0f} s")
    raise TransferError(f"{what} failed: {result.reason()}")
