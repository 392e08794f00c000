"""Results to another machine: `output.root: user@host:/path`, over ssh and rsync.

A video's results are first assembled (and verified) in staging, then published in three steps:
rsync into a hidden `.NAME.incoming` folder beside the final one, check every file's sha256 on
the far side, then rename into place in one remote command. The local copy is removed only after
that, so an unreachable or full destination never loses a result.

Remote commands are strings a shell on the far side reads, so every path in them is quoted with
shlex.quote; rsync runs with --protect-args so it never hands names to that shell either.
"""

from __future__ import annotations

import re
import shlex
import time
from dataclasses import dataclass
from pathlib import Path

from dlcwatch.ssh import SshHost, check_output
from dlcwatch.transfer import TransferError

REMOTE = re.compile(r"^(?P<host>(?:[^@/\s]+@)?[^@/:\s]+):(?P<path>/.*)$")


def parse_remote(root: str) -> tuple[str, str] | None:
    """Given an output root, return (host, path) if it names another machine, else None."""
    match = REMOTE.match(root)
    return (match["host"], match["path"].rstrip("/") or "/") if match else None


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
                source_sha256: str | None) -> str:
        """Copy a finished result folder to <root>/<relative_folder>, verified; return the remote path.

        `expected` maps file names to sha256. Results of another video already at that place are
        renamed aside, as locally."""
        final = f"{self.root}/{relative_folder}"
        parent, name = final.rsplit("/", 1)
        incoming = f"{parent}/.{name}.incoming"
        self.run(f"mkdir -p -- {shlex.quote(parent)} && rm -rf -- {shlex.quote(incoming)}")
        check_output(["rsync", "-a", "--checksum", "--protect-args", "-e", self.ssh.rsync_e(),
                      f"{local_folder}/", f"{self.host}:{incoming}/"], f"rsync to {self.host}")
        sums = self.run(f"cd -- {shlex.quote(incoming)} && sha256sum -- "
                        + " ".join(shlex.quote(file) for file in sorted(expected)))
        found = {}
        for line in sums.splitlines():
            digest, _, file = line.partition("  ")
            found[file] = digest
        if found != expected:
            wrong = sorted(file for file in expected if found.get(file) != expected[file])
            raise TransferError(f"copy to {self.host}:{incoming} does not verify: {', '.join(wrong)}")
        aside = f"{final}.replaced-{time.strftime('%Y%m%dT%H%M%S')}"
        same = f"grep -q {shlex.quote(source_sha256 or 'none')} {shlex.quote(final + '/manifest.json')}"
        # Same video delivered again: replace it. Another video's results: keep them, renamed aside.
        self.run(f"if [ -e {shlex.quote(final)} ]; then if {same} 2>/dev/null; then rm -rf -- {shlex.quote(final)};"
                 f" else mv -- {shlex.quote(final)} {shlex.quote(aside)}; fi; fi;"
                 f" mv -- {shlex.quote(incoming)} {shlex.quote(final)}")
        return f"{self.host}:{final}"
