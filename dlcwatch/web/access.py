"""Who may see the page: the address it listens on, and the token it asks for off loopback.

Pure functions without the web framework, so `dlcwatch web` refuses a bad setup before it
imports anything of the web extra.
"""

from __future__ import annotations

import hashlib
import hmac
import ipaddress
import os
from pathlib import Path

from dlcwatch.config import SCHEMA, Node
from dlcwatch.errors import ConfigError
from dlcwatch.schema import ListOf, Section

MIN_TOKEN_LENGTH = 16
SESSION_COOKIE = "dlcwatch_web"
LOOPBACK_NAMES = ("localhost", "localhost.localdomain", "ip6-localhost")
PROXY_ADVICE = ("or keep web.listen at 127.0.0.1:8080 and let the lab's reverse proxy (nginx, Apache, "
                "Caddy) serve it with its own login: proxy_pass http://127.0.0.1:8080")


def parse_listen(text: str) -> tuple[str, int]:
    """Given 'HOST:PORT' ('[::1]:PORT' for IPv6), return (host, port). Raise ConfigError."""
    host, colon, port = str(text).strip().rpartition(":")
    host = host[1:-1] if host.startswith("[") and host.endswith("]") else host
    if not colon or not host or not port.isdigit() or not 0 < int(port) < 65536:
        raise ConfigError("dlcwatch web", [f"web.listen: expected HOST:PORT such as 127.0.0.1:8080, got {text!r}"])
    return host, int(port)


def is_loopback(host: str) -> bool:
    """Given a host name or address, return True if only this machine can reach it."""
    if host.lower() in LOOPBACK_NAMES:
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def web_token(config: Node) -> str:
    """Given the config, return the web token: web.token, else the variable named by web.token_env."""
    return config.web.token or (os.environ.get(config.web.token_env, "") if config.web.token_env else "")


def check_access(host: str, token: str) -> None:
    """Given where the page listens and its token, raise ConfigError if that would be unsafe."""
    if token and len(token) < MIN_TOKEN_LENGTH:
        raise ConfigError("dlcwatch web", [
            f"web.token: too short ({len(token)} characters); use at least {MIN_TOKEN_LENGTH}, e.g. "
            "`python3 -c 'import secrets; print(secrets.token_urlsafe(24))'` (value not shown)"])
    if not token and not is_loopback(host):
        raise ConfigError("dlcwatch web", [
            f"web.listen: {host} can be reached from other machines, so the page needs a token: set "
            "DLCWATCH_WEB_TOKEN (e.g. in /etc/dlcwatch/web.env, which dlcwatch-web.service reads) or "
            "web.token, at least "
            f"{MIN_TOKEN_LENGTH} characters; {PROXY_ADVICE}"])


def session_value(token: str) -> str:
    """Given the token, return what the session cookie holds: a digest, so the cookie is not the token."""
    return hmac.new(token.encode(), b"dlcwatch web session", hashlib.sha256).hexdigest()


def request_allowed(token: str, authorization: str | None, cookie: str | None) -> bool:
    """Given the token (empty: none needed), an Authorization header and the session cookie, say yes or no."""
    if not token:
        return True
    scheme, _, given = (authorization or "").partition(" ")
    if scheme.lower() == "bearer" and hmac.compare_digest(given.strip().encode(), token.encode()):
        return True
    return bool(cookie) and hmac.compare_digest(cookie.encode(), session_value(token).encode())


def config_secrets(config: Node) -> list[str]:
    """Given the config, return every secret it holds or names: what no page may ever show.

    That is each option marked secret (and the environment variable named by its `_env`
    companion), and every ssh identity file, wherever the schema has one."""
    found: list[str] = []

    def walk(section: Section, values: dict) -> None:
        for key, spec in section.options.items():
            value = values.get(key)
            if isinstance(spec, Section):
                walk(spec, value or {})
            elif isinstance(spec, ListOf):
                for item in value or []:
                    walk(spec.item, item)
            elif spec.secret or key == "identity_file":
                found.append(value or "")
                env_name = values.get(f"{key}_env")
                if env_name:
                    found.append(os.environ.get(env_name, ""))
                if key == "identity_file" and value:
                    found.append(Path(value).name)
    walk(SCHEMA, config)
    return [secret for secret in found if secret]
