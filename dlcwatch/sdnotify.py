"""The systemd notify protocol (sd_notify), spoken directly over a datagram socket.

systemd tells a ``Type=notify`` service where to report in ``NOTIFY_SOCKET`` (a path, or
an abstract socket name starting with "@"), and how often to ping the watchdog in
``WATCHDOG_USEC`` (for the process in ``WATCHDOG_PID``). Outside systemd there is no
socket and every method does nothing, so the daemon calls them unconditionally.

Reporting is never worth crashing for: no method raises; problems are logged at debug.
"""

from __future__ import annotations

import logging
import os
import socket
import threading
import time
from collections.abc import Mapping

logger = logging.getLogger("dlcwatch.sdnotify")

# A datagram to systemd is sent at once unless its queue is full; if systemd is that busy,
# dropping one status line beats blocking the daemon's main loop.
SEND_TIMEOUT_S = 2.0


class SystemdNotifier:
    """Report readiness, status, watchdog pings and shutdown to systemd.

    Given an environment mapping (``os.environ`` when None), read NOTIFY_SOCKET,
    WATCHDOG_USEC and WATCHDOG_PID. Never raises.
    """

    def __init__(self, environ: Mapping[str, str] | None = None):
        env = os.environ if environ is None else environ
        self._address = _socket_address(env.get("NOTIFY_SOCKET", ""))
        self._watchdog_usec = _watchdog_usec(env)
        self._socket: socket.socket | None = None
        self._lock = threading.Lock()

    @property
    def enabled(self) -> bool:
        """True when systemd gave us a notify socket."""
        return self._address is not None

    @property
    def watchdog_interval_s(self) -> float | None:
        """Seconds between watchdog pings (half of WATCHDOG_USEC, as systemd advises), or None.

        None when systemd runs no watchdog for this process.
        """
        if self._watchdog_usec is None:
            return None
        return self._watchdog_usec / 2 / 1_000_000

    def ready(self, status: str = "") -> bool:
        """Tell systemd that startup is finished (and optionally a status line). Return True if sent."""
        return self._send("READY=1", *(_status_line(status) if status else ()))

    def status(self, text: str) -> bool:
        """Set the one-line status that ``systemctl status`` shows. Return True if sent."""
        return self._send(*_status_line(text))

    def watchdog(self) -> bool:
        """Ping the watchdog: "still alive". Return True if sent."""
        return self._send("WATCHDOG=1")

    def stopping(self) -> bool:
        """Tell systemd that shutdown has begun. Return True if sent."""
        return self._send("STOPPING=1")

    def reloading(self) -> bool:
        """Tell systemd that a configuration reload has begun. Return True if sent.

        Send READY=1 again when the reload is done. MONOTONIC_USEC is required by
        Type=notify-reload (systemd 253+) and harmless before.
        """
        usec = time.clock_gettime_ns(time.CLOCK_MONOTONIC) // 1000
        return self._send("RELOADING=1", f"MONOTONIC_USEC={usec}")

    def close(self) -> None:
        """Close the socket; later calls open a new one."""
        with self._lock:
            if self._socket is not None:
                try:
                    self._socket.close()
                except OSError:
                    pass
                self._socket = None

    def __enter__(self) -> SystemdNotifier:
        return self

    def __exit__(self, *exc_info) -> None:
        self.close()

    def _send(self, *assignments: str) -> bool:
        """Given KEY=VALUE lines, send them as one datagram. Return True if sent, never raise."""
        if self._address is None:
            return False
        data = "\n".join(assignments).encode("utf-8", "replace")
        try:
            with self._lock:
                if self._socket is None:
                    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC)
                    sock.settimeout(SEND_TIMEOUT_S)
                    self._socket = sock
                self._socket.sendto(data, self._address)
            return True
        except Exception as error:  # noqa: BLE001 - reporting must never stop the daemon
            logger.debug("could not notify systemd (%s): %s", data[:60], error)
            # A fresh socket next time, in case this one is the problem.
            self.close()
            return False


def _socket_address(value: str) -> str | None:
    """Given NOTIFY_SOCKET, return the address to send to, or None when unusable.

    "@name" is an abstract socket, spelled with a leading NUL byte for the kernel.
    """
    if not value:
        return None
    if value.startswith("@"):
        return "\0" + value[1:]
    if value.startswith("/"):
        return value
    # e.g. "vsock:..." (systemd 253+ for virtual machines): not for us.
    logger.debug("NOTIFY_SOCKET %r is not a Unix socket path; systemd notifications off", value)
    return None


def _watchdog_usec(env: Mapping[str, str]) -> int | None:
    """Given the environment, return WATCHDOG_USEC when the watchdog is meant for this process."""
    try:
        usec = int(env.get("WATCHDOG_USEC", ""))
    except ValueError:
        return None
    if usec <= 0:
        return None
    pid = env.get("WATCHDOG_PID", "")
    # A child that inherited the variables must not think the watchdog is its own.
    if pid and pid != str(os.getpid()):
        return None
    return usec


def _status_line(text: str) -> tuple[str]:
    """Given a status text, return the STATUS= assignment on one line (newlines separate fields)."""
    return ("STATUS=" + " ".join(str(text).split()),)
