"""Run the web page with uvicorn until SIGTERM or Ctrl-C."""

from __future__ import annotations

import logging

import uvicorn

from dlcwatch.config import Node
from dlcwatch.web.access import web_token
from dlcwatch.web.app import create_app

log = logging.getLogger("dlcwatch.web")


def serve(config: Node, host: str, port: int) -> int:
    """Given the config and where to listen (already checked), serve the page; return the exit code."""
    app = create_app(config)
    log.info("read-only web page of %s on http://%s:%d/%s", config.state.database,
             f"[{host}]" if ":" in host else host, port, " (token required)" if web_token(config) else "")
    # No access log: every open page reloads itself every few seconds, which would flood the
    # journal; problems are logged as warnings all the same.
    uvicorn.run(app, host=host, port=port, log_level="warning", access_log=False, server_header=False,
                proxy_headers=False, timeout_graceful_shutdown=5)
    return 0
