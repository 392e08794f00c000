"""The email channel against a real SMTP server (aiosmtpd) on 127.0.0.1."""

from __future__ import annotations

import dataclasses
import email
import email.policy
import json
import logging
import time

import pytest
from servers import (
    closed_port,
    make_self_signed_certificate,
    silent_tcp_server,
    smtp_server,
)

from dlcwatch.notify import Message, NotifyError, send_all
from dlcwatch.notify import email as email_channel

PASSWORD = "pw-Zq8!secret-Xy"
PNG = b"\x89PNG\r\n\x1a\n" + b"\x00" * 64


@pytest.fixture(scope="module")
def certificate(tmp_path_factory):
    try:
        return make_self_signed_certificate(tmp_path_factory.mktemp("tls"))
    except RuntimeError as error:
        pytest.skip(f"cannot make a test certificate: {error}")


@pytest.fixture
def trust(monkeypatch, certificate):
    """Make the test certificate trusted, the way a lab would trust its internal CA."""
    monkeypatch.setenv("SSL_CERT_FILE", str(certificate.cert))
    return certificate


@pytest.fixture
def message(tmp_path) -> Message:
    picture = tmp_path / "qc_mouse1.png"
    picture.write_bytes(PNG)
    return Message(
        kind="batch_done",
        title="Batch done: 3 videos",
        summary="3 videos analyzed, 0 failed.",
        lines=["mouse1.mp4", "mouse2.mp4", "mouse3.mp4"],
        fields={"model": "resnet50", "duration": "12 min"},
        attachments=[picture],
    )


def settings(port: int, **overrides) -> dict:
    base = {"enabled": True, "host": "127.0.0.1", "port": port, "security": "none",
            "sender": "dlcwatch@lab.example", "recipients": ["a@lab.example", "b@lab.example"],
            "timeout_s": 5}
    base.update(overrides)
    return base


def parse(data: bytes) -> email.message.EmailMessage:
    return email.message_from_bytes(data, policy=email.policy.default)


def test_plain_smtp_delivers_to_every_recipient_with_the_png_attached(message):
    with smtp_server() as server:
        email_channel.send(message, settings(server.port))
    assert len(server.messages) == 1
    stored = server.messages[0]
    assert stored.recipients == ["a@lab.example", "b@lab.example"]
    assert stored.sender == "dlcwatch@lab.example"
    mail = parse(stored.data)
    assert mail["Subject"] == "[dlcwatch] Batch done: 3 videos"
    assert mail["X-dlcwatch-kind"] == "batch_done"
    plain = mail.get_body(("plain",)).get_content()
    assert "3 videos analyzed" in plain and "- mouse2.mp4" in plain and "model:" in plain
    assert "<li>mouse3.mp4</li>" in mail.get_body(("html",)).get_content()
    attachments = list(mail.iter_attachments())
    assert [a.get_filename() for a in attachments] == ["qc_mouse1.png"]
    assert attachments[0].get_content_type() == "image/png"
    assert attachments[0].get_content() == PNG


def test_missing_attachment_still_sends_and_says_so(tmp_path):
    message = Message("alert", "Job failed", "mouse9 failed.", attachments=[tmp_path / "gone.png"])
    with smtp_server() as server:
        email_channel.send(message, settings(server.port, recipients="solo@lab.example"))
    mail = parse(server.messages[0].data)
    assert server.messages[0].recipients == ["solo@lab.example"]
    assert list(mail.iter_attachments()) == []
    assert "gone.png could not be read" in mail.get_body(("plain",)).get_content()


def test_long_line_lists_are_cut():
    message = Message("digest", "Digest", "Many.", lines=[f"video{i}.mp4" for i in range(250)])
    built, _ = email_channel.build_email(message, "s@x.org", ["r@x.org"])
    plain = built.get_body(("plain",)).get_content()
    assert "- video199.mp4" in plain and "video200.mp4" not in plain
    assert "... and 50 more" in plain


def test_starttls_with_login(trust, message, caplog):
    caplog.set_level(logging.DEBUG)
    with smtp_server(starttls=trust.server_context(), login=("dlcwatch", PASSWORD)) as server:
        email_channel.send(message, settings(server.port, security="starttls", username="dlcwatch",
                                             password=PASSWORD))
    assert len(server.messages) == 1
    assert server.messages[0].authenticated_as == "dlcwatch"
    assert PASSWORD not in caplog.text


def test_implicit_tls_with_password_from_the_environment(trust, message, monkeypatch):
    monkeypatch.setenv("DLCWATCH_SMTP_PASSWORD", PASSWORD)
    with smtp_server(implicit_tls=trust.server_context(), login=("dlcwatch", PASSWORD)) as server:
        email_channel.send(message, settings(server.port, security="ssl", username="dlcwatch"))
    assert server.messages[0].authenticated_as == "dlcwatch"


def test_wrong_password_fails_without_revealing_it(trust, message, caplog):
    caplog.set_level(logging.DEBUG)
    wrong = "not-the-Pw-42-secret"
    with smtp_server(starttls=trust.server_context(), login=("dlcwatch", PASSWORD)) as server:
        cfg = settings(server.port, security="starttls", username="dlcwatch", password=wrong)
        with pytest.raises(NotifyError) as raised:
            email_channel.send(message, cfg)
        result = send_all(message, {"email": cfg})
    assert server.messages == []
    assert "rejected the login of 'dlcwatch'" in raised.value.reason and "535" in raised.value.reason
    assert raised.value.__cause__ is None and raised.value.__suppress_context__
    assert result["email"] and "rejected the login" in result["email"]
    assert wrong not in str(raised.value) and wrong not in result["email"] and wrong not in caplog.text
    assert any(r.levelno == logging.WARNING and r.name == "dlcwatch.notify" for r in caplog.records)


def test_untrusted_certificate_is_refused(certificate, message):
    # No trust fixture: the self-signed certificate is unknown, so TLS must fail.
    with smtp_server(starttls=certificate.server_context()) as server:
        with pytest.raises(NotifyError, match="TLS with 127.0.0.1:.* failed: CERTIFICATE_VERIFY_FAILED"):
            email_channel.send(message, settings(server.port, security="starttls"))
    assert server.messages == []


def test_starttls_not_offered_is_an_error_not_a_downgrade(message):
    with smtp_server() as server:
        with pytest.raises(NotifyError, match="does not support it"):
            email_channel.send(message, settings(server.port, security="starttls"))
    assert server.messages == []


def test_server_requiring_auth_rejects_anonymous_mail(trust, message):
    with smtp_server(starttls=trust.server_context(), login=("dlcwatch", PASSWORD),
                     auth_required=True) as server:
        with pytest.raises(NotifyError, match="530"):
            email_channel.send(message, settings(server.port, security="starttls"))
    assert server.messages == []


def test_password_is_never_sent_in_plain_text(message):
    with smtp_server() as server:
        with pytest.raises(NotifyError, match="unencrypted"):
            email_channel.send(message, settings(server.port, username="u", password=PASSWORD))
    assert server.messages == []


def test_server_that_never_answers_times_out(message):
    with silent_tcp_server() as port:
        started = time.monotonic()
        with pytest.raises(NotifyError, match="no answer from 127.0.0.1:.* within 0.5 s"):
            email_channel.send(message, settings(port, timeout_s=0.5))
        assert time.monotonic() - started < 3


def test_closed_port_fails_fast(message):
    started = time.monotonic()
    with pytest.raises(NotifyError, match="could not talk to .*Connection refused"):
        email_channel.send(message, settings(closed_port()))
    assert time.monotonic() - started < 3


@pytest.mark.parametrize("overrides, expected", [
    ({"host": ""}, "email.host not set"),
    ({"recipients": []}, "email.recipients is empty"),
    ({"security": "tls"}, "security must be one of"),
    ({"timeout_s": "soon"}, "email.timeout_s must be a positive number"),
    ({"username": "u", "password": "", "password_env": "DLCWATCH_TEST_UNSET_VARIABLE"},
     "DLCWATCH_TEST_UNSET_VARIABLE"),
])
def test_incomplete_settings_are_reported(message, overrides, expected, monkeypatch):
    monkeypatch.delenv("DLCWATCH_TEST_UNSET_VARIABLE", raising=False)
    with pytest.raises(NotifyError, match=expected):
        email_channel.send(message, settings(1, **overrides))


def test_message_is_validated_and_immutable():
    with pytest.raises(ValueError, match="kind"):
        Message("party", "t", "s")
    lines, fields = ["x"], {"k": 1}
    message = Message("alert", "a\nmulti  line title", "s", lines=lines, fields=fields,
                      attachments=["/tmp/a.png"])
    lines.append("y")
    fields["k"] = 2
    assert message.title == "a multi line title"  # a newline would break the Subject header
    assert message.lines == ("x",) and message.fields == {"k": "1"}
    with pytest.raises(dataclasses.FrozenInstanceError):
        message.title = "other"
    # The daemon may keep a failed message as JSON and retry it later.
    assert Message.from_dict(json.loads(json.dumps(message.to_dict()))) == message
