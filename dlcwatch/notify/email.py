"""The email channel: SMTP with the standard library (STARTTLS, implicit TLS or plain).

The server certificate is checked against the system trust store
(``ssl.create_default_context``); a lab whose mail relay uses an internal CA points
``SSL_CERT_FILE`` at that CA's bundle in the service's environment.
"""

from __future__ import annotations

import html
import logging
import mimetypes
import smtplib
import ssl
from collections.abc import Mapping
from email.message import EmailMessage
from email.utils import formatdate, make_msgid
from pathlib import Path

from dlcwatch.notify import Message, NotifyError, resolve_secret, scrub

CHANNEL = "email"

DEFAULTS: dict = {
    "enabled": False,
    "host": "",
    "port": 587,
    "security": "starttls",  # starttls | ssl | none
    "username": "",
    "password": "",
    "password_env": "DLCWATCH_SMTP_PASSWORD",
    "sender": "",
    "recipients": [],
    "timeout_s": 20,
}

SECURITY_CHOICES = ("starttls", "ssl", "none")

# An email listing every video of a large batch is still readable; ten thousand lines is not.
MAX_LINES = 200
# Mail servers commonly refuse messages over 10-25 MB; stay well below.
MAX_ATTACHMENT_BYTES = 8 * 1024 * 1024

logger = logging.getLogger("dlcwatch.notify")


def _settings(settings: Mapping | None) -> dict:
    """Given the email settings (maybe partial), return them with the defaults filled in."""
    merged = dict(DEFAULTS)
    merged.update({k: v for k, v in dict(settings or {}).items() if v is not None})
    return merged


def secrets(settings: Mapping | None) -> list[str]:
    """Given the email settings, return the secrets they resolve to (for scrubbing)."""
    cfg = _settings(settings)
    password = resolve_secret(cfg["password"], cfg["password_env"])
    return [password] if password else []


def build_email(message: Message, sender: str, recipients: list[str]) -> tuple[EmailMessage, list[str]]:
    """Given a message, a sender and recipients, return the email and notes on skipped attachments.

    The body is plain text with a simple HTML alternative. Attachments that are missing or
    would make the email too large are left out and named in the body instead, because a
    notification without its picture is better than no notification.
    """
    email = EmailMessage()
    email["Subject"] = f"[dlcwatch] {message.title}"
    email["From"] = sender
    email["To"] = ", ".join(recipients)
    email["Date"] = formatdate(localtime=True)
    email["Message-ID"] = make_msgid(domain=_domain_of(sender))
    # Lets people sort alerts from routine mail with a filter rule.
    email["X-dlcwatch-kind"] = message.kind

    attachments, notes = _readable_attachments(message.attachments)
    lines = list(message.lines[:MAX_LINES])
    if len(message.lines) > MAX_LINES:
        lines.append(f"... and {len(message.lines) - MAX_LINES} more")

    email.set_content(_plain_body(message, lines, notes))
    email.add_alternative(_html_body(message, lines, notes), subtype="html")
    for path, data in attachments:
        content_type, _encoding = mimetypes.guess_type(path.name)
        maintype, subtype = (content_type or "application/octet-stream").split("/", 1)
        email.add_attachment(data, maintype=maintype, subtype=subtype, filename=path.name)
    return email, notes


def _domain_of(address: str) -> str | None:
    """Given an email address, return its domain (for the Message-ID), or None."""
    domain = address.rpartition("@")[2].strip(" >")
    return domain or None


def _readable_attachments(paths: tuple[Path, ...]) -> tuple[list[tuple[Path, bytes]], list[str]]:
    """Given attachment paths, return (path, bytes) pairs to attach and notes on the rest."""
    attached: list[tuple[Path, bytes]] = []
    notes: list[str] = []
    total = 0
    for path in paths:
        try:
            data = path.read_bytes()
        except OSError as error:
            notes.append(f"attachment {path.name} could not be read ({error.strerror or error})")
            logger.warning("email attachment %s not attached: %s", path, error)
            continue
        if total + len(data) > MAX_ATTACHMENT_BYTES:
            notes.append(f"attachment {path.name} left out: the email would be too large ({path})")
            continue
        total += len(data)
        attached.append((path, data))
    return attached, notes


def _plain_body(message: Message, lines: list[str], notes: list[str]) -> str:
    """Given a message and its (shortened) lines, return the plain-text body."""
    parts = [message.summary.strip()]
    if message.fields:
        width = max(len(key) for key in message.fields)
        parts.append("\n".join(f"{key + ':':<{width + 1}} {value}" for key, value in message.fields.items()))
    if lines:
        parts.append("\n".join(f"- {line}" for line in lines))
    if notes:
        parts.append("\n".join(f"Note: {note}" for note in notes))
    parts.append("-- \nSent by dlcwatch.")
    return "\n\n".join(part for part in parts if part) + "\n"


def _html_body(message: Message, lines: list[str], notes: list[str]) -> str:
    """Given a message and its (shortened) lines, return a simple HTML body."""
    esc = html.escape
    parts = [f"<h2>{esc(message.title)}</h2>", f"<p>{esc(message.summary.strip())}</p>"]
    if message.fields:
        rows = "".join(
            f"<tr><th align='left' style='padding-right:1em'>{esc(k)}</th><td>{esc(v)}</td></tr>"
            for k, v in message.fields.items()
        )
        parts.append(f"<table>{rows}</table>")
    if lines:
        parts.append("<ul>" + "".join(f"<li>{esc(line)}</li>" for line in lines) + "</ul>")
    for note in notes:
        parts.append(f"<p><em>Note: {esc(note)}</em></p>")
    parts.append("<p style='color:#888'>Sent by dlcwatch.</p>")
    return "<html><body>" + "".join(parts) + "</body></html>\n"


def _connect(cfg: dict) -> smtplib.SMTP:
    """Given complete settings, return a connected SMTP client, encrypted unless security is none.

    Raise smtplib.SMTPException, ssl.SSLError or OSError.
    """
    host, port, timeout = cfg["host"], int(cfg["port"]), float(cfg["timeout_s"])
    security = cfg["security"]
    # The timeout applies to the connection and to every later read and write on it.
    if security == "ssl":
        return smtplib.SMTP_SSL(host, port, timeout=timeout, context=ssl.create_default_context())
    smtp = smtplib.SMTP(host, port, timeout=timeout)
    try:
        if security == "starttls":
            smtp.ehlo()
            # starttls() raises SMTPNotSupportedError when the server does not offer it, so
            # a server that drops STARTTLS cannot silently downgrade us to plain text.
            smtp.starttls(context=ssl.create_default_context())
            smtp.ehlo()
    except BaseException:
        smtp.close()
        raise
    return smtp


def _check(cfg: dict, password: str) -> None:
    """Given complete settings, return None when they can work. Raise NotifyError otherwise."""
    missing = [key for key in ("host", "sender") if not str(cfg[key]).strip()]
    if missing:
        raise NotifyError(CHANNEL, f"email.{' and email.'.join(missing)} not set")
    if not cfg["recipients"]:
        raise NotifyError(CHANNEL, "email.recipients is empty")
    if cfg["security"] not in SECURITY_CHOICES:
        raise NotifyError(CHANNEL, f"email.security must be one of {', '.join(SECURITY_CHOICES)}, "
                                   f"not {cfg['security']!r}")
    for key in ("port", "timeout_s"):
        try:
            valid = float(cfg[key]) > 0
        except (TypeError, ValueError):
            valid = False
        if not valid:
            raise NotifyError(CHANNEL, f"email.{key} must be a positive number, not {cfg[key]!r}")
    if cfg["username"] and not password:
        raise NotifyError(CHANNEL, f"email.username is set but no password: set email.password "
                                   f"or the environment variable {cfg['password_env']}")
    if cfg["username"] and cfg["security"] == "none":
        raise NotifyError(CHANNEL, "refusing to send the SMTP password over an unencrypted "
                                   "connection: use security starttls or ssl")


def send(message: Message, settings: Mapping) -> None:
    """Given a message and the email settings, send it to every recipient.

    Sends whether or not ``enabled`` is set (the dispatcher checks that). Raise NotifyError
    when the message was not accepted for every recipient, with a reason free of the password.
    """
    cfg = _settings(settings)
    if isinstance(cfg["recipients"], str):
        cfg["recipients"] = [cfg["recipients"]]
    password = resolve_secret(cfg["password"], cfg["password_env"])
    _check(cfg, password)
    recipients = [str(r) for r in cfg["recipients"]]
    try:
        email, _notes = build_email(message, cfg["sender"], recipients)
    except (ValueError, TypeError) as error:
        raise NotifyError(CHANNEL, f"could not build the email: {error}") from None

    where = f"{cfg['host']}:{cfg['port']}"
    try:
        with _connect(cfg) as smtp:
            if cfg["username"]:
                smtp.login(cfg["username"], password)
            refused = smtp.send_message(email, from_addr=cfg["sender"], to_addrs=recipients)
    except smtplib.SMTPAuthenticationError as error:
        reason = f"{where} rejected the login of {cfg['username']!r}: {_smtp_reply(error)}"
    except smtplib.SMTPRecipientsRefused as error:
        reason = f"{where} refused every recipient: {_refusals(error.recipients)}"
    except smtplib.SMTPResponseException as error:
        reason = f"{where} answered {_smtp_reply(error)}"
    except smtplib.SMTPNotSupportedError as error:
        reason = f"{where} does not support it: {error}"
    except ssl.SSLError as error:
        reason = f"TLS with {where} failed: {error.reason or error}"
    except (smtplib.SMTPException, OSError) as error:
        if _timed_out(error):
            reason = f"no answer from {where} within {cfg['timeout_s']} s"
        else:
            reason = f"could not talk to {where}: {type(error).__name__}: {error}"
    else:
        if refused:
            # The others got it; retrying would send them a duplicate, but silence would
            # hide a lost recipient, so report it.
            raise NotifyError(CHANNEL, f"{where} refused some recipients (the others got the "
                                       f"message): {_refusals(refused)}")
        return
    # Raised outside the except blocks, "from None", so no traceback chain carries
    # library text that was not scrubbed.
    raise NotifyError(CHANNEL, scrub(reason, [password])) from None


def _timed_out(error: BaseException) -> bool:
    """Given an SMTP or socket error, return True when a timeout caused it.

    smtplib turns a timeout while reading a reply into SMTPServerDisconnected, keeping the
    timeout only as the exception's context.
    """
    for _ in range(10):  # exception chains can loop; a real one is two or three deep
        if error is None:
            return False
        if isinstance(error, TimeoutError):  # socket.timeout is TimeoutError since 3.10
            return True
        error = error.__cause__ or error.__context__
    return False


def _smtp_reply(error: smtplib.SMTPResponseException) -> str:
    """Given an SMTP error, return its code and the server's text on one line."""
    text = error.smtp_error
    if isinstance(text, bytes):
        text = text.decode("utf-8", "replace")
    return f"{error.smtp_code} {' '.join(str(text).split())}"


def _refusals(refused: Mapping) -> str:
    """Given smtplib's {recipient: (code, text)}, return one readable line."""
    parts = []
    for recipient, (code, text) in refused.items():
        if isinstance(text, bytes):
            text = text.decode("utf-8", "replace")
        parts.append(f"{recipient} ({code} {' '.join(str(text).split())})")
    return ", ".join(parts)
