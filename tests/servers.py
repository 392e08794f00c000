"""Real servers on 127.0.0.1 for the notification tests: SMTP, HTTP, a silent socket, a closed port.

A plain module (not a conftest): the tests import the context managers they need. Every
server listens on 127.0.0.1 only, on a port the kernel picks, and stops when its ``with``
block ends.
"""

from __future__ import annotations

import contextlib
import json
import shutil
import socket
import ssl
import subprocess
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

from aiosmtpd.controller import Controller
from aiosmtpd.smtp import AuthResult, LoginPassword

LOOPBACK = "127.0.0.1"


# --- SMTP -------------------------------------------------------------------------------


@dataclass
class StoredMail:
    """One message as the SMTP server received it."""

    sender: str
    recipients: list[str]
    data: bytes
    authenticated_as: str | None


class StoringHandler:
    """An aiosmtpd handler that keeps every message it accepts."""

    def __init__(self) -> None:
        self.messages: list[StoredMail] = []

    async def handle_DATA(self, server, session, envelope):  # noqa: N802 - aiosmtpd's name
        login = session.auth_data.login.decode() if isinstance(session.auth_data, LoginPassword) else None
        self.messages.append(StoredMail(envelope.mail_from, list(envelope.rcpt_tos),
                                        envelope.original_content or envelope.content, login))
        return "250 Message accepted for delivery"


class _PortZeroController(Controller):
    """aiosmtpd's Controller on a kernel-chosen port (port 0), learned once it listens."""

    def _trigger_server(self):
        self.port = self.server.sockets[0].getsockname()[1]
        super()._trigger_server()


@dataclass
class SMTPServer:
    host: str
    port: int
    handler: StoringHandler

    @property
    def messages(self) -> list[StoredMail]:
        return self.handler.messages


def password_authenticator(username: str, password: str):
    """Given the one valid login, return an aiosmtpd authenticator accepting only it."""

    def authenticate(server, session, envelope, mechanism, auth_data):
        ok = (isinstance(auth_data, LoginPassword) and auth_data.login.decode() == username
              and auth_data.password.decode() == password)
        # handled=False: aiosmtpd answers 235 or 535 itself.
        return AuthResult(success=ok, handled=False, auth_data=auth_data if ok else None)

    return authenticate


@contextlib.contextmanager
def smtp_server(*, implicit_tls: ssl.SSLContext | None = None, starttls: ssl.SSLContext | None = None,
                login: tuple[str, str] | None = None, auth_required: bool = False) -> Iterator[SMTPServer]:
    """Run an SMTP server on 127.0.0.1 that stores what it receives.

    ``implicit_tls``: a server context for SMTPS (TLS from the first byte);
    ``starttls``: a server context offered through STARTTLS (then required);
    ``login``: (username, password) accepted by AUTH, which is offered only after TLS.
    """
    handler = StoringHandler()
    kwargs: dict = {"server_hostname": "localhost", "ready_timeout": 5.0}
    if implicit_tls is not None:
        kwargs["ssl_context"] = implicit_tls
    if starttls is not None:
        kwargs.update(tls_context=starttls, require_starttls=True)
    if login is not None:
        # aiosmtpd only knows about TLS it started itself (STARTTLS); under implicit TLS it
        # would hide AUTH, although the connection is encrypted from the first byte.
        kwargs.update(authenticator=password_authenticator(*login), auth_require_tls=implicit_tls is None)
    if auth_required:
        kwargs["auth_required"] = True
    controller = _PortZeroController(handler, hostname=LOOPBACK, port=0, **kwargs)
    controller.start()
    try:
        yield SMTPServer(LOOPBACK, controller.port, handler)
    finally:
        controller.stop()


@dataclass
class Certificate:
    cert: Path
    key: Path

    def server_context(self) -> ssl.SSLContext:
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        context.load_cert_chain(self.cert, self.key)
        return context


def make_self_signed_certificate(directory: Path) -> Certificate:
    """Given a folder, write a self-signed certificate for 127.0.0.1 and localhost there.

    Uses the openssl command (an EC key: generated in milliseconds). Raise RuntimeError when
    openssl is missing or fails.
    """
    openssl = shutil.which("openssl")
    if openssl is None:
        raise RuntimeError("the openssl command is not installed")
    cert, key = directory / "cert.pem", directory / "key.pem"
    result = subprocess.run(
        [openssl, "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1",
         "-nodes", "-keyout", str(key), "-out", str(cert), "-days", "2", "-subj", "/CN=localhost",
         "-addext", "subjectAltName=IP:127.0.0.1,DNS:localhost"],
        capture_output=True, text=True, timeout=30,
    )
    if result.returncode != 0:
        raise RuntimeError(f"openssl failed: {result.stderr.strip()}")
    return Certificate(cert, key)


# --- HTTP (the Slack webhook stand-in) ---------------------------------------------------


@dataclass
class ReceivedRequest:
    path: str
    headers: dict[str, str]
    body: bytes

    def json(self):
        return json.loads(self.body)


@dataclass
class HTTPServer:
    host: str
    port: int
    requests: list[ReceivedRequest] = field(default_factory=list)

    def url(self, path: str) -> str:
        return f"http://{self.host}:{self.port}{path}"


@contextlib.contextmanager
def http_server(status: int = 200, body: bytes = b"ok", *, hang: bool = False) -> Iterator[HTTPServer]:
    """Run an HTTP server on 127.0.0.1 that records each POST and answers status + body.

    ``hang``: read the request, then never answer (until the server stops).
    """
    release = threading.Event()
    record = HTTPServer(LOOPBACK, 0)

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self):  # noqa: N802 - http.server's name
            length = int(self.headers.get("Content-Length") or 0)
            data = self.rfile.read(length)
            record.requests.append(ReceivedRequest(self.path, dict(self.headers), data))
            if hang:
                release.wait(30)
                return
            self.send_response(status)
            self.send_header("Content-Type", "text/plain")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, format, *args):  # keep test output clean
            pass

    server = ThreadingHTTPServer((LOOPBACK, 0), Handler)
    server.daemon_threads = True
    record.port = server.server_address[1]
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    try:
        yield record
    finally:
        release.set()
        server.shutdown()
        server.server_close()
        thread.join(5)


# --- Sockets that do not answer -----------------------------------------------------------


@contextlib.contextmanager
def silent_tcp_server() -> Iterator[int]:
    """Listen on 127.0.0.1 and never accept: connections succeed, no byte ever comes. Yield the port."""
    listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    try:
        listener.bind((LOOPBACK, 0))
        listener.listen(8)
        yield listener.getsockname()[1]
    finally:
        listener.close()


def closed_port() -> int:
    """Return a port on 127.0.0.1 that nothing listens on (bound once, then released)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind((LOOPBACK, 0))
        return probe.getsockname()[1]
