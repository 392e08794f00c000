"""The state database: the only module that speaks SQL.

SQLite in WAL mode, so `dlcwatch status` can read while the daemon writes. Every change of a
video's or a job's state happens in one transaction together with its row in `events`, the
audit trail a person reads when asking "what happened to this video?".
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import logging
import sqlite3
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterable, Iterator
from urllib.parse import quote

from dlcwatch.errors import DatabaseUnavailable, StoreError
from dlcwatch.files import create_private_file, make_private_folder
from dlcwatch.states import (
    JOB_ACTIVE,
    VIDEO_NEEDS_A_PERSON,
    JobState,
    TransitionError,
    VideoState,
    check_job_transition,
    check_video_transition,
)

BUSY_TIMEOUT_MS = 30_000
event_log = logging.getLogger("dlcwatch.events")
ATTENTION_STATES = {state.value for state in VIDEO_NEEDS_A_PERSON} | {JobState.FAILED.value}

# Named migrations, applied in order, each in one transaction with its record. Statements are split
# on ';', so comments inside them must not contain one.
MIGRATIONS: list[tuple[str, str]] = [
    (
        "0001_initial",
        """
        CREATE TABLE videos (
            id INTEGER PRIMARY KEY,
            path TEXT NOT NULL UNIQUE,       -- absolute path of the source video
            root TEXT NOT NULL,              -- the watch root it was found under
            relpath TEXT NOT NULL,           -- path relative to that root
            state TEXT NOT NULL,
            reason TEXT NOT NULL DEFAULT '', -- why it is in this state, for a person
            size INTEGER,
            mtime_ns INTEGER,
            stable_since REAL,               -- when size and mtime were last seen to change
            sha256 TEXT,
            frames INTEGER,
            fps REAL,
            duration REAL,
            codec TEXT,
            width INTEGER,
            height INTEGER,
            duplicate_of INTEGER REFERENCES videos(id),
            job_id INTEGER REFERENCES jobs(id),
            attempts INTEGER NOT NULL DEFAULT 0,
            not_before REAL,                 -- a retry waits until then
            output_dir TEXT,
            created REAL NOT NULL,
            updated REAL NOT NULL
        );
        CREATE INDEX videos_state ON videos(state);
        CREATE INDEX videos_sha256 ON videos(sha256);
        CREATE TABLE jobs (
            id INTEGER PRIMARY KEY,
            executor TEXT NOT NULL,
            executor_job_id TEXT,
            state TEXT NOT NULL,
            attempt INTEGER NOT NULL DEFAULT 1,
            spec_path TEXT NOT NULL,
            result_path TEXT NOT NULL,
            log_path TEXT,
            reason TEXT NOT NULL DEFAULT '',
            resources TEXT NOT NULL DEFAULT '{}',
            created REAL NOT NULL,
            started REAL,
            ended REAL,
            updated REAL NOT NULL
        );
        CREATE INDEX jobs_state ON jobs(state);
        CREATE TABLE job_videos (
            job_id INTEGER NOT NULL REFERENCES jobs(id),
            video_id INTEGER NOT NULL REFERENCES videos(id),
            PRIMARY KEY (job_id, video_id)
        );
        CREATE TABLE events (
            id INTEGER PRIMARY KEY,
            at REAL NOT NULL,
            video_id INTEGER REFERENCES videos(id),
            job_id INTEGER REFERENCES jobs(id),
            old_state TEXT,
            new_state TEXT,
            message TEXT NOT NULL DEFAULT ''
        );
        CREATE INDEX events_video ON events(video_id);
        CREATE INDEX events_job ON events(job_id);
        """,
    ),
    (
        "0002_notifications",
        """
        ALTER TABLE videos ADD COLUMN reported REAL;  -- when a 'done' message covered it
        ALTER TABLE videos ADD COLUMN alerted REAL;   -- when an alert about it was queued
        CREATE TABLE outbox (
            id INTEGER PRIMARY KEY,
            created REAL NOT NULL,
            message TEXT NOT NULL,             -- JSON of a notify.Message
            channels TEXT NOT NULL,            -- JSON list of channels still to send to
            attempts INTEGER NOT NULL DEFAULT 0,
            next_try REAL NOT NULL,
            last_error TEXT NOT NULL DEFAULT '',
            sent REAL
        );
        CREATE INDEX outbox_pending ON outbox(sent, next_try);
        """,
    ),
    (
        "0003_conditions",
        """
        CREATE TABLE conditions (           -- what is wrong right now, beyond single videos
            name TEXT PRIMARY KEY,          -- e.g. 'destination', 'staging_space'
            message TEXT NOT NULL,
            since REAL NOT NULL,
            updated REAL NOT NULL,
            alerted REAL
        );
        """,
    ),
    (
        "0004_video_resources",
        """
        -- What the next job of this video asks for, as JSON: more time after a timeout, etc.
        ALTER TABLE videos ADD COLUMN resources TEXT NOT NULL DEFAULT '{}';
        """,
    ),
    (
        "0005_cancel_requested",
        """
        -- When a person asked to cancel the job. SLURM keeps no record of a pending array task
        -- cancelled before it started, so the job's end alone cannot say it was a person.
        ALTER TABLE jobs ADD COLUMN cancel_requested REAL;
        """,
    ),
    (
        "0006_staged_path",
        """
        -- Where the video's copy sits in the cluster's scratch (executor.slurm.scratch), until it
        -- is analyzed: what counts against the scratch quota, and what to delete there.
        ALTER TABLE videos ADD COLUMN staged_path TEXT;
        """,
    ),
    (
        "0007_reads",
        """
        -- Whole-file reads (probe, sha256) the daemon has in flight, rewritten by it every tick,
        -- so that `dlcwatch status` (another process) can say what is being read and how far.
        CREATE TABLE reads (
            video_id INTEGER PRIMARY KEY REFERENCES videos(id),
            path TEXT NOT NULL,
            step TEXT NOT NULL,             -- e.g. 'hashing', 'waiting to read'
            done_bytes INTEGER NOT NULL,
            total_bytes INTEGER NOT NULL,
            started REAL NOT NULL,
            updated REAL NOT NULL
        );
        """,
    ),
    (
        "0008_status_indexes",
        """
        -- What status asks on every refresh: videos finished lately (throughput) and the most
        -- recently changed videos. Without these, 100,000 videos cost a scan of every event.
        CREATE INDEX events_new_state_at ON events(new_state, at);
        CREATE INDEX videos_updated ON videos(updated)
        """,
    ),
]

VIDEO_FIELDS = frozenset({
    "reason", "size", "mtime_ns", "stable_since", "sha256", "frames", "fps", "duration",
    "codec", "width", "height", "duplicate_of", "job_id", "attempts", "not_before", "output_dir", "reported",
    "alerted", "resources", "staged_path",
})
JOB_FIELDS = frozenset({"executor_job_id", "reason", "started", "ended", "spec_path", "result_path", "log_path",
                        "resources", "cancel_requested"})


@dataclass(frozen=True)
class Video:
    id: int
    path: str
    root: str
    relpath: str
    state: VideoState
    reason: str
    size: int | None
    mtime_ns: int | None
    stable_since: float | None
    sha256: str | None
    frames: int | None
    fps: float | None
    duration: float | None
    codec: str | None
    width: int | None
    height: int | None
    duplicate_of: int | None
    job_id: int | None
    attempts: int
    not_before: float | None
    output_dir: str | None
    created: float
    updated: float
    reported: float | None = None
    alerted: float | None = None
    resources: dict = dataclasses.field(default_factory=dict)
    staged_path: str | None = None

    @classmethod
    def from_row(cls, row: sqlite3.Row) -> "Video":
        values = dict(row)
        values["state"] = VideoState(values["state"])
        values["resources"] = json.loads(values.get("resources") or "{}")
        return cls(**values)


@dataclass(frozen=True)
class Job:
    id: int
    executor: str
    executor_job_id: str | None
    state: JobState
    attempt: int
    spec_path: str
    result_path: str
    log_path: str | None
    reason: str
    resources: dict
    created: float
    started: float | None
    ended: float | None
    updated: float
    cancel_requested: float | None = None

    @property
    def folder(self) -> Path:
        """The job's own folder: its result, project view and video outputs."""
        return Path(self.result_path).parent

    @property
    def log_folder(self) -> Path:
        """Where its spec and log are: its own folder, or for an array task the array's."""
        return Path(self.log_path or self.result_path).parent

    @classmethod
    def from_row(cls, row: sqlite3.Row) -> "Job":
        values = dict(row)
        values["state"] = JobState(values["state"])
        values["resources"] = json.loads(values["resources"] or "{}")
        return cls(**values)


@dataclass(frozen=True)
class Event:
    id: int
    at: float
    video_id: int | None
    job_id: int | None
    old_state: str | None
    new_state: str | None
    message: str


@dataclass(frozen=True)
class OutboxItem:
    id: int
    created: float
    message: dict
    channels: list[str]
    attempts: int
    next_try: float
    last_error: str
    sent: float | None


class Store:
    """Given a database path, open (and migrate) the state database."""

    def __init__(self, path: str | Path, *, read_only: bool = False):
        self.path = Path(path)
        if read_only:
            if not self.path.exists():
                raise StoreError(f"no state database at {self.path} (has the daemon run yet?)")
            uri = f"file:{self.path}?mode=ro"
            self._db = sqlite3.connect(uri, uri=True, isolation_level=None, timeout=BUSY_TIMEOUT_MS / 1000)
        else:
            try:
                make_private_folder(self.path.parent)
                create_private_file(self.path)  # SQLite gives its -wal and -shm files the same mode
                self._db = sqlite3.connect(self.path, isolation_level=None, timeout=BUSY_TIMEOUT_MS / 1000)
            except (OSError, sqlite3.Error) as error:
                raise StoreError(f"cannot open state database {self.path}: {error}") from error
        self._db.row_factory = sqlite3.Row
        self._db.execute(f"PRAGMA busy_timeout = {BUSY_TIMEOUT_MS}")
        self._db.execute("PRAGMA foreign_keys = ON")
        if read_only:
            try:
                known = self._db.execute("SELECT name FROM sqlite_master WHERE name = 'videos'").fetchone()
            except sqlite3.DatabaseError as error:
                raise StoreError(f"{self.path} is not a dlcwatch state database: {error}") from error
            if known is None:
                raise StoreError(f"state database {self.path} is not set up yet (is the daemon starting?)")
        else:
            self._db.execute("PRAGMA journal_mode = WAL")
            # WAL with synchronous=NORMAL cannot corrupt; at worst it loses the last commit on
            # power loss, which the rescan and the result files recover.
            self._db.execute("PRAGMA synchronous = NORMAL")
            self._migrate()

    def close(self) -> None:
        self._db.close()

    @contextlib.contextmanager
    def transaction(self) -> Iterator[sqlite3.Connection]:
        """Run the block in one write transaction; roll back if it raises."""
        # IMMEDIATE takes the write lock up front, so two writers never deadlock on upgrade.
        self._db.execute("BEGIN IMMEDIATE")
        try:
            yield self._db
        except BaseException:
            self._db.execute("ROLLBACK")
            raise
        self._db.execute("COMMIT")

    def _migrate(self) -> None:
        with self.transaction() as db:
            db.execute("CREATE TABLE IF NOT EXISTS migrations (name TEXT PRIMARY KEY, applied REAL NOT NULL)")
        applied = {row["name"] for row in self._db.execute("SELECT name FROM migrations")}
        known = {name for name, _ in MIGRATIONS}
        unknown = applied - known
        if unknown:
            raise StoreError(
                f"state database {self.path} was written by a newer dlcwatch "
                f"(migrations {sorted(unknown)}); upgrade dlcwatch")
        for name, script in MIGRATIONS:
            if name in applied:
                continue
            with self.transaction() as db:
                for statement in script.split(";"):
                    if statement.strip():
                        db.execute(statement)
                db.execute("INSERT INTO migrations (name, applied) VALUES (?, ?)", (name, time.time()))

    def migrations(self) -> list[str]:
        return [row["name"] for row in self._db.execute("SELECT name FROM migrations ORDER BY name")]

    # ------------------------------------------------------------------ events

    def _event(self, db: sqlite3.Connection, now: float, message: str, *, video_id: int | None = None,
               job_id: int | None = None, old: str | None = None, new: str | None = None) -> None:
        db.execute(
            "INSERT INTO events (at, video_id, job_id, old_state, new_state, message) VALUES (?, ?, ?, ?, ?, ?)",
            (now, video_id, job_id, old, new, message))
        # The journal gets the same story as the events table: one line per event, with its ids.
        subject = []
        if video_id is not None:
            path = db.execute("SELECT path FROM videos WHERE id = ?", (video_id,)).fetchone()
            subject.append(f"video {video_id} ({Path(path[0]).name if path else '?'})")
        if job_id is not None:
            subject.append(f"job {job_id}")
        change = f"{old or '·'} → {new}: " if new else ""
        level = logging.WARNING if new in ATTENTION_STATES or message.startswith("problem:") else logging.INFO
        event_log.log(level, "%s%s%s", " ".join(subject) + ": " if subject else "", change, message)

    def add_event(self, message: str, *, video_id: int | None = None, job_id: int | None = None,
                  now: float | None = None) -> None:
        """Record a note in the audit trail without changing any state."""
        with self.transaction() as db:
            self._event(db, _now(now), message, video_id=video_id, job_id=job_id)

    def events(self, *, video_id: int | None = None, job_id: int | None = None,
               limit: int | None = None) -> list[Event]:
        where, params = [], []
        if video_id is not None:
            where.append("video_id = ?")
            params.append(video_id)
        if job_id is not None:
            where.append("job_id = ?")
            params.append(job_id)
        sql = "SELECT * FROM events"
        if where:
            sql += " WHERE " + " AND ".join(where)
        sql += " ORDER BY id"
        if limit is not None:
            sql = f"SELECT * FROM ({sql} DESC LIMIT {int(limit)}) ORDER BY id"
        return [Event(**dict(row)) for row in self._db.execute(sql, params)]

    # ------------------------------------------------------------------ videos

    def add_video(self, path: str, root: str, relpath: str, *, size: int, mtime_ns: int,
                  now: float | None = None) -> Video:
        """Given a newly seen file, record it as settling and return it."""
        now = _now(now)
        with self.transaction() as db:
            cursor = db.execute(
                "INSERT INTO videos (path, root, relpath, state, size, mtime_ns, stable_since, created, updated)"
                " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (path, root, relpath, VideoState.SETTLING.value, size, mtime_ns, now, now, now))
            video_id = cursor.lastrowid
            self._event(db, now, "seen for the first time", video_id=video_id, new=VideoState.SETTLING.value)
        return self.video(video_id)

    def video(self, video_id: int) -> Video:
        row = self._db.execute("SELECT * FROM videos WHERE id = ?", (video_id,)).fetchone()
        if row is None:
            raise KeyError(f"no video with id {video_id}")
        return Video.from_row(row)

    def video_by_path(self, path: str) -> Video | None:
        row = self._db.execute("SELECT * FROM videos WHERE path = ?", (path,)).fetchone()
        return Video.from_row(row) if row else None

    def videos(self, states: Iterable[VideoState] | None = None, *, order: str = "id",
               limit: int | None = None) -> list[Video]:
        sql, params = "SELECT * FROM videos", []
        if states is not None:
            states = [VideoState(s).value for s in states]
            sql += f" WHERE state IN ({','.join('?' * len(states))})"
            params = states
        sql += {"id": " ORDER BY id", "recent": " ORDER BY updated DESC, id DESC"}[order]
        if limit is not None:
            sql += f" LIMIT {int(limit)}"
        return [Video.from_row(row) for row in self._db.execute(sql, params)]

    def files_in_folder(self, folder: str) -> dict[str, tuple[int | None, int | None, VideoState]]:
        """Given an absolute folder, return {path: (size, mtime_ns, state)} of the known videos
        directly in it, in one query (a rescan compares these; most have not changed)."""
        prefix = folder.rstrip("/") + "/"
        # A range on the unique path index; '0' is the character after '/'.
        rows = self._db.execute("SELECT path, size, mtime_ns, state FROM videos WHERE path >= ? AND path < ? "
                                "AND instr(substr(path, ?), '/') = 0", (prefix, prefix[:-1] + "0", len(prefix) + 1))
        return {path: (size, mtime_ns, VideoState(state)) for path, size, mtime_ns, state in rows}

    def videos_under(self, folder: str, states: Iterable[VideoState]) -> list[Video]:
        """Given an absolute folder, return the known videos anywhere below it in these states."""
        prefix = folder.rstrip("/") + "/"
        states = [VideoState(s).value for s in states]
        rows = self._db.execute(f"SELECT * FROM videos WHERE path >= ? AND path < ? AND state IN "
                                f"({','.join('?' * len(states))})", (prefix, prefix[:-1] + "0", *states))
        return [Video.from_row(row) for row in rows]

    def staged_videos(self) -> list[Video]:
        """Return the videos with a copy in the cluster's scratch."""
        rows = self._db.execute("SELECT * FROM videos WHERE staged_path IS NOT NULL ORDER BY id").fetchall()
        return [Video.from_row(row) for row in rows]

    def find_videos(self, needle: str) -> list[Video]:
        """Given an id, a path or part of a file name, return the matching videos."""
        if needle.isdigit():
            row = self._db.execute("SELECT * FROM videos WHERE id = ?", (int(needle),)).fetchone()
            if row:
                return [Video.from_row(row)]
        exact = self.video_by_path(str(Path(needle).expanduser().absolute()))
        if exact:
            return [exact]
        # instr, not LIKE: a file name may contain % or _.
        rows = self._db.execute("SELECT * FROM videos WHERE instr(path, ?) > 0 ORDER BY id", (needle,))
        return [Video.from_row(row) for row in rows]

    def video_with_sha256(self, sha256: str, *, exclude_id: int) -> Video | None:
        """Return the earliest other video with this content that is not itself a duplicate."""
        row = self._db.execute(
            "SELECT * FROM videos WHERE sha256 = ? AND id != ? AND state != ? ORDER BY id LIMIT 1",
            (sha256, exclude_id, VideoState.DUPLICATE.value)).fetchone()
        return Video.from_row(row) if row else None

    def update_video(self, video_id: int, *, now: float | None = None, **fields: Any) -> None:
        """Change bookkeeping fields of a video without changing its state."""
        _check_fields(fields, VIDEO_FIELDS)
        if not fields:
            return
        with self.transaction() as db:
            _update(db, "videos", video_id, fields, _now(now))

    def set_video_state(self, video_id: int, new: VideoState, message: str, *,
                        expect: Iterable[VideoState] | None = None, now: float | None = None,
                        **fields: Any) -> Video:
        """Move one video to a new state, with its event, in one transaction.

        Raise TransitionError if the state machine forbids it, or if `expect` is given and the
        video is in none of those states (someone else moved it first)."""
        with self.transaction() as db:
            self._set_video_state(db, video_id, VideoState(new), message, expect, _now(now), fields)
        return self.video(video_id)

    def _set_video_state(self, db: sqlite3.Connection, video_id: int, new: VideoState, message: str,
                         expect: Iterable[VideoState] | None, now: float, fields: dict) -> None:
        _check_fields(fields, VIDEO_FIELDS)
        row = db.execute("SELECT state FROM videos WHERE id = ?", (video_id,)).fetchone()
        if row is None:
            raise KeyError(f"no video with id {video_id}")
        old = VideoState(row["state"])
        if expect is not None and old not in set(expect):
            raise TransitionError(f"video {video_id} is {old}, expected one of {sorted(map(str, expect))}")
        check_video_transition(old, new)
        fields = dict(fields, state=new.value)
        fields.setdefault("reason", message)
        _update(db, "videos", video_id, fields, now)
        self._event(db, now, message, video_id=video_id, job_id=fields.get("job_id"), old=old.value, new=new.value)

    def count_events(self, new_state: VideoState, *, since: float) -> int:
        """Return how many videos entered a state since a time (throughput)."""
        row = self._db.execute("SELECT COUNT(*) FROM events WHERE video_id IS NOT NULL AND new_state = ? AND at >= ?",
                               (VideoState(new_state).value, since)).fetchone()
        return row[0]

    def counts(self) -> dict[str, int]:
        rows = self._db.execute("SELECT state, COUNT(*) AS n FROM videos GROUP BY state")
        return {row["state"]: row["n"] for row in rows}

    # ------------------------------------------------------------------ jobs

    def create_job(self, executor: str, video_ids: list[int], *, attempt: int = 1,
                   resources: dict | None = None, now: float | None = None) -> Job:
        """Record a new job and move its queued videos to submitted, in one transaction.

        The job starts as created: it gets its paths and executor id once the executor took it."""
        now = _now(now)
        with self.transaction() as db:
            cursor = db.execute(
                "INSERT INTO jobs (executor, state, attempt, spec_path, result_path, resources, created, updated)"
                " VALUES (?, ?, ?, '', '', ?, ?, ?)",
                (executor, JobState.CREATED.value, attempt, json.dumps(resources or {}), now, now))
            job_id = cursor.lastrowid
            self._event(db, now, f"created for {executor} with {len(video_ids)} video(s)", job_id=job_id,
                        new=JobState.CREATED.value)
            for video_id in video_ids:
                db.execute("INSERT INTO job_videos (job_id, video_id) VALUES (?, ?)", (job_id, video_id))
                attempts = db.execute("SELECT attempts FROM videos WHERE id = ?", (video_id,)).fetchone()[0]
                self._set_video_state(db, video_id, VideoState.SUBMITTED, f"in job {job_id}, attempt {attempts + 1}",
                                      [VideoState.QUEUED], now, {"job_id": job_id, "attempts": attempts + 1})
        return self.job(job_id)

    def update_job(self, job_id: int, *, now: float | None = None, **fields: Any) -> None:
        """Change bookkeeping fields of a job without changing its state."""
        _check_fields(fields, JOB_FIELDS)
        with self.transaction() as db:
            _update(db, "jobs", job_id, fields, _now(now))

    def job(self, job_id: int) -> Job:
        row = self._db.execute("SELECT * FROM jobs WHERE id = ?", (job_id,)).fetchone()
        if row is None:
            raise KeyError(f"no job with id {job_id}")
        return Job.from_row(row)

    def jobs(self, states: Iterable[JobState] | None = None, *, limit: int | None = None) -> list[Job]:
        sql, params = "SELECT * FROM jobs", []
        if states is not None:
            states = [JobState(s).value for s in states]
            sql += f" WHERE state IN ({','.join('?' * len(states))})"
            params = states
        sql += " ORDER BY id"
        if limit is not None:
            sql += f" LIMIT {int(limit)}"
        return [Job.from_row(row) for row in self._db.execute(sql, params)]

    def active_jobs(self) -> list[Job]:
        return self.jobs(JOB_ACTIVE)

    def job_video_ids(self, job_id: int) -> list[int]:
        rows = self._db.execute("SELECT video_id FROM job_videos WHERE job_id = ? ORDER BY video_id", (job_id,))
        return [row["video_id"] for row in rows]

    def set_job_state(self, job_id: int, new: JobState, message: str, *, now: float | None = None,
                      **fields: Any) -> Job:
        """Move one job to a new state, with its event, in one transaction."""
        _check_fields(fields, JOB_FIELDS)
        now = _now(now)
        with self.transaction() as db:
            old = JobState(db.execute("SELECT state FROM jobs WHERE id = ?", (job_id,)).fetchone()["state"])
            if old is new:
                return self.job(job_id)
            check_job_transition(old, new)
            fields = dict(fields, state=new.value)
            if new is JobState.RUNNING:
                fields.setdefault("started", now)
            if new not in JOB_ACTIVE:
                fields.setdefault("ended", now)
            _update(db, "jobs", job_id, fields, now)
            self._event(db, now, message, job_id=job_id, old=old.value, new=new.value)
        return self.job(job_id)


    # ------------------------------------------------------------------ reads in flight

    def set_reads(self, reads: list[dict], *, now: float | None = None) -> None:
        """Given every read in flight (video_id, path, step, done_bytes, total_bytes, started), replace
        what the table says."""
        with self.transaction() as db:
            db.execute("DELETE FROM reads")
            db.executemany("INSERT INTO reads (video_id, path, step, done_bytes, total_bytes, started, updated) "
                           "VALUES (:video_id, :path, :step, :done_bytes, :total_bytes, :started, :updated)",
                           [dict(read, updated=_now(now)) for read in reads])

    def reads(self) -> list[dict]:
        """Return the reads in flight, oldest first ([] on a database no daemon has migrated yet)."""
        try:
            return [dict(row) for row in self._db.execute("SELECT * FROM reads ORDER BY started, video_id")]
        except sqlite3.OperationalError:
            return []  # `dlcwatch status` (read-only) before the upgraded daemon first started

    # ------------------------------------------------------------------ conditions

    def set_condition(self, name: str, message: str, *, now: float | None = None) -> bool:
        """Record that something is wrong (keeping when it started); return True if it is new."""
        now = _now(now)
        with self.transaction() as db:
            known = db.execute("SELECT message FROM conditions WHERE name = ?", (name,)).fetchone()
            if known is None:
                db.execute("INSERT INTO conditions (name, message, since, updated) VALUES (?, ?, ?, ?)",
                           (name, message, now, now))
                self._event(db, now, f"problem: {message}")
            else:
                db.execute("UPDATE conditions SET message = ?, updated = ? WHERE name = ?", (message, now, name))
        return known is None

    def clear_condition(self, name: str, *, now: float | None = None) -> bool:
        """Record that a problem is over; return True if there was one."""
        now = _now(now)
        with self.transaction() as db:
            known = db.execute("SELECT message FROM conditions WHERE name = ?", (name,)).fetchone()
            if known is not None:
                db.execute("DELETE FROM conditions WHERE name = ?", (name,))
                self._event(db, now, f"resolved: {known['message']}")
        return known is not None

    def conditions(self) -> list[dict]:
        return [dict(row) for row in self._db.execute("SELECT * FROM conditions ORDER BY since")]

    def mark_condition_alerted(self, name: str, *, now: float | None = None) -> None:
        with self.transaction() as db:
            db.execute("UPDATE conditions SET alerted = ? WHERE name = ?", (_now(now), name))

    # ------------------------------------------------------------------ notifications

    def unreported(self, states: Iterable[VideoState], column: str) -> list[Video]:
        if column not in ("reported", "alerted"):
            raise ValueError(column)
        states = [VideoState(s).value for s in states]
        rows = self._db.execute(f"SELECT * FROM videos WHERE {column} IS NULL AND state IN "
                                f"({','.join('?' * len(states))}) ORDER BY updated, id", states)
        return [Video.from_row(row) for row in rows]

    def queue_message(self, message: dict, channels: list[str], *, mark: str, video_ids: list[int],
                      now: float | None = None) -> int:
        """Put a message in the outbox and mark its videos as covered, in one transaction."""
        if mark not in ("reported", "alerted"):
            raise ValueError(mark)
        now = _now(now)
        with self.transaction() as db:
            cursor = db.execute("INSERT INTO outbox (created, message, channels, next_try) VALUES (?, ?, ?, ?)",
                                (now, json.dumps(message), json.dumps(channels), now))
            db.executemany(f"UPDATE videos SET {mark} = ? WHERE id = ?", [(now, i) for i in video_ids])
        return cursor.lastrowid

    def last_message_at(self, kind: str) -> float | None:
        """Return when a message of this kind was last queued, or None."""
        row = self._db.execute("SELECT MAX(created) FROM outbox WHERE json_extract(message, '$.kind') = ?",
                               (kind,)).fetchone()
        return row[0]

    def due_messages(self, now: float) -> list[OutboxItem]:
        rows = self._db.execute("SELECT * FROM outbox WHERE sent IS NULL AND next_try <= ? ORDER BY id", (now,))
        return [_outbox_item(row) for row in rows]

    def pending_messages(self) -> list[OutboxItem]:
        return [_outbox_item(row) for row in self._db.execute("SELECT * FROM outbox WHERE sent IS NULL ORDER BY id")]

    def record_sending(self, item_id: int, failed: dict[str, str], next_try: float, *,
                       now: float | None = None) -> None:
        """Given the channels that failed (with their scrubbed errors), update an outbox row."""
        now = _now(now)
        with self.transaction() as db:
            if failed:
                db.execute("UPDATE outbox SET channels = ?, attempts = attempts + 1, next_try = ?, last_error = ?"
                           " WHERE id = ?", (json.dumps(sorted(failed)), next_try,
                                             "; ".join(f"{k}: {v}" for k, v in sorted(failed.items())), item_id))
            else:
                db.execute("UPDATE outbox SET channels = '[]', attempts = attempts + 1, sent = ?, last_error = ''"
                           " WHERE id = ?", (now, item_id))


def _outbox_item(row: sqlite3.Row) -> OutboxItem:
    values = dict(row)
    values["message"] = json.loads(values["message"])
    values["channels"] = json.loads(values["channels"])
    return OutboxItem(**values)


def _now(now: float | None) -> float:
    return time.time() if now is None else now


def _check_fields(fields: dict, allowed: frozenset) -> None:
    """Given fields to write, raise ValueError for any that is not a bookkeeping field of the table.

    `state` is never one: it changes only through a transition the state machine allows, with its event."""
    if "state" in fields:
        raise ValueError("a state changes only through set_video_state / set_job_state (the state machine)")
    unknown = set(fields) - allowed
    if unknown:
        raise ValueError(f"unknown fields {sorted(unknown)}")


def _update(db: sqlite3.Connection, table: str, row_id: int, fields: dict, now: float) -> None:
    fields = dict(fields, updated=now)
    if "resources" in fields and not isinstance(fields["resources"], str):
        fields["resources"] = json.dumps(fields["resources"], sort_keys=True)
    # Column names come from the allow-lists above, never from input.
    assignments = ", ".join(f"{name} = ?" for name in fields)
    db.execute(f"UPDATE {table} SET {assignments} WHERE id = ?", (*fields.values(), row_id))


# ---------------------------------------------------------------- read-only, for the web page
# A fresh connection per request costs well under a millisecond and means the page never holds
# the database between requests: the daemon can restart, replace or migrate it at any time.

READER_BUSY_TIMEOUT_S = 1.0
PAGE_SIZE = 50
VIDEO_COLUMNS = "id, path, relpath, state, reason, frames, attempts, job_id, updated"


@dataclass(frozen=True)
class VideoPage:
    """One page of the video list, newest first, with the ids to page on from."""

    rows: list[dict]
    total: int              # videos matching the filters, on every page
    older_than: int | None  # pass as ?before= for the next page; None on the last page
    newer_than: int | None  # pass as ?after= for the previous page; None on the first page


class ReadOnlyStore(Store):
    """Given a database path, open it read-only (for the web page). Raise DatabaseUnavailable.

    Store's read methods work as they are; every write fails, three times over: the URI
    opens the file read-only, `query_only` refuses writes, and nothing here calls one."""

    def __init__(self, path: str | Path, *, busy_timeout_s: float = READER_BUSY_TIMEOUT_S):
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
