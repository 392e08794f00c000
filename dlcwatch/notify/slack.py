"""The Slack channel: an incoming webhook, posted with requests.

The whole webhook URL is a secret (its path is the token), so it never reaches a log line,
an exception or a return value: errors are rewritten here, and the debug log lines of
urllib3 (which print the request path) are redacted by a logging filter.
"""

from __future__ import annotations

import logging
import socket
import threading
from collections.abc import Mapping
from urllib.parse import urlsplit

from dlcwatch.notify import Message, NotifyError, resolve_secret, scrub

CHANNEL = "slack"

DEFAULTS: dict = {
    "enabled": False,
    "webhook_url": "",
    "webhook_url_env": "DLCWATCH_SLACK_WEBHOOK",
    "timeout_s": 10,
}

# A Slack message is a glance, not a report: the full list goes to email and the logs.
MAX_LINES = 10
MAX_FIELDS = 10  # Slack's own limit for a section's fields
HEADER_LIMIT = 150  # Slack's limit for header text
SECTION_LIMIT = 3000  # Slack's limit for a section's text
FIELD_LIMIT = 2000  # Slack's limit for one field

KIND_EMOJI = {"alert": ":rotating_light:", "batch_done": ":white_check_mark:", "digest": ":bar_chart:"}

logger = logging.getLogger("dlcwatch.notify")


def _settings(settings: Mapping | None) -> dict:
    """Given the Slack settings (maybe partial), return them with the defaults filled in."""
    merged = dict(DEFAULTS)
    merged.update({k: v for k, v in dict(settings or {}).items() if v is not None})
    return merged


def _url_secrets(url: str) -> list[str]:
    """Given a webhook URL, return every piece of it that must be scrubbed.

    The URL itself, its path (urllib3 prints only the path) and each long path segment
    (the token parts, in case a library prints one alone or percent-encoded differently).
    """
    if not url:
        return []
    pieces = [url]
    try:
        parts = urlsplit(url)
    except ValueError:
        return pieces
    if parts.path:
        pieces.append(parts.path)
        pieces.extend(segment for segment in parts.path.split("/") if len(segment) >= 8)
    if parts.query:
        pieces.append(parts.query)
    return pieces


def secrets(settings: Mapping | None) -> list[str]:
    """Given the Slack settings, return the secrets they resolve to (for scrubbing)."""
    cfg = _settings(settings)
    return _url_secrets(resolve_secret(cfg["webhook_url"], cfg["webhook_url_env"]))


class _RedactFilter(logging.Filter):
    """Redact known webhook secrets from records of the loggers it is attached to.

    urllib3 logs ``"POST /services/T.../B.../token HTTP/1.1" 200`` at debug level, so a
    service running with debug logging would write the token to the journal.
    """

    def __init__(self) -> None:
        super().__init__()
        self._secrets: set[str] = set()
        self._lock = threading.Lock()

    def add(self, pieces: list[str]) -> None:
        with self._lock:
            self._secrets.update(p for p in pieces if p and len(p) >= 4)

    def filter(self, record: logging.LogRecord) -> bool:
        if not self._secrets:
            return True
        with self._lock:
            secrets_now = list(self._secrets)
        try:
            text = record.getMessage()
        except Exception:  # noqa: BLE001 - a broken record is not ours to fix
            return True
        cleaned = scrub(text, secrets_now)
        if cleaned != text:
            record.msg, record.args = cleaned, None
        return True


_redact_filter = _RedactFilter()
# Filters on a logger apply only to records created on that very logger, not its children,
# so each urllib3 logger that can print a URL gets the filter.
for _name in ("urllib3.connectionpool", "urllib3.util.retry", "urllib3.connection"):
    logging.getLogger(_name).addFilter(_redact_filter)


def _truncate(text: str, limit: int) -> str:
    """Given a text and a length limit, return the text cut to the limit with an ellipsis."""
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _mrkdwn_escape(text: str) -> str:
    """Given plain text, return it escaped for Slack mrkdwn (only &, < and > need it)."""
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def build_payload(message: Message) -> dict:
    """Given a message, return the webhook JSON: Block Kit blocks plus a ``text`` fallback.

    Blocks: a header, a section with the summary and at most MAX_LINES list items (then
    "and N more"), a section of fields, and a context line naming the kind and host.
    """
    emoji = KIND_EMOJI.get(message.kind, "")
    title = _truncate(f"{emoji} {message.title}".strip(), HEADER_LIMIT)

    shown = list(message.lines[:MAX_LINES])
    more = len(message.lines) - len(shown)
    body = _mrkdwn_escape(message.summary.strip())
    if shown:
        body += "\n" + "\n".join(f"• {_mrkdwn_escape(line)}" for line in shown)
    if more > 0:
        body += f"\n_… and {more} more_"
    blocks: list[dict] = [
        {"type": "header", "text": {"type": "plain_text", "text": title, "emoji": True}},
        {"type": "section", "text": {"type": "mrkdwn", "text": _truncate(body or " ", SECTION_LIMIT)}},
    ]

    fields = list(message.fields.items())
    if fields:
        shown_fields = fields[:MAX_FIELDS]
        if len(fields) > MAX_FIELDS:
            # The last slot says how many did not fit, instead of dropping them silently.
            shown_fields = fields[: MAX_FIELDS - 1] + [("…", f"and {len(fields) - MAX_FIELDS + 1} more")]
        blocks.append({
            "type": "section",
            "fields": [
                {"type": "mrkdwn",
                 "text": _truncate(f"*{_mrkdwn_escape(k)}*\n{_mrkdwn_escape(v)}", FIELD_LIMIT)}
                for k, v in shown_fields
            ],
        })

    context = f"dlcwatch · {message.kind} · {socket.gethostname()}"
    if message.attachments:
        names = ", ".join(p.name for p in message.attachments)
        context += f" · attached to the email: {_mrkdwn_escape(names)}"
    blocks.append({"type": "context", "elements": [{"type": "mrkdwn", "text": _truncate(context, 3000)}]})

    fallback = f"[dlcwatch] {message.title}: {message.summary.strip()}"
    return {"text": _truncate(fallback, SECTION_LIMIT), "blocks": blocks}


def send(message: Message, settings: Mapping) -> None:
    """Given a message and the Slack settings, post it to the incoming webhook.

    Sends whether or not ``enabled`` is set (the dispatcher checks that). Raise NotifyError
    when Slack did not answer 200, with a reason that never contains the webhook URL.
    """
    import requests  # here, so that the email channel works where requests is missing

    cfg = _settings(settings)
    url = resolve_secret(cfg["webhook_url"], cfg["webhook_url_env"])
    if not url:
        raise NotifyError(CHANNEL, f"no webhook URL: set slack.webhook_url or the environment "
                                   f"variable {cfg['webhook_url_env']}")
    try:
        parts = urlsplit(url)
        host = parts.hostname or ""
    except ValueError:
        parts, host = None, ""
    if parts is None or parts.scheme not in ("https", "http") or not host:
        raise NotifyError(CHANNEL, "the webhook URL is not an http(s) URL")
    pieces = _url_secrets(url)
    _redact_filter.add(pieces)

    timeout = _positive_number(cfg["timeout_s"])
    if timeout is None:
        raise NotifyError(CHANNEL, f"slack.timeout_s must be a positive number, not {cfg['timeout_s']!r}")
    try:
        payload = build_payload(message)
        # (connect, read) timeouts: requests has none by default and would wait forever.
        # Redirects are not followed: a webhook never redirects, and following one would
        # send the message somewhere else.
        response = requests.post(url, json=payload, timeout=(timeout, timeout), allow_redirects=False)
        status, body = response.status_code, response.text[:300]
        response.close()
    except requests.Timeout:
        reason = f"no answer from {host} within {timeout:g} s"
    except requests.ConnectionError as error:
        reason = f"could not connect to {host}: {_innermost(error)}"
    except requests.RequestException as error:
        reason = f"request to {host} failed: {type(error).__name__}: {_innermost(error)}"
    else:
        if status == 200:
            return
        # Slack answers e.g. 403 invalid_token, 404 no_service, 410 channel_is_archived.
        reason = f"{host} answered HTTP {status}: {' '.join(body.split()) or '(empty body)'}"
    raise NotifyError(CHANNEL, scrub(reason, pieces)) from None


def _positive_number(value) -> float | None:
    """Given a setting, return it as a positive float, or None when it is not one."""
    try:
        number = float(value)
    except (TypeError, ValueError):
        return None
    return number if number > 0 else None


def _innermost(error: BaseException) -> str:
    """Given a requests exception, return the text of its root cause, which is the useful part.

    requests wraps urllib3's MaxRetryError, whose text names the URL path; the innermost
    cause (e.g. "[Errno 111] Connection refused") does not. The caller scrubs anyway.
    """
    seen = set()
    current: BaseException = error
    while True:
        nxt = getattr(current, "reason", None)
        if not isinstance(nxt, BaseException):
            nxt = current.__cause__ or current.__context__
        if nxt is None or id(nxt) in seen or nxt is current:
            break
        seen.add(id(nxt))
        current = nxt
    text = str(current)
    # urllib3 prefixes its connection errors with the connection object's repr.
    if ": " in text and text.startswith("<"):
        text = text.split(": ", 1)[1]
    return f"{type(current).__name__}: {text}" if text else type(current).__name__


__all__ = ["send", "build_payload", "secrets", "DEFAULTS"]
