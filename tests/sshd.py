"""A real OpenSSH server on 127.0.0.1 for tests, with keys made by the test (Debian openssh-server)."""

from __future__ import annotations

import contextlib
import getpass
import os
import shutil
import signal
import socket
import subprocess
import time
from pathlib import Path
from typing import Iterator, Sequence

import pytest

SSHD = "/usr/sbin/sshd"


def available() -> str:
    """Return why a test sshd cannot run here, or '' if it can."""
    if not Path(SSHD).exists():
        return "openssh-server is not installed (scripts/install-system-packages.sh)"
    if shutil.which("rsync") is None:
        return "rsync is not installed (scripts/install-system-packages.sh)"
    if os.geteuid() != 0:
        return "sshd needs root to switch to the logged-in user"
    return ""


class TestSSHServer:
    """sshd on 127.0.0.1:port accepting one key for the current user; start() and stop() at will.

    extra_config: more sshd_config lines, e.g. ["SetEnv SLURM_CONF=/path/slurm.conf"] so that
    commands run over ssh see that variable."""

    def __init__(self, folder: Path, extra_config: Sequence[str] = ()):
        self.folder = folder
        folder.mkdir(parents=True, exist_ok=True)
        self.port = _free_port()
        self.user = getpass.getuser()
        self.client_key = folder / "client_key"
        subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(folder / "host_key")], check=True)
        subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(self.client_key)], check=True)
        (folder / "authorized_keys").write_text((folder / "client_key.pub").read_text())
        self.config = folder / "sshd_config"
        self.config.write_text(f"""\
Port {self.port}
ListenAddress 127.0.0.1
HostKey {folder / 'host_key'}
AuthorizedKeysFile {folder / 'authorized_keys'}
PasswordAuthentication no
KbdInteractiveAuthentication no
PermitRootLogin prohibit-password
UsePAM no
StrictModes no
PidFile {folder / 'sshd.pid'}
""" + "".join(f"{line}\n" for line in extra_config))

    def start(self) -> None:
        Path("/run/sshd").mkdir(parents=True, exist_ok=True)
        subprocess.run([SSHD, "-f", str(self.config), "-E", str(self.folder / "sshd.log")], check=True)
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            with socket.socket() as probe:
                if probe.connect_ex(("127.0.0.1", self.port)) == 0:
                    return
            time.sleep(0.05)
        raise RuntimeError(f"sshd did not start: {(self.folder / 'sshd.log').read_text()}")

    def stop(self) -> None:
        pid_file = self.folder / "sshd.pid"
        if pid_file.exists():
            try:
                os.kill(int(pid_file.read_text()), signal.SIGTERM)
            except ProcessLookupError:
                pass
            pid_file.unlink(missing_ok=True)
            time.sleep(0.2)


@contextlib.contextmanager
def serving(folder: Path, *, extra_config: Sequence[str] = (), start: bool = True) -> Iterator["TestSSHServer"]:
    """A test's sshd in folder (started unless start=False), stopped afterwards; skip where none can run."""
    reason = available()
    if reason:
        pytest.skip(reason)
    server = TestSSHServer(folder, extra_config=extra_config)
    if start:
        server.start()
    try:
        yield server
    finally:
        server.stop()


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]
