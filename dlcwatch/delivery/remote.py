"""Results to another machine: `output.root: user@host:/path`, over ssh and rsync.

A video's results are first assembled (and verified) in staging, then published in three steps:
rsync into a hidden `.NAME.incoming` folder beside the final one, check every file's sha256,
mode and group on the far side, then rename into place in one remote command. The local copy is removed only after
that, so an unreachable or full destination never loses a result.

Remote commands are strings a shell on the far side reads, so every path in them is quoted with
shlex.quote; rsync runs with --protect-args so it never hands names to that shell either.
"""

from __future__ import annotations

import posixpath
import shlex
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from dlcwatch.files import Permissions, TransferError, default_permissions
from dlcwatch.transport.ssh import SshHost, check_output

@dataclass(frozen=True)
class RemoteDestination:
    ssh: SshHost              # how every command reaches the far side
    root: str                 # absolute path on that host

    @property
    def host(self) -> str:
        return self.ssh.host

    def run(self, command: str) -> str:
        """Run one shell command on the far side; return its output. Raise TransferError."""
        return self.ssh.run(command)

    def publish(self, local_folder: Path, relative_folder: str, expected: dict[str, str],
                source_sha256: str | None, permissions: Permissions | None = None,
                progress: Callable[[int], None] | None = None) -> str:
        """Copy a finished result folder to <root>/<relative_folder>, verified; return the remote path.

        `expected` maps file names to sha256. The far side gets `permissions` (default: this
        process's umask) on every file and on the folders it creates, and both content and
        permissions are checked there before the rename. Results of another video already at
        that place are renamed aside, as locally. Raise TransferError."""
        permissions = permissions or default_permissions()
        final = f"{self.root}/{relative_folder}"
        parent, name = final.rsplit("/", 1)
        incoming = f"{parent}/.{name}.incoming"
        self.run(_make_folders_command(self.root, relative_folder.rsplit("/", 1)[0] if "/" in relative_folder else "",
                                       permissions)
                 + f" && rm -rf -- {shlex.quote(incoming)}")
        chown = [f"--chown=:{permissions.group}"] if permissions.group else []
        check_output(["rsync", "-rlt", "--checksum", "--protect-args", "--perms",
                      f"--chmod=D{permissions.dir_mode:o},F{permissions.file_mode:o}", *chown,
                      "-e", self.ssh.rsync_e(), f"{local_folder}/", f"{self.host}:{incoming}/"],
                     f"rsync to {self.host}", progress=progress)
        self._verify(incoming, expected, permissions)
        aside = f"{final}.replaced-{time.strftime('%Y%m%dT%H%M%S')}"
        same = f"grep -q {shlex.quote(source_sha256 or 'none')} {shlex.quote(final + '/manifest.json')}"
        # Same video delivered again: replace it. Another video's results: keep them, renamed aside.
        self.run(f"if [ -e {shlex.quote(final)} ]; then if {same} 2>/dev/null; then rm -rf -- {shlex.quote(final)};"
                 f" else mv -- {shlex.quote(final)} {shlex.quote(aside)}; fi; fi;"
                 f" mv -- {shlex.quote(incoming)} {shlex.quote(final)}")
        return f"{self.host}:{final}"

    def _verify(self, incoming: str, expected: dict[str, str], permissions: Permissions) -> None:
        """Check every expected file's sha256, mode and group on the far side, and the folder's. Raise TransferError.

        Each file is hashed from stdin and described by stat in the order asked, so no name is
        ever parsed back from the output (sha256sum escapes names holding a backslash or a
        newline, which once made such a video's delivery retry forever)."""
        files = sorted(expected)
        quoted = " ".join(shlex.quote(file) for file in files)
        answer = self.run(f"cd -- {shlex.quote(incoming)} && for f in {quoted}; do"
                          f" h=$(sha256sum < \"$f\") && s=$(stat -c '%a %G' -- \"$f\") && echo \"${{h%% *}} $s\""
                          f" || echo unreadable; done; stat -c '- %a %G' .")
        lines = answer.splitlines()
        if len(lines) != len(files) + 1:
            raise TransferError(f"copy to {self.host}:{incoming} cannot be checked: unexpected answer {answer[-200:]!r}")
        wrong = []
        for file, line in zip(files, lines):
            digest, _, rest = line.partition(" ")
            if digest != expected[file] or not _has_permissions(rest, permissions.file_mode, permissions.group):
                wrong.append(f"{file} ({line if digest == expected[file] else 'content differs'})")
        if not _has_permissions(lines[-1][2:], permissions.dir_mode, permissions.group):
            wrong.append(f"the folder (mode and group {lines[-1][2:]})")
        if wrong:
            raise TransferError(f"copy to {self.host}:{incoming} does not verify: {', '.join(wrong)}")


def _has_permissions(stat_line: str, mode: int, group: str) -> bool:
    """Given stat's '%a %G' for a path, return whether it has this mode (and group, when one is set)."""
    found_mode, _, found_group = stat_line.partition(" ")
    try:
        return int(found_mode, 8) == mode and (not group or found_group == group)
    except ValueError:
        return False


def _make_folders_command(root: str, relative: str, permissions: Permissions) -> str:
    """Given the remote root and a folder below it, return a shell command that creates the missing ones.

    Each folder dlcwatch creates gets the permissions (group first, then the mode: chgrp may
    clear the setgid bit); folders that already exist are left as a person set them."""
    steps = [part for part in relative.split("/") if part]
    paths = [root] + [f"{root}/{'/'.join(steps[:index + 1])}" for index in range(len(steps))]
    group = f"chgrp -- {shlex.quote(permissions.group)} \"$d\" && " if permissions.group else ""
    return (f"mkdir -p -- {shlex.quote(posixpath.dirname(root) or '/')} && for d in "
            + " ".join(shlex.quote(path) for path in paths)
            + f"; do [ -d \"$d\" ] || {{ mkdir -- \"$d\" && {group}chmod {permissions.dir_mode:o} -- \"$d\"; }}"
              " || exit 1; done")
