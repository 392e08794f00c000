"""The daemon as a service: notifications through real loopback servers, systemd's notify
socket, SIGHUP reloads. No DeepLabCut needed: the videos here never reach a job."""

import email
import email.policy
import os
import signal
import socket
import subprocess
import sys
import time

import pytest
import yaml
from servers import http_server, smtp_server

from conftest import write_config
from dlcwatch.config import load_config
from dlcwatch.daemon import Daemon
from dlcwatch.notify.policy import batch_message, queue_notifications, send_due
from dlcwatch.states import VideoState as S
from dlcwatch.store import Store
from dlcwatch.demo.synthetic import write_video

WEBHOOK_PATH = "/services/TSECRET/BSECRET/tokenSECRET123"


@pytest.fixture(autouse=True)
def no_proxy(monkeypatch):
    for name in ("HTTP_PROXY", "HTTPS_PROXY", "http_proxy", "https_proxy", "ALL_PROXY", "all_proxy"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("NO_PROXY", "127.0.0.1,localhost")


def notify_config(tmp_path, smtp_port, webhook_url, **extra):
    fake_model = tmp_path / "model" / "config.yaml"
    fake_model.parent.mkdir(exist_ok=True)
    fake_model.write_text("Task: none\n")
    notify = {"batch_window_s": 3600.0, "retry_interval_s": 1.0,
              "email": {"enabled": True, "host": "127.0.0.1", "port": smtp_port, "security": "none",
                        "sender": "dlcwatch@lab.test", "recipients": ["pi@lab.test", "student@lab.test"],
                        "timeout_s": 5.0},
              "slack": {"enabled": True, "webhook_url_env": "TEST_DLCWATCH_WEBHOOK", "timeout_s": 2.0}}
    os.environ["TEST_DLCWATCH_WEBHOOK"] = webhook_url
    return write_config(tmp_path, fake_model, watch={"settle_s": 0.1, "rescan_interval_s": 0.2}, notify=notify,
                        **extra)


def add_video(store, name, state, reason="", **fields):
    video = store.add_video(f"/v/{name}", "/v", name, size=1, mtime_ns=1, now=10.0)
    path = {S.DONE: [S.QUEUED, S.SUBMITTED, S.RUNNING, S.ANALYZED, S.DELIVERING, S.DONE],
            S.QUARANTINED: [S.QUARANTINED], S.QUEUED: [S.QUEUED]}[state]
    for step in path:
        store.set_video_state(video.id, step, reason or str(step), now=20.0,
                              **(fields if step is S.DONE else {}))
    return video


def test_alerts_at_once_batches_when_idle_and_a_failed_channel_is_retried(tmp_path, caplog):
    with smtp_server() as smtp, http_server(status=500, body=b"server_error") as slack:
        config = load_config(notify_config(tmp_path, smtp.port, slack.url(WEBHOOK_PATH)))
        store = Store(config.state.database)
        add_video(store, "good.mp4", S.DONE, frames=900, output_dir=str(tmp_path / "results" / "good"))
        add_video(store, "broken.mp4", S.QUARANTINED, "quarantined: not a readable video")
        waiting = add_video(store, "next.mp4", S.QUEUED)

        queue_notifications(store, config.notify, busy=True, now=30.0)
        [alert] = store.pending_messages()  # the alert goes out at once; the batch waits
        assert alert.message["kind"] == "alert" and "broken.mp4" in alert.message["lines"][0]
        queue_notifications(store, config.notify, busy=True, now=31.0)
        assert len(store.pending_messages()) == 1  # never the same alert twice

        send_due(store, config.notify, now=32.0)
        assert len(smtp.messages) == 1
        assert smtp.messages[0].recipients == ["pi@lab.test", "student@lab.test"]
        [item] = store.pending_messages()  # Slack answered 500: only Slack is left to do
        assert item.channels == ["slack"] and "500" in item.last_error
        assert "SECRET" not in item.last_error
        send_due(store, config.notify, now=32.5)  # not due yet: backoff
        assert len(slack.requests) == 1
        send_due(store, config.notify, now=40.0)
        assert len(slack.requests) == 2 and len(smtp.messages) == 1  # email is not sent twice

        store.set_video_state(waiting.id, S.MISSING, "deleted", now=50.0)
        queue_notifications(store, config.notify, busy=False, now=51.0)
        batch = [i for i in store.pending_messages() if i.message["kind"] == "batch_done"]
        assert len(batch) == 1
        # A video deleted before it was analyzed needs a person as much as a broken one.
        missing = [i for i in store.pending_messages() if i.message["kind"] == "alert" and "next.mp4" in i.message["title"]]
        assert len(missing) == 1 and "deleted" in missing[0].message["lines"][0]
        message = batch[0].message
        assert message["title"] == "1 video(s) done, 2 not analyzed"
        assert "good.mp4: done" in message["lines"]
        assert "900 frames" in message["summary"] and str(tmp_path / "results") in message["summary"]
        assert all("SECRET" not in record.getMessage() for record in caplog.records)


def test_batch_goes_out_while_busy_once_the_window_passed(tmp_path):
    with smtp_server() as smtp, http_server() as slack:
        config = load_config(notify_config(tmp_path, smtp.port, slack.url(WEBHOOK_PATH),
                                           ))
        config.notify["batch_window_s"] = 100.0
        store = Store(config.state.database)
        add_video(store, "a.mp4", S.DONE, frames=10)
        queue_notifications(store, config.notify, busy=True, now=60.0)
        assert store.pending_messages() == []
        queue_notifications(store, config.notify, busy=True, now=125.0)
        assert [i.message["kind"] for i in store.pending_messages()] == ["batch_done"]


def test_the_daemon_sends_mail_and_slack_about_a_bad_video(tmp_path):
    with smtp_server() as smtp, http_server() as slack:
        config_path = notify_config(tmp_path, smtp.port, slack.url(WEBHOOK_PATH))
        (tmp_path / "videos" / "notes.mp4").write_text("not a video\n")
        daemon = Daemon(load_config(config_path), watch_events=False)
        try:
            assert daemon.run(until_idle=True) == 0
        finally:
            daemon.close()
        subjects = sorted(email.message_from_bytes(mail.data)["Subject"] for mail in smtp.messages)
        assert subjects == ["[dlcwatch] 0 video(s) done, 1 not analyzed", "[dlcwatch] notes.mp4 needs attention"]
        posted = [request.json() for request in slack.requests]
        assert len(posted) == 2 and all(request.path == WEBHOOK_PATH for request in slack.requests)
        assert any("not a readable video" in str(body["blocks"]) for body in posted)


def test_systemd_hears_ready_watchdog_status_and_stopping(tmp_path, monkeypatch, lab):
    address = str(tmp_path / "notify.sock")
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    listener.bind(address)
    listener.settimeout(5)
    monkeypatch.setenv("NOTIFY_SOCKET", address)
    monkeypatch.setenv("WATCHDOG_USEC", "2000000")
    monkeypatch.setenv("WATCHDOG_PID", str(os.getpid()))
    daemon = Daemon(lab, watch_events=False)
    try:
        daemon.run(until_idle=True)
    finally:
        daemon.close()
    received = []
    listener.settimeout(0.5)
    try:
        while True:
            received.extend(listener.recv(4096).decode().splitlines())
    except socket.timeout:
        pass
    assert received[0] == "READY=1"
    assert "WATCHDOG=1" in received and any(line.startswith("STATUS=") for line in received)
    assert received[-1] == "STOPPING=1"


def wait_for_ready(listener: socket.socket, timeout_s: float = 30.0) -> list[str]:
    """Given a bound notify socket, return the lines received up to and including the next READY=1."""
    lines: list[str] = []
    deadline = time.monotonic() + timeout_s
    while "READY=1" not in lines:
        listener.settimeout(max(0.01, deadline - time.monotonic()))
        try:
            lines.extend(listener.recv(65536).decode().splitlines())
        except socket.timeout:
            raise AssertionError(f"no READY=1 within {timeout_s} s; got {lines}") from None
    return lines


def test_sighup_reloads_a_valid_config_and_keeps_the_old_one_otherwise(tmp_path, lab):
    config_path = tmp_path / "config.yaml"
    # The daemon says READY=1 on the notify socket once started and after each reload (taken or
    # refused): the test waits for that instead of guessing how long a start takes.
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    listener.bind(str(tmp_path / "notify.sock"))
    environment = dict(os.environ, NOTIFY_SOCKET=str(tmp_path / "notify.sock"))
    daemon = subprocess.Popen([sys.executable, "-m", "dlcwatch", "run", "--config", str(config_path)],
                              stderr=subprocess.PIPE, text=True, env=environment)
    try:
        wait_for_ready(listener)
        good = yaml.safe_load(config_path.read_text())
        config_path.write_text("watch: {roots: []}\n")  # invalid: no root, no output, no model
        daemon.send_signal(signal.SIGHUP)
        assert "RELOADING=1" in wait_for_ready(listener)
        good["watch"]["settle_s"] = 7.0
        config_path.write_text(yaml.safe_dump(good))
        daemon.send_signal(signal.SIGHUP)
        assert "RELOADING=1" in wait_for_ready(listener)
        assert daemon.poll() is None, "the daemon must survive a bad reload"
        daemon.send_signal(signal.SIGTERM)
        _, errors = daemon.communicate(timeout=20)
    finally:
        if daemon.poll() is None:
            daemon.kill()
        listener.close()
    assert daemon.returncode == 0
    assert "configuration not reloaded, keeping the running one" in errors
    assert "watch.roots: needs at least 1 entry" in errors
    assert f"configuration reloaded from {config_path}" in errors


@pytest.mark.skipif(not __import__("conftest").HAVE_DLC, reason="DeepLabCut is not installed")
def test_a_real_run_sends_one_useful_batch_email_and_slack_message(tiny_model, tmp_path):
    with smtp_server() as smtp, http_server() as slack:
        config_path = notify_config(tmp_path, smtp.port, slack.url(WEBHOOK_PATH))
        config = yaml.safe_load(config_path.read_text())
        config["model"]["config"] = str(tiny_model)
        config_path.write_text(yaml.safe_dump(config))
        for phase, name in enumerate(("mouse 1.mp4", "mouse 2.mp4")):
            write_video(tmp_path / "videos" / name, frames=30, phase=phase)
        daemon = Daemon(load_config(config_path), watch_events=False)
        try:
            assert daemon.run(until_idle=True) == 0
        finally:
            daemon.close()
        [mail] = [email.message_from_bytes(m.data, policy=email.policy.default) for m in smtp.messages]
        assert mail["Subject"] == "[dlcwatch] 2 video(s) done"
        body = next(part for part in mail.walk() if part.get_content_type() == "text/plain").get_content()
        assert "2 of 2 video(s) analyzed and delivered (60 frames)" in body and str(tmp_path / "results") in body
        pictures = [part.get_filename() for part in mail.walk() if part.get_content_type() == "image/png"]
        assert sorted(pictures) == ["mouse 1_qc.png", "mouse 2_qc.png"]
        [posted] = [request.json() for request in slack.requests]
        assert "2 video(s) done" in posted["text"]


def test_intake_pauses_while_staging_is_short_of_space(tmp_path, lab, capsys):
    from dlcwatch.cli import main

    lab.staging["min_free_gb"] = 1e9  # more than any disk here has: the real free space is below it
    write_video(tmp_path / "videos" / "a.mp4", frames=10, size=64)
    daemon = Daemon(lab, watch_events=False)
    try:
        daemon.tick(100.0)
        daemon.tick(200.0)
        assert daemon.store.videos() == []
        assert daemon.store.conditions()[0]["name"] == "staging_space"
        assert main(["status", "--config", str(tmp_path / "config.yaml")]) == 0
        assert "intake paused" in capsys.readouterr().out
        lab.staging["min_free_gb"] = 0.0
        daemon.tick(300.0)
        assert daemon.store.conditions() == [] and len(daemon.store.videos()) == 1
    finally:
        daemon.close()


def test_a_daily_digest_goes_out_once_a_day_at_its_time(tmp_path):
    import datetime

    from dlcwatch.notify.policy import digest_due

    with smtp_server() as smtp, http_server() as slack:
        config = load_config(notify_config(tmp_path, smtp.port, slack.url(WEBHOOK_PATH)))
        config.notify["daily_digest_at"] = "08:30"
        store = Store(config.state.database)
        add_video(store, "a.mp4", S.QUARANTINED, "quarantined: not a readable video")
        morning = datetime.datetime(2026, 11, 24, 8, 29).timestamp()
        queue_notifications(store, config.notify, busy=False, now=morning)
        assert "digest" not in [i.message["kind"] for i in store.pending_messages()]
        queue_notifications(store, config.notify, busy=False, now=morning + 120)
        queue_notifications(store, config.notify, busy=False, now=morning + 3600)
        digests = [i.message for i in store.pending_messages() if i.message["kind"] == "digest"]
        assert len(digests) == 1 and "a.mp4 (quarantined)" in digests[0]["lines"][0]
        assert digest_due("08:30", morning + 120, morning + 86400 + 120)  # and again the next day
        assert not digest_due("", None, morning + 120)


def test_secrets_never_appear_in_config_errors_or_status(tmp_path, capsys):
    from dlcwatch.cli import main

    secret = "https://hooks.slack.test/services/TSECRET/BSECRET/tokenSECRET123"
    path = notify_config(tmp_path, 25, secret)
    config = yaml.safe_load(path.read_text())
    config["notify"]["email"]["password"] = ["hunter2-SECRET"]  # wrong type: reported, not echoed
    config["notify"]["email"]["username"] = "lab"
    path.write_text(yaml.safe_dump(config))
    assert main(["config", "validate", "--config", str(path)]) == 2
    main(["status", "--json", "--config", str(path)])  # refused too: the same config error
    output = capsys.readouterr()
    assert "notify.email.password: expected a string (value not shown: it is a secret)" in output.err
    assert "SECRET" not in output.out + output.err


def test_the_batch_says_what_a_done_delivery_noted(tmp_path):
    store = Store(tmp_path / "state.db")
    folder = str(tmp_path / "results" / "empty")
    video = add_video(store, "empty.mp4", S.QUEUED)
    for step in (S.SUBMITTED, S.RUNNING, S.ANALYZED, S.DELIVERING):
        store.set_video_state(video.id, step, str(step), now=22.0)
    store.set_video_state(video.id, S.DONE, f"delivered to {folder}; no animal found: DeepLabCut "
                          "detected no animal in any frame (its raw detections are delivered)", now=23.0,
                          output_dir=folder, frames=30)
    message = batch_message(store.videos())
    assert list(message.lines) == ["empty.mp4: done; no animal found: DeepLabCut detected no animal in any "
                                   "frame (its raw detections are delivered)"]
