"""The web page: server-rendered HTML and JSON, read from the state database and nothing else.

Every number comes from the same functions as `dlcwatch status` and `dlcwatch show`, so the page
and the command line cannot disagree. Every text reaches HTML through Jinja2's autoescaping and,
before that, through the scrubber that removes the config's secrets.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import sqlite3
import threading
import time
from importlib import resources
from pathlib import Path
from typing import Any, Callable, Iterator
from urllib.parse import parse_qs, urlencode

import jinja2
from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.middleware import Middleware
from starlette.middleware.base import BaseHTTPMiddleware
from starlette.requests import Request
from starlette.responses import FileResponse, HTMLResponse, JSONResponse, RedirectResponse, Response
from starlette.routing import Route

import dlcwatch
from dlcwatch.config import Node
from dlcwatch.notify import scrub
from dlcwatch.states import VIDEO_NEEDS_A_PERSON
from dlcwatch.status import STATE_ORDER, format_duration, headline, show_data, status_data
from dlcwatch.web.access import SESSION_COOKIE, config_secrets, request_allowed, session_value, web_token
from dlcwatch.web.files import read_manifest, result_file, results_folder, viewable_files
from dlcwatch.errors import DatabaseUnavailable
from dlcwatch.store import ReadOnlyStore, unavailable

LOG_TAIL_LINES = 60
LOG_TAIL_BYTES = 64 * 1024
SEARCH_MAX_CHARS = 200
STATIC = {"style.css": "text/css; charset=utf-8", "refresh.js": "text/javascript; charset=utf-8"}
SECURITY_HEADERS = {
    # Nothing inline may run, so even a name that slipped past escaping could not execute.
    "Content-Security-Policy": "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self'; "
                               "media-src 'self'; form-action 'self'; base-uri 'none'; frame-ancestors 'none'",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
}
# What a person can do about a video in a state that needs one (the page itself changes nothing).
NEXT_STEP = {
    "quarantined": "The file is not a usable video. Replace or repair it where it is, then ask whoever "
                   "runs dlcwatch for `dlcwatch retry {id}`.",
    "failed": "The analysis gave up. Read the reason and the job's log, fix the cause, then ask for "
              "`dlcwatch retry {id}`.",
    "missing": "The file disappeared before it was analyzed. Put it back, then ask for `dlcwatch retry {id}`.",
    "duplicate": "The same content as an earlier video; its results are there.",
}


class SharedStatus:
    """status_data for every request and viewer, recomputed in the background once older than max_age_s.

    At 100,000 videos status_data takes about a quarter of a second (it scans the events table
    twice and sorts the videos; see bench/README.md). Computed once per interval for all viewers,
    a page answers at once, with numbers at most one refresh old. After a failure, or the first
    time, the request computes and waits, so an unreadable database is reported at once."""

    def __init__(self, compute: Callable[[], dict], max_age_s: float):
        self._compute = compute
        self._max_age_s = max_age_s
        self._lock = threading.Lock()
        self._latest: tuple[float, dict | None] = (0.0, None)
        self._refreshing = False

    def get(self) -> dict:
        with self._lock:
            at, value = self._latest
            if value is not None:
                if time.monotonic() - at >= self._max_age_s and not self._refreshing:
                    self._refreshing = True
                    threading.Thread(target=self._refresh_in_background, daemon=True).start()
                return value
        return self._refresh()

    def _refresh(self) -> dict:
        try:
            value = self._compute()
        except Exception:
            with self._lock:
                self._latest = (time.monotonic(), None)
            raise
        with self._lock:
            self._latest = (time.monotonic(), value)
        return value

    def _refresh_in_background(self) -> None:
        try:
            self._refresh()
        except Exception:  # noqa: BLE001 - the next request computes again and reports it
            pass
        finally:
            with self._lock:
                self._refreshing = False


class Site:
    """Given the config, hold what every request needs: the database path, templates, secrets."""

    def __init__(self, config: Node):
        self.database = Path(config.state.database)
        self.token = web_token(config)
        self.refresh_s = config.web.refresh_s
        secrets = config_secrets(config)
        self.scrub = lambda text: scrub(text, secrets)
        self.templates = jinja2.Environment(
            loader=jinja2.PackageLoader("dlcwatch.web", "templates"), autoescape=True,
            undefined=jinja2.StrictUndefined, finalize=self._finalize)
        self.templates.filters.update(duration=format_duration, clock=_clock, name=lambda path: Path(path).name)
        self.status = SharedStatus(self._status_now, max_age_s=self.refresh_s)
        self.static = {name: resources.files("dlcwatch.web").joinpath("static", name).read_bytes() for name in STATIC}

    def _finalize(self, value: Any) -> Any:
        if value is None:
            return ""
        return self.scrub(value) if isinstance(value, str) else value

    def _status_now(self) -> dict:
        with self.store() as store:
            return status_data(store)

    @contextlib.contextmanager
    def store(self) -> Iterator[ReadOnlyStore]:
        """Open the database for one request; turn any SQLite error into DatabaseUnavailable."""
        store = ReadOnlyStore(self.database)
        try:
            yield store
        except sqlite3.Error as error:
            raise unavailable(error, self.database) from error
        finally:
            store.close()

    def render(self, template: str, status_code: int = 200, **context: Any) -> HTMLResponse:
        html = self.templates.get_template(template).render(
            refresh_s=self.refresh_s, version=dlcwatch.__version__, now=time.time(), **context)
        return HTMLResponse(html, status_code=status_code, headers={"Cache-Control": "no-store"})

    def json(self, data: Any, status_code: int = 200) -> JSONResponse:
        return JSONResponse(_scrub_data(data, self.scrub), status_code=status_code,
                            headers={"Cache-Control": "no-store"})


def create_app(config: Node) -> Starlette:
    """Given the config, return the web application (an ASGI app)."""
    site = Site(config)

    def overview(request: Request) -> Response:
        with site.store() as store:
            data = site.status.get()
            attention = store.videos(VIDEO_NEEDS_A_PERSON, order="recent", limit=20)
            messages = store.recent_messages()
        return site.render("overview.html", page="overview", data=data, headline=headline(data),
                           attention=attention, messages=messages)

    def videos(request: Request) -> Response:
        state = request.query_params.get("state") or None
        state = state if state in STATE_ORDER else None
        name = request.query_params.get("q", "").strip()[:SEARCH_MAX_CHARS]
        before, after = _int_param(request, "before"), _int_param(request, "after")
        with site.store() as store:
            page = store.video_page(state=state, name=name, before=before, after=after)
        filters = {key: value for key, value in (("state", state), ("q", name)) if value}
        return site.render("videos.html", page="videos", videos=page.rows, total=page.total, state=state, name=name,
                           states=STATE_ORDER,
                           older=_link("/videos", filters, before=page.older_than) if page.older_than else None,
                           newer=_link("/videos", filters, after=page.newer_than) if page.newer_than else None)

    def video(request: Request) -> Response:
        video_id = request.path_params["video_id"]
        with site.store() as store:
            found = _found(store.video, video_id)
            details = show_data(store, found)
            job = _found(store.job, found.job_id) if found.job_id else None
        manifest = read_manifest(found)
        elsewhere = bool(found.output_dir) and results_folder(found) is None
        return site.render("video.html", page="videos", video=found, details=details, job=job,
                           manifest_text=json.dumps(manifest, indent=2, ensure_ascii=False) if manifest else None,
                           files=viewable_files(found, manifest), remote=elsewhere,
                           next_step=NEXT_STEP.get(found.state.value, "").format(id=found.id))

    def job(request: Request) -> Response:
        job_id = request.path_params["job_id"]
        with site.store() as store:
            found = _found(store.job, job_id)
            members = [store.video(video_id) for video_id in store.job_video_ids(job_id)]
            events = store.events(job_id=job_id)
        return site.render("job.html", page="jobs", job=found, videos=members, events=events,
                           resources=json.dumps(found.resources, sort_keys=True) if found.resources else "",
                           log=_log_tail(found.log_path),
                           elapsed=(found.ended or time.time()) - (found.started or found.created))

    def api_status(request: Request) -> Response:
        with site.store():  # reports a database that cannot be read now, even when the status is fresh
            return site.json(site.status.get())

    def api_video(request: Request) -> Response:
        with site.store() as store:
            return site.json(show_data(store, _found(store.video, request.path_params["video_id"])))

    def result(request: Request) -> Response:
        with site.store() as store:
            found = _found(store.video, request.path_params["video_id"])
        served = result_file(found, request.path_params["kind"])
        if served is None:
            raise HTTPException(404)
        path, media_type = served
        return FileResponse(path, media_type=media_type, headers={"Cache-Control": "private, max-age=30"})

    def static(request: Request) -> Response:
        name = request.path_params["name"]
        if name not in STATIC:
            raise HTTPException(404)
        return Response(site.static[name], media_type=STATIC[name], headers={"Cache-Control": "max-age=3600"})

    async def login(request: Request) -> Response:
        if not site.token:
            return RedirectResponse("/", status_code=303)
        if request.method == "GET":
            return site.render("login.html", page="login", wrong=False)
        body = await request.body()
        given = parse_qs(body[:4096].decode("utf-8", "replace")).get("token", [""])[0]
        if not request_allowed(site.token, f"Bearer {given}", None):
            await asyncio.sleep(1.0)  # a guess costs a second
            return site.render("login.html", 401, page="login", wrong=True)
        response = RedirectResponse("/", status_code=303)
        response.set_cookie(SESSION_COOKIE, session_value(site.token), max_age=30 * 86400, httponly=True,
                            samesite="strict", secure=request.url.scheme == "https")
        return response

    async def guard(request: Request, call_next) -> Response:
        path = request.url.path
        open_paths = ("/login", "/static/style.css")
        if site.token and path not in open_paths and not request_allowed(
                site.token, request.headers.get("authorization"), request.cookies.get(SESSION_COOKIE)):
            if path.startswith("/api/"):
                response: Response = JSONResponse({"error": "a token is required (Authorization: Bearer TOKEN)"}, 401)
            else:
                response = site.render("login.html", 401, page="login", wrong=False)
        else:
            response = await call_next(request)
        response.headers.update(SECURITY_HEADERS)
        return response

    def database_problem(request: Request, error: DatabaseUnavailable) -> Response:
        if request.url.path.startswith("/api/"):
            return site.json({"error": str(error), "kind": error.kind}, 503)
        return site.render("problem.html", 503, page="", title="The state database cannot be read",
                           message=str(error), kind=error.kind)

    def not_found(request: Request, error: HTTPException) -> Response:
        if request.url.path.startswith("/api/"):
            return site.json({"error": "not found"}, 404)
        return site.render("problem.html", 404, page="", title="Not found",
                           message="There is nothing at this address.", kind="not_found")

    routes = [
        Route("/", overview),
        Route("/videos", videos),
        Route("/videos/{video_id:int}", video),
        Route("/jobs/{job_id:int}", job),
        Route("/api/status", api_status),
        Route("/api/videos/{video_id:int}", api_video),
        Route("/files/{video_id:int}/{kind:str}", result),
        Route("/static/{name:str}", static),
        Route("/login", login, methods=["GET", "POST"]),
    ]
    return Starlette(routes=routes, middleware=[Middleware(BaseHTTPMiddleware, dispatch=guard)],
                     exception_handlers={DatabaseUnavailable: database_problem, 404: not_found})


def _found(lookup, key: int):
    """Given a store lookup and an id, return the row or answer 404."""
    try:
        return lookup(key)
    except KeyError:
        raise HTTPException(404) from None


def _int_param(request: Request, name: str) -> int | None:
    value = request.query_params.get(name, "")
    return int(value) if value.isdigit() and len(value) < 19 else None


def _link(path: str, filters: dict, **position: int) -> str:
    return f"{path}?{urlencode({**filters, **position})}"


def _clock(timestamp: float | None) -> str:
    return time.strftime("%Y-%m-%d %H:%M:%S %Z", time.localtime(timestamp)) if timestamp else ""


def _log_tail(path: str | None) -> str | None:
    """Given a job's log file, return its last lines, or None if it cannot be read here."""
    if not path:
        return None
    try:
        with open(path, "rb") as stream:
            stream.seek(0, 2)
            stream.seek(max(0, stream.tell() - LOG_TAIL_BYTES))
            data = stream.read()
    except OSError:
        return None
    return "\n".join(data.decode("utf-8", "replace").splitlines()[-LOG_TAIL_LINES:])


def _scrub_data(data: Any, scrub_text) -> Any:
    """Given JSON-ready data, return it with every secret removed from every string."""
    if isinstance(data, str):
        return scrub_text(data)
    if isinstance(data, dict):
        return {key: _scrub_data(value, scrub_text) for key, value in data.items()}
    if isinstance(data, (list, tuple)):
        return [_scrub_data(value, scrub_text) for value in data]
    return data
