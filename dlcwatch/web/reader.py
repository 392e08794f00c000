"""The web page's view of the state database: read-only, opened afresh for every request.

A fresh connection per request costs well under a millisecond and means the page never holds
the database between requests: the daemon can restart, replace or migrate it at any time.
"""

from __future__ import annotations

import sqlite3
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import quote

from dlcwatch.states import VideoState
from dlcwatch.store import MIGRATIONS, Store

BUSY_TIMEOUT_S = 1.0
PAGE_SIZE = 50
VIDEO_COLUMNS = "id, path, relpath, state, reason, frames, attempts, job_id, updated"


class DatabaseUnavailable(Exception):
    """The state database cannot be read now; the message says why and what to do.

    `kind` is one of: missing, locked, schema, unreadable."""

    def __init__(self, kind: str, message: str):
        super().__init__(message)
        self.kind = kind


@dataclass(frozen=True)
class VideoPage:
    """One page of the video list, newest first, with the ids to page on from."""

    rows: list[dict]
    total: int              # videos matching the filters, on every page
    older_than: int | None  # pass as ?before= for the next page; None on the last page
    newer_than: int | None  # pass as ?after= for the previous page; None on the first page


class ReadOnlyStore(Store):
    """Given a database path, open it read-only for the web page. Raise DatabaseUnavailable.

    Store's read methods work as they are; every write fails, three times over: the URI
    opens the file read-only, `query_only` refuses writes, and nothing here calls one."""

    def __init__(self, path: str | Path, *, busy_timeout_s: float = BUSY_TIMEOUT_S):
        self.path = Path(path)
        if not self.path.is_file():
            raise DatabaseUnavailable("missing", f"no state database at {self.path} yet: has the daemon run? "
                                                 "(the page reads state.database of its config)")
        # A reader of a WAL database needs the -wal and -shm files and creates them if they
        # are missing, which it must not do (nor can it, where the folder is read-only for
        # it). They are missing only while no daemon has the database open; the file is then
        # complete and still, and `immutable` reads it without them.
        quiet = not Path(f"{self.path}-wal").exists()
        uri = f"file:{quote(str(self.path.absolute()))}?mode=ro" + ("&immutable=1" if quiet else "")
        try:
            self._db = sqlite3.connect(uri, uri=True, isolation_level=None, timeout=busy_timeout_s)
        except sqlite3.Error as error:
            raise DatabaseUnavailable("unreadable", f"cannot open the state database {self.path}: {error}") from error
        self._db.row_factory = sqlite3.Row
        try:
            self._db.execute("PRAGMA query_only = ON")
            self._check_schema()
        except DatabaseUnavailable:
            self._db.close()
            raise
        except sqlite3.Error as error:
            self._db.close()
            raise unavailable(error, self.path) from error

    def _check_schema(self) -> None:
        tables = {row[0] for row in self._db.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
        if not {"videos", "migrations"} <= tables:
            raise DatabaseUnavailable("schema", f"{self.path} is not a dlcwatch state database, or the daemon "
                                                "is creating it right now")
        applied = set(self.migrations())
        known = [name for name, _ in MIGRATIONS]
        newer = sorted(applied - set(known))
        if newer:
            raise DatabaseUnavailable("schema", f"the state database {self.path} was written by a newer dlcwatch "
                                                f"(it has {', '.join(newer)}); upgrade dlcwatch here to the "
                                                "daemon's version")
        older = [name for name in known if name not in applied]
        if older:
            raise DatabaseUnavailable("schema", f"the state database {self.path} is of an older dlcwatch (it lacks "
                                                f"{', '.join(older)}); the daemon upgrades it when it starts: is it "
                                                "running, and the same version as this page?")

    def video_page(self, *, state: str | None = None, name: str = "", before: int | None = None,
                   after: int | None = None, size: int = PAGE_SIZE) -> VideoPage:
        """Given a state, a part of the name and a position, return one page of videos, newest first.

        Keyset paging (id < before, or id > after), so page 2,000 costs what page 1 does. A name
        search reads every name once (no index helps with a part of a name) and pages on the ids
        it found."""
        filters, params = _filters(state, name)
        where = " WHERE " + " AND ".join(filters) if filters else ""
        if name:
            ids = [row[0] for row in self._db.execute(f"SELECT id FROM videos{where} ORDER BY id DESC", params)]
            total = len(ids)
        else:
            ids = None
            total = self._db.execute(f"SELECT COUNT(*) FROM videos{where}", params).fetchone()[0]
        going_back = after is not None and before is None
        if ids is not None:
            if going_back:
                chosen = [video_id for video_id in ids if video_id > after][-size:]
            else:
                chosen = [video_id for video_id in ids if before is None or video_id < before][:size]
            newer = bool(chosen) and ids[0] > chosen[0]
            older = bool(chosen) and ids[-1] < chosen[-1]
            marks = ",".join("?" * len(chosen))
            rows = [dict(row) for row in self._db.execute(
                f"SELECT {VIDEO_COLUMNS} FROM videos WHERE id IN ({marks}) ORDER BY id DESC", chosen)]
            return VideoPage(rows, total, rows[-1]["id"] if older else None, rows[0]["id"] if newer else None)
        position = ["id > ?"] if going_back else ["id < ?"] if before is not None else []
        position_params = [after] if going_back else [before] if before is not None else []
        clauses = filters + position
        sql = (f"SELECT {VIDEO_COLUMNS} FROM videos" + (" WHERE " + " AND ".join(clauses) if clauses else "")
               + f" ORDER BY id {'ASC' if going_back else 'DESC'} LIMIT ?")
        rows = [dict(row) for row in self._db.execute(sql, [*params, *position_params, size + 1])]
        more = len(rows) > size
        rows = rows[:size]
        if going_back:
            rows.reverse()
        if not rows:
            return VideoPage([], total, None, None)
        newer = more if going_back else self._any(filters + ["id > ?"], [*params, rows[0]["id"]])
        older = self._any(filters + ["id < ?"], [*params, rows[-1]["id"]]) if going_back else more
        return VideoPage(rows, total, rows[-1]["id"] if older else None, rows[0]["id"] if newer else None)

    def _any(self, where: list[str], params: list) -> bool:
        sql = "SELECT 1 FROM videos WHERE " + " AND ".join(where) + " LIMIT 1"
        return self._db.execute(sql, params).fetchone() is not None

    def recent_messages(self, limit: int = 8) -> list[dict]:
        """Return the newest notifications in the outbox: when, kind, title, sent or why not yet."""
        rows = self._db.execute(
            "SELECT id, created, json_extract(message, '$.kind') AS kind, json_extract(message, '$.title') AS title,"
            " channels, attempts, last_error, sent FROM outbox ORDER BY id DESC LIMIT ?", (int(limit),)).fetchall()
        return [dict(row) for row in rows]


def _filters(state: str | None, name: str) -> tuple[list[str], list]:
    """Given a state and a part of a name, return the WHERE clauses and their parameters."""
    where, params = [], []
    if state:
        where.append("state = ?")
        params.append(VideoState(state).value)
    if name:
        # instr, not LIKE: a name may contain % or _. lower() folds ASCII letters only, on
        # both sides alike, so non-ASCII letters match exactly as typed.
        where.append("instr(lower(relpath), lower(?)) > 0")
        params.append(name)
    return where, params


def unavailable(error: sqlite3.Error, path: Path) -> DatabaseUnavailable:
    """Given an SQLite error while reading, return what to tell a person."""
    text = str(error)
    if "locked" in text or "busy" in text:
        return DatabaseUnavailable("locked", f"the state database {path} is locked by another program right now; "
                                             "the page tries again on its next refresh")
    if isinstance(error, sqlite3.OperationalError) and ("no such" in text):
        return DatabaseUnavailable("schema", f"the state database {path} does not have what this dlcwatch "
                                             f"expects ({text}): are the page and the daemon the same version?")
    return DatabaseUnavailable("unreadable", f"cannot read the state database {path}: {text}")
