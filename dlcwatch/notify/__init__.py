"""Notifications: one message type, one dispatcher, one module per channel.

A channel module (``email``, ``slack``) exposes ``send(message, settings)`` and raises
``NotifyError`` when the message did not get through. ``send_all`` sends to every enabled
channel and never raises, because a failed notification must never stop the daemon; the
daemon decides whether to retry later.

Secrets (the SMTP password, the Slack webhook URL, which carries its token in the path) are
scrubbed from every error text this package produces, and ``send_all`` scrubs once more.
"""

from __future__ import annotations

import importlib
import logging
import os
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path

from dlcwatch.errors import NotifyError

__all__ = ["KINDS", "CHANNELS", "Message", "NotifyError", "send_all", "resolve_secret", "scrub"]

logger = logging.getLogger("dlcwatch.notify")

KINDS = ("batch_done", "alert", "digest")

# Channel name -> module name inside this package; the order is the order of sending.
CHANNELS = ("email", "slack")

REDACTED = "[redacted]"


@dataclass(frozen=True)
class Message:
    """One notification, independent of the channel that carries it.

    ``kind`` is one of KINDS; ``title`` is one line; ``summary`` is a short paragraph;
    ``lines`` are list items (channels may shorten the list); ``fields`` are short
    key/value facts; ``attachments`` are files (the email channel attaches them, Slack
    webhooks cannot carry files and only name them).

    Sequences are stored as tuples and ``fields`` as a copy, so the caller's lists cannot
    change a message after it is made. ``to_dict``/``from_dict`` give a JSON-ready form, for
    a daemon that keeps failed notifications to retry them later.
    """

    kind: str
    title: str
    summary: str
    lines: tuple[str, ...] = ()
    fields: Mapping[str, str] = field(default_factory=dict)
    attachments: tuple[Path, ...] = ()

    def __post_init__(self) -> None:
        if self.kind not in KINDS:
            raise ValueError(f"message kind must be one of {', '.join(KINDS)}, not {self.kind!r}")
        # object.__setattr__ because the dataclass is frozen; this runs once, at creation.
        object.__setattr__(self, "title", " ".join(str(self.title).split()))
        object.__setattr__(self, "summary", str(self.summary))
        object.__setattr__(self, "lines", tuple(str(line) for line in self.lines))
        object.__setattr__(self, "fields", {str(k): str(v) for k, v in dict(self.fields).items()})
        object.__setattr__(self, "attachments", tuple(Path(p) for p in self.attachments))

    def to_dict(self) -> dict:
        """Return the message as plain JSON types."""
        return {"kind": self.kind, "title": self.title, "summary": self.summary,
                "lines": list(self.lines), "fields": dict(self.fields),
                "attachments": [str(p) for p in self.attachments]}

    @classmethod
    def from_dict(cls, data: Mapping) -> Message:
        """Given the output of to_dict, return the message. Raise KeyError or ValueError."""
        return cls(kind=data["kind"], title=data["title"], summary=data["summary"],
                   lines=data.get("lines", ()), fields=data.get("fields", {}),
                   attachments=data.get("attachments", ()))


def resolve_secret(value: str | None, env_name: str | None) -> str:
    """Given a configured value and the name of an environment variable, return the secret.

    The configured value wins when it is not empty; otherwise the environment variable is
    read. Return "" when neither is set.
    """
    if value:
        return str(value)
    if env_name:
        return os.environ.get(env_name, "")
    return ""


def scrub(text: str, secrets: Iterable[str]) -> str:
    """Given a text and some secrets, return the text with every secret replaced by [redacted].

    Longer secrets are replaced first, so a secret that contains another one (a URL and
    its path) is removed whole. Secrets shorter than 4 characters are left alone: replacing
    them would mangle ordinary words and they are not worth protecting that way.
    """
    for secret in sorted({s for s in secrets if s and len(s) >= 4}, key=len, reverse=True):
        text = text.replace(secret, REDACTED)
    return text


def _channel_secrets(settings: Mapping) -> list[str]:
    """Given the notification settings, return every secret they name, for scrubbing."""
    secrets: list[str] = []
    for channel in CHANNELS:
        try:
            module = importlib.import_module(f"{__name__}.{channel}")
            secrets.extend(module.secrets(settings.get(channel) or {}))
        except Exception:  # noqa: BLE001 - scrubbing must never be the thing that fails
            continue
    return secrets


def send_all(message: Message, settings: Mapping) -> dict[str, str | None]:
    """Given a message and ``{"email": {...}, "slack": {...}}``, send to every enabled channel.

    Return ``{channel: None}`` for each enabled channel that delivered and
    ``{channel: "error text"}`` for each that failed; channels that are disabled or absent
    are not in the result. Never raise: failures are logged as warnings on
    ``dlcwatch.notify`` and returned, with secrets removed.
    """
    results: dict[str, str | None] = {}
    try:
        enabled = [
            name for name in CHANNELS
            if isinstance(settings, Mapping)
            and isinstance(settings.get(name), Mapping)
            and settings[name].get("enabled", False)
        ]
    except Exception as error:  # noqa: BLE001 - a settings object we cannot read
        logger.warning("notification settings unreadable (%s); nothing sent", type(error).__name__)
        return results
    if not enabled:
        return results
    secrets = _channel_secrets(settings)
    for name in enabled:
        try:
            # Imported here so that a channel whose dependency is missing (requests for
            # Slack) fails alone instead of taking the other channels with it.
            module = importlib.import_module(f"{__name__}.{name}")
            module.send(message, settings[name])
            results[name] = None
        except NotifyError as error:
            results[name] = scrub(error.reason, secrets)
        except Exception as error:  # noqa: BLE001 - a channel bug must not stop the daemon
            results[name] = scrub(f"unexpected {type(error).__name__}: {error}", secrets)
        if results[name] is not None:
            logger.warning("notification %r via %s failed: %s", getattr(message, "title", "?"), name,
                           results[name])
    return results
