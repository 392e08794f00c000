"""The Slack channel against a real HTTP server on 127.0.0.1, and the dispatcher send_all."""

from __future__ import annotations

import logging
import time

import pytest
from servers import closed_port, http_server, smtp_server

from dlcwatch.notify import Message, NotifyError, send_all, slack

# Shaped like a real webhook: every part of the path is secret.
SECRET_PATH = "/services/T0SECRET01/B0SECRET02/xoxTOKENabcdef1234567890"
SECRET_PIECES = ("T0SECRET01", "B0SECRET02", "xoxTOKENabcdef1234567890")


@pytest.fixture(autouse=True)
def no_proxy(monkeypatch):
    """A lab server's proxy settings must not route the loopback tests elsewhere."""
    for name in ("HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY", "http_proxy", "https_proxy", "all_proxy"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("NO_PROXY", "127.0.0.1,localhost")


@pytest.fixture
def message(tmp_path) -> Message:
    return Message(
        kind="alert",
        title="3 jobs failed",
        summary="Jobs failed on gpu01 <see logs> & retry later.",
        lines=[f"mouse{i}.mp4" for i in range(25)],
        fields={"host": "gpu01", "model": "resnet50"},
        attachments=[tmp_path / "qc.png"],
    )


def assert_no_secret(*texts: str) -> None:
    for text in texts:
        for piece in SECRET_PIECES:
            assert piece not in text, f"secret {piece!r} leaked into: {text!r}"


def test_ok_answer_delivers_block_kit_json(message):
    with http_server(200, b"ok") as server:
        slack.send(message, {"webhook_url": server.url(SECRET_PATH), "timeout_s": 5})
    assert len(server.requests) == 1
    request = server.requests[0]
    assert request.path == SECRET_PATH
    assert request.headers["Content-Type"] == "application/json"
    payload = request.json()
    assert payload["text"].startswith("[dlcwatch] 3 jobs failed")
    blocks = payload["blocks"]
    assert [b["type"] for b in blocks] == ["header", "section", "section", "context"]
    assert blocks[0]["text"]["text"] == ":rotating_light: 3 jobs failed"
    body = blocks[1]["text"]["text"]
    # At most 10 list items, then how many were left out; mrkdwn control characters escaped.
    assert body.count("• ") == 10 and "• mouse9.mp4" in body and "mouse10.mp4" not in body
    assert "and 15 more" in body
    assert "&lt;see logs&gt; &amp; retry" in body
    assert {"type": "mrkdwn", "text": "*host*\ngpu01"} in blocks[2]["fields"]
    assert "qc.png" in blocks[3]["elements"][0]["text"]


def test_webhook_url_from_the_environment(message, monkeypatch):
    with http_server() as server:
        monkeypatch.setenv("DLCWATCH_SLACK_WEBHOOK", server.url(SECRET_PATH))
        slack.send(message, {"webhook_url": "", "timeout_s": 5})
    assert len(server.requests) == 1


def test_many_fields_are_cut_to_slacks_limit():
    message = Message("digest", "t", "s", fields={f"k{i}": str(i) for i in range(15)})
    fields = slack.build_payload(message)["blocks"][2]["fields"]
    assert len(fields) == 10
    assert fields[-1]["text"] == "*…*\nand 6 more"


def test_server_error_is_reported_without_the_url(message, caplog):
    caplog.set_level(logging.DEBUG)
    with http_server(500, b"internal_error") as server:
        with pytest.raises(NotifyError) as raised:
            slack.send(message, {"webhook_url": server.url(SECRET_PATH), "timeout_s": 5})
    assert raised.value.reason == "127.0.0.1 answered HTTP 500: internal_error"
    assert raised.value.__cause__ is None
    assert_no_secret(str(raised.value), caplog.text)


def test_server_that_never_answers_times_out(message, caplog):
    caplog.set_level(logging.DEBUG)
    with http_server(hang=True) as server:
        started = time.monotonic()
        with pytest.raises(NotifyError, match="no answer from 127.0.0.1 within 0.5 s"):
            slack.send(message, {"webhook_url": server.url(SECRET_PATH), "timeout_s": 0.5})
        elapsed = time.monotonic() - started
    assert elapsed < 3
    assert len(server.requests) == 1  # it did reach the server, which then stayed silent
    assert_no_secret(caplog.text)


def test_closed_port_fails_fast_without_the_url(message, caplog):
    caplog.set_level(logging.DEBUG)
    url = f"http://127.0.0.1:{closed_port()}{SECRET_PATH}"
    started = time.monotonic()
    with pytest.raises(NotifyError, match="could not connect to 127.0.0.1: .*refused") as raised:
        slack.send(message, {"webhook_url": url, "timeout_s": 5})
    assert time.monotonic() - started < 3
    assert_no_secret(str(raised.value), repr(raised.value), caplog.text)


def test_urllib3_debug_log_is_redacted(message, caplog):
    caplog.set_level(logging.DEBUG)
    with http_server() as server:
        slack.send(message, {"webhook_url": server.url(SECRET_PATH), "timeout_s": 5})
    request_lines = [r.getMessage() for r in caplog.records if r.name == "urllib3.connectionpool"
                     and "POST" in r.getMessage()]
    # The line exists (so the check below means something) and its path is gone.
    assert request_lines and all("[redacted]" in line for line in request_lines)
    assert_no_secret(caplog.text)


@pytest.mark.parametrize("url, expected", [
    ("", "DLCWATCH_TEST_NO_WEBHOOK"),
    ("ftp://127.0.0.1/services/x", "not an http"),
])
def test_unusable_url_is_reported(message, url, expected, monkeypatch):
    monkeypatch.delenv("DLCWATCH_TEST_NO_WEBHOOK", raising=False)
    with pytest.raises(NotifyError, match=expected):
        slack.send(message, {"webhook_url": url, "webhook_url_env": "DLCWATCH_TEST_NO_WEBHOOK"})


# --- The dispatcher -------------------------------------------------------------------------


def test_send_all_reaches_both_channels(message):
    with smtp_server() as mail, http_server() as hook:
        result = send_all(message, {
            "email": {"enabled": True, "host": "127.0.0.1", "port": mail.port, "security": "none",
                      "sender": "d@lab.example", "recipients": ["x@lab.example"], "timeout_s": 5},
            "slack": {"enabled": True, "webhook_url": hook.url(SECRET_PATH), "timeout_s": 5},
        })
    assert result == {"email": None, "slack": None}
    assert len(mail.messages) == 1 and len(hook.requests) == 1


def test_send_all_reports_failures_and_skips_disabled_channels(message, caplog):
    caplog.set_level(logging.DEBUG)
    with http_server(403, b"invalid_token") as hook:
        result = send_all(message, {
            "email": {"enabled": False, "host": "127.0.0.1"},
            "slack": {"enabled": True, "webhook_url": hook.url(SECRET_PATH), "timeout_s": 5},
        })
    assert result == {"slack": "127.0.0.1 answered HTTP 403: invalid_token"}
    warnings = [r for r in caplog.records if r.name == "dlcwatch.notify" and r.levelno == logging.WARNING]
    assert len(warnings) == 1 and "invalid_token" in warnings[0].getMessage()
    assert_no_secret(caplog.text)


@pytest.mark.parametrize("settings", [
    None,
    {},
    {"slack": {"enabled": False}},
    {"slack": "not a mapping"},
])
def test_send_all_with_nothing_enabled_sends_nothing(message, settings):
    assert send_all(message, settings) == {}


def test_send_all_never_raises_and_scrubs_unexpected_errors(message, caplog, monkeypatch):
    caplog.set_level(logging.DEBUG)
    url = f"http://127.0.0.1:{closed_port()}{SECRET_PATH}"

    def broken(_message):  # a bug that puts the URL into its error text
        raise RuntimeError(f"cannot post to {url}")

    monkeypatch.setattr(slack, "build_payload", broken)
    result = send_all(message, {"slack": {"enabled": True, "webhook_url": url}})
    assert result["slack"] == "unexpected RuntimeError: cannot post to [redacted]"
    assert_no_secret(result["slack"], caplog.text)


def test_bad_timeout_is_a_clear_error(message):
    with pytest.raises(NotifyError, match="slack.timeout_s must be a positive number, not 'soon'"):
        slack.send(message, {"webhook_url": "http://127.0.0.1:9/x", "timeout_s": "soon"})


def test_send_all_survives_a_message_that_is_not_one():
    result = send_all("not a message", {"slack": {"enabled": True, "webhook_url": "http://127.0.0.1:9/x"}})
    assert result["slack"].startswith("unexpected AttributeError")
