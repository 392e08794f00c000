"""The systemd notify protocol against a real AF_UNIX datagram socket."""

from __future__ import annotations

import logging
import os
import socket
import tempfile
import time
import uuid
from pathlib import Path

import pytest

from dlcwatch.sdnotify import SystemdNotifier


@pytest.fixture
def notify_socket(tmp_path):
    """Bind a datagram socket where systemd's would be; yield (its path, the socket)."""
    path = tmp_path / "notify.sock"
    if len(str(path)) > 100:  # sun_path holds 108 bytes
        path = Path(tempfile.mkdtemp(prefix="sd")) / "n.sock"
    receiver = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    receiver.bind(str(path))
    receiver.settimeout(2)
    try:
        yield str(path), receiver
    finally:
        receiver.close()


def receive(receiver: socket.socket) -> str:
    return receiver.recv(4096).decode()


def test_messages_arrive(notify_socket):
    path, receiver = notify_socket
    notifier = SystemdNotifier({"NOTIFY_SOCKET": path})
    assert notifier.enabled
    assert notifier.ready("watching 3 folders")
    assert receive(receiver) == "READY=1\nSTATUS=watching 3 folders"
    assert notifier.status("2 jobs\nrunning")
    assert receive(receiver) == "STATUS=2 jobs running"  # a newline would start a new field
    assert notifier.watchdog()
    assert receive(receiver) == "WATCHDOG=1"
    assert notifier.stopping()
    assert receive(receiver) == "STOPPING=1"
    notifier.close()


def test_ready_without_status_and_reloading(notify_socket):
    path, receiver = notify_socket
    with SystemdNotifier({"NOTIFY_SOCKET": path}) as notifier:
        notifier.ready()
        assert receive(receiver) == "READY=1"
        before = time.clock_gettime_ns(time.CLOCK_MONOTONIC) // 1000
        notifier.reloading()
        first, second = receive(receiver).split("\n")
        after = time.clock_gettime_ns(time.CLOCK_MONOTONIC) // 1000
    assert first == "RELOADING=1"
    assert second.startswith("MONOTONIC_USEC=") and before <= int(second.split("=")[1]) <= after


def test_abstract_socket():
    name = f"dlcwatch-test-{os.getpid()}-{uuid.uuid4().hex}"
    receiver = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    receiver.bind("\0" + name)
    receiver.settimeout(2)
    try:
        notifier = SystemdNotifier({"NOTIFY_SOCKET": "@" + name})
        assert notifier.ready("up")
        assert receive(receiver) == "READY=1\nSTATUS=up"
    finally:
        receiver.close()


def test_reads_os_environ_by_default(notify_socket, monkeypatch):
    path, receiver = notify_socket
    monkeypatch.setenv("NOTIFY_SOCKET", path)
    SystemdNotifier().watchdog()
    assert receive(receiver) == "WATCHDOG=1"


@pytest.mark.parametrize("environ", [{}, {"NOTIFY_SOCKET": ""}, {"NOTIFY_SOCKET": "vsock:2:1234"}])
def test_without_a_socket_everything_is_a_silent_no_op(environ):
    notifier = SystemdNotifier(environ)
    assert not notifier.enabled
    assert notifier.watchdog_interval_s is None
    assert [notifier.ready("x"), notifier.status("x"), notifier.watchdog(), notifier.stopping(),
            notifier.reloading()] == [False] * 5


def test_a_vanished_socket_never_raises(tmp_path, caplog):
    caplog.set_level(logging.DEBUG, logger="dlcwatch.sdnotify")
    notifier = SystemdNotifier({"NOTIFY_SOCKET": str(tmp_path / "gone.sock")})
    assert notifier.enabled
    assert notifier.ready() is False and notifier.watchdog() is False
    assert "could not notify systemd" in caplog.text


@pytest.mark.parametrize("environ, expected", [
    ({"WATCHDOG_USEC": "120000000"}, 60.0),
    ({"WATCHDOG_USEC": "120000000", "WATCHDOG_PID": str(os.getpid())}, 60.0),
    ({"WATCHDOG_USEC": "120000000", "WATCHDOG_PID": "1"}, None),  # meant for another process
    ({"WATCHDOG_USEC": "0"}, None),
    ({"WATCHDOG_USEC": "soon"}, None),
    ({}, None),
])
def test_watchdog_interval(environ, expected):
    assert SystemdNotifier({"NOTIFY_SOCKET": "/run/nothing", **environ}).watchdog_interval_s == expected
