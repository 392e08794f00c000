"""Long reads of whole files, outside the main loop.

Probing and hashing a 20-GB video on an NFS share takes minutes; the main loop must go on
pinging systemd's watchdog, polling jobs and delivering meanwhile. So each such read runs in a
thread of its own, at most `per_filesystem` at a time on one file system (two readers are
faster than eight on one NFS server), and the loop only starts reads and collects what they
found. A read is given up when it makes no progress for `stall_s` (a hung NFS server), never
for being long. Threads are daemon threads and check a cancel flag between chunks, so a stop
(SIGTERM) never waits for a read: a read blocked inside the kernel is simply left behind.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from collections import deque
from dataclasses import dataclass, field
from typing import Callable

log = logging.getLogger("dlcwatch.reads")


class ReadCancelled(Exception):
    """The read was given up (a stop, or no progress for too long); its result is not wanted."""


class ReadStalled(Exception):
    """The read made no progress for the configured time. The message says so, for a person."""


@dataclass
class Read:
    """One long read in flight: what is read, which step it is at, and how far it got."""

    key: int                 # the caller's id for it (the video id)
    path: str
    total_bytes: int
    device: int              # st_dev of the file: reads are limited per file system
    step: str = "waiting to read"
    done_bytes: int = 0
    started: float = field(default_factory=time.time)
    progressed: float = field(default_factory=time.monotonic)
    result: object = None
    error: BaseException | None = None
    finished: bool = False
    cancelled: threading.Event = field(default_factory=threading.Event)
    thread: threading.Thread | None = None

    def advance(self, step: str | None = None, done_bytes: int | None = None) -> None:
        """Record a new step or more bytes read (called from the reading thread); only these count
        as progress. Raise ReadCancelled if the read was given up."""
        if self.cancelled.is_set():
            raise ReadCancelled(self.path)
        if step is not None and step != self.step:
            self.step, self.done_bytes = step, 0
            self.progressed = time.monotonic()
        if done_bytes is not None and done_bytes > self.done_bytes:
            self.done_bytes = done_bytes
            self.progressed = time.monotonic()


def format_gb(size: int) -> str:
    """Given bytes, return them in GB (or MB below 1 GB) with one decimal."""
    return f"{size / 1e9:.1f} GB" if size >= 1e9 else f"{size / 1e6:.1f} MB"


class ReadPool:
    """Given the work to do on one file (work(read) -> result, raising on failure), run it on at
    most `per_filesystem` files of one file system at a time, each in its own daemon thread."""

    def __init__(self, work: Callable[[Read], object], *, per_filesystem: int = 2, stall_s: float = 300.0):
        self.work = work
        self.per_filesystem = max(1, per_filesystem)
        self.stall_s = stall_s
        self._waiting: deque[Read] = deque()
        self._running: dict[int, Read] = {}
        # Given-up reads whose thread is still blocked (a hung mount): they still hold their slot.
        self._abandoned: list[Read] = []

    def submit(self, key: int, path: str, total_bytes: int) -> Read:
        """Queue one read unless one for this key is already queued or running; return it."""
        known = self.get(key)
        if known is not None:
            return known
        try:
            device = os.stat(path).st_dev
        except OSError:
            device = -1  # the thread meets the same error and reports it
        read = Read(key, path, total_bytes, device)
        self._waiting.append(read)
        self._start_waiting()
        return read

    def get(self, key: int) -> Read | None:
        return self._running.get(key) or next((read for read in self._waiting if read.key == key), None)

    def in_progress(self) -> list[Read]:
        """Return the reads running and waiting, running first."""
        return list(self._running.values()) + list(self._waiting)

    def collect(self) -> list[Read]:
        """Return the reads that finished (result or error set) or stalled (error is ReadStalled)
        since the last call, and start waiting reads where a file system has a free slot."""
        done = []
        now = time.monotonic()
        for key, read in list(self._running.items()):
            if read.finished:
                del self._running[key]
                done.append(read)
            elif now - read.progressed > self.stall_s:
                read.cancelled.set()
                read.error = ReadStalled(f"no progress {read.step} for {self.stall_s:.0f} s (at "
                                         f"{format_gb(read.done_bytes)} of {format_gb(read.total_bytes)}); "
                                         "is the file system hanging?")
                del self._running[key]
                self._abandoned.append(read)
                log.warning("%s: %s", read.path, read.error)
                done.append(read)
        self._abandoned = [read for read in self._abandoned if read.thread is not None and read.thread.is_alive()]
        self._start_waiting()
        return done

    def forget(self, key: int) -> None:
        """Give up the read of this key, queued or running (the file changed or vanished)."""
        self._waiting = deque(read for read in self._waiting if read.key != key)
        read = self._running.pop(key, None)
        if read is not None:
            read.cancelled.set()
            self._abandoned.append(read)

    def stop(self) -> None:
        """Ask every read to give up; return at once (threads blocked in the kernel are left)."""
        for read in list(self._running.values()) + self._abandoned:
            read.cancelled.set()
        self._waiting.clear()

    def wait(self, timeout_s: float) -> bool:
        """Block until no read is running or waiting (for tests and `run --until-idle`); return
        True if that happened within timeout_s. Finished reads stay for collect()."""
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            self._start_waiting()
            if not self._waiting and all(read.finished for read in self._running.values()):
                return True
            time.sleep(0.01)
        return False

    def _busy(self, device: int) -> int:
        return sum(1 for read in list(self._running.values()) + self._abandoned
                   if read.device == device and not read.finished)

    def _start_waiting(self) -> None:
        for read in list(self._waiting):
            if self._busy(read.device) >= self.per_filesystem:
                continue
            self._waiting.remove(read)
            self._running[read.key] = read
            read.progressed = time.monotonic()
            read.thread = threading.Thread(target=self._run, args=(read,), name=f"read-{read.key}", daemon=True)
            read.thread.start()

    def _run(self, read: Read) -> None:
        try:
            read.result = self.work(read)
        except ReadCancelled as error:
            read.error = read.error or error
        except BaseException as error:  # reported to the loop, which decides what it means
            read.error = error
        finally:
            read.finished = True


class ReadsBoard:
    """What `dlcwatch status` (another process) shows of the long reads in flight, whichever pool
    runs them — intake's probes and hashes, copies to a cluster's scratch, deliveries: the store's
    `reads` table, rewritten only when something in it changed."""

    def __init__(self, store):
        self.store = store
        self._shown: list[tuple] = []

    def publish(self, pools: list[ReadPool], now: float) -> None:
        rows, seen = [], set()
        for pool in pools:
            for read in pool.in_progress():
                if read.key in seen:
                    continue  # one row per video: it is in one step of the pipeline at a time
                seen.add(read.key)
                rows.append(dict(video_id=read.key, path=read.path, step=read.step, done_bytes=read.done_bytes,
                                 total_bytes=read.total_bytes, started=read.started))
        shown = [tuple(row.values()) for row in rows]
        if shown != self._shown:
            self.store.set_reads(rows, now=now)
            self._shown = shown

    def clear(self) -> None:
        """Say that nothing is read any more (the reads were given up at a stop)."""
        if self._shown:
            self.store.set_reads([])
            self._shown = []
