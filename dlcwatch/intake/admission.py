"""The watch step: reconcile watched folders with the database and admit complete videos.

A file moves from settling to queued only when its size and mtime have held still for the
settle time, inotify does not report it open for writing, ffprobe reads it as a video and its
sha256 is known. Bad files are quarantined with the reason; nothing is dropped silently.

Probing and hashing read whole files (minutes for a 20-GB video on a share): they run in a
ReadPool outside the main loop, and tick() only starts them and collects what they found.
Scans list only the folders whose mtime changed (intake.scan.TreeScanner), with a full rescan
every watch.full_rescan_interval_s.
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass
from typing import BinaryIO, Callable

from dlcwatch.intake.fingerprint import sha256_stream
from dlcwatch.intake.scan import FileSeen, TreeScanner, is_candidate, should_poll
from dlcwatch.intake.probe import (ProbeError, ProbeUnavailableError, VideoInfo, counted_frames, pipe_count_command,
                            probe_header, probe_video)
from dlcwatch.reads import Read, ReadCancelled, ReadPool, ReadStalled
from dlcwatch.run import run
from dlcwatch.states import VideoState
from dlcwatch.store import Store, Video
from dlcwatch.intake.events import FileEvents

log = logging.getLogger("dlcwatch.intake.admission")

S = VideoState
# With an open-for-write report but no close (a lost event), still admit after this many settle times.
WRITING_GRACE_FACTOR = 4


def open_for_reading(path: str) -> BinaryIO:
    """Given a path, open it for the one full read of intake (tests slow this down). Raise OSError."""
    return open(path, "rb")


@dataclass(frozen=True)
class Examined:
    """What the read of one video found."""

    info: VideoInfo
    sha256: str
    full_reads: int   # how many times the whole file was read: 1, or 2 where counting from a pipe failed


def examine(read: Read, open_video: Callable[[str], BinaryIO] = open_for_reading) -> Examined:
    """Given a read of one settled video, return its VideoInfo and sha256, reading the whole file
    once: the frame count comes from the container header where it is exact (MP4, MOV, AVI), and
    otherwise from ffprobe counting packets in the bytes the hash reads, fed through a pipe. Only
    if that fails is the file read a second time. Raise OSError, ProbeError, ProbeUnavailableError,
    ReadCancelled."""
    check_readable(read.path)
    read.advance("probing")
    on_progress = lambda done: read.advance(done_bytes=done)  # noqa: E731
    info = probe_header(read.path, on_progress)
    if info.frames:
        read.advance("hashing")
        with open_video(read.path) as stream:
            sha256 = sha256_stream(stream, lambda chunk, done: read.advance(done_bytes=done))
        return Examined(info, sha256, 1)
    read.advance("hashing and counting frames in")
    sha256, frames = _hash_and_count(read, open_video)
    full_reads = 1
    if frames is None:
        read.advance("counting frames (second read) in")
        frames = probe_video(read.path, on_progress).frames
        full_reads = 2
    return Examined(VideoInfo(frames, info.fps, info.duration if info.duration else frames / info.fps, info.codec,
                              info.width, info.height), sha256, full_reads)


def _hash_and_count(read: Read, open_video) -> tuple[str, int | None]:
    """Hash the file while ffprobe counts the packets of the same bytes; return (sha256, frames or
    None if ffprobe could not count them from a stream: then they are counted from the file)."""
    hashed = {}

    def feed(write: Callable[[bytes], None]) -> None:
        def each_chunk(chunk: bytes, done: int) -> None:
            write(chunk)
            read.advance(done_bytes=done)

        with open_video(read.path) as stream:
            hashed["sha256"] = sha256_stream(stream, each_chunk)

    result = run(pipe_count_command(), None, feed=feed, watch=lambda pid: read.advance())
    if not result.ok:
        return hashed["sha256"], None
    try:
        return hashed["sha256"], counted_frames(result.stdout)
    except ProbeError:
        return hashed["sha256"], None


class Intake:
    """Given the watch config and the store, find, settle, probe and fingerprint videos."""

    def __init__(self, watch, store: Store, *, events: FileEvents | None = None,
                 skip_dirs: tuple[str, ...] = (), open_video: Callable[[str], BinaryIO] = open_for_reading):
        self.roots = list(watch.roots)
        self.settle_s = watch.settle_s
        self.rescan_interval_s = watch.rescan_interval_s
        self.full_rescan_interval_s = watch.full_rescan_interval_s
        self.store = store
        self.events = events
        self.skip_dirs = skip_dirs
        self.reads = ReadPool(lambda read: examine(read, open_video),
                              per_filesystem=watch.reads_per_filesystem,
                              stall_s=watch.read_stall_s)
        self._next_scan = {root.path: 0.0 for root in self.roots}
        self._next_full_scan = {root.path: 0.0 for root in self.roots}
        self._scanners = {root.path: TreeScanner(root.path, root.include, root.exclude, root.recursive, skip_dirs)
                          for root in self.roots}
        self._root_problem: dict[str, str] = {}
        self.polled = frozenset(root.path for root in self.roots if should_poll(root.polling, root.path))

    def watched_roots(self) -> list[tuple[str, bool]]:
        """Return the (path, recursive) roots that inotify can watch."""
        return [(root.path, root.recursive) for root in self.roots if root.path not in self.polled]

    def tick(self, now: float) -> None:
        dirty, rescan = self.events.take() if self.events else (set(), False)
        for root in self.roots:
            if rescan or now >= self._next_scan[root.path]:
                full = now >= self._next_full_scan[root.path]
                self.scan_root(root, now, full=full)
                interval = root.polling_interval_s if root.path in self.polled else self.rescan_interval_s
                self._next_scan[root.path] = now + interval
                if full:
                    self._next_full_scan[root.path] = now + self.full_rescan_interval_s
        for path in sorted(dirty):
            self._look_at(path, now)
        self.settle(now)

    def close(self) -> None:
        """Give up the reads in flight, without waiting for them."""
        self.reads.stop()

    def scan_counts(self) -> dict[str, int]:
        """Return how many folder stats, folder listings and file stats the scans made so far."""
        total: dict[str, int] = {}
        for scanner in self._scanners.values():
            for name, count in scanner.counts.items():
                total[name] = total.get(name, 0) + count
        return total

    # ------------------------------------------------------------------ scanning

    def scan_root(self, root, now: float, *, full: bool = True) -> None:
        """List the folders of one root that changed (all of them if full), record what is new or
        changed, and notice what vanished. The store is asked once per listed folder."""
        if not os.path.isdir(root.path):
            self._report_root(root.path, f"watch root {root.path} is not available (unmounted?); "
                                         "skipping it, nothing is marked missing")
            return
        scanner = self._scanners[root.path]
        new: list[FileSeen] = []
        for listing in scanner.scan(full=full):
            known = self.store.files_in_folder(listing.folder)
            for seen in listing.found:
                facts = known.pop(seen.path, None)
                if facts is None:
                    new.append(seen)
                elif facts[2] is S.MISSING or facts[:2] != (seen.size, seen.mtime_ns):
                    self._observe(seen, now, self.store.video_by_path(seen.path))
            for path, (_, _, state) in known.items():
                if state in (S.SETTLING, S.QUEUED):
                    self._maybe_missing(self.store.video_by_path(path), now)
            for folder in listing.vanished:
                for video in self.store.videos_under(folder, [S.SETTLING, S.QUEUED]):
                    self._maybe_missing(video, now)
        self._report_root(root.path, "; ".join(scanner.problems[:5]))
        # Oldest first: of two identical files seen in one scan, the earlier one is the original.
        for seen in sorted(new, key=lambda seen: (seen.mtime_ns, seen.path)):
            self._observe(seen, now, None)

    def _maybe_missing(self, video: Video, now: float) -> None:
        if video.state in (S.SETTLING, S.QUEUED) and not os.path.lexists(video.path):
            self.reads.forget(video.id)
            self.store.set_video_state(video.id, S.MISSING, "the file was deleted or moved away before "
                                       "it was analyzed", now=now)

    def _report_root(self, path: str, problem: str) -> None:
        if problem and self._root_problem.get(path) != problem:
            log.warning("%s", problem)
        elif not problem and self._root_problem.get(path):
            log.info("watch root %s is readable again", path)
        self._root_problem[path] = problem

    def root_problems(self) -> dict[str, str]:
        return {path: problem for path, problem in self._root_problem.items() if problem}

    def _look_at(self, path: str, now: float) -> None:
        """Stat one path an event pointed at."""
        for root in self.roots:
            relpath = is_candidate(root.path, path, root.include, root.exclude, root.recursive, self.skip_dirs)
            if relpath is None:
                continue
            try:
                stat = os.stat(path)
            except FileNotFoundError:
                return  # a vanished settling file is handled by settle(); others by the rescan
            except OSError:
                return
            self._observe(FileSeen(path, relpath, stat.st_size, stat.st_mtime_ns), now,
                          self.store.video_by_path(path))
            return

    def _observe(self, seen: FileSeen, now: float, video: Video | None) -> None:
        """Given a file seen on disk and what the store knows of it (None: nothing), record it."""
        if video is None:
            root = next(r.path for r in self.roots if seen.path.startswith(r.path.rstrip("/") + "/"))
            video = self.store.add_video(seen.path, root, seen.relpath, size=seen.size, mtime_ns=seen.mtime_ns,
                                         now=now)
            return
        changed = (video.size, video.mtime_ns) != (seen.size, seen.mtime_ns)
        if video.state is S.MISSING:
            self.store.set_video_state(video.id, S.SETTLING, "the file is back", now=now, size=seen.size,
                                       mtime_ns=seen.mtime_ns, stable_since=now)
        elif not changed:
            return
        elif video.state is S.SETTLING:
            self.reads.forget(video.id)
            self.store.update_video(video.id, size=seen.size, mtime_ns=seen.mtime_ns, stable_since=now, now=now)
        elif video.state is S.QUEUED:
            self.store.set_video_state(video.id, S.SETTLING, "the file changed after it was queued; "
                                       "waiting for it to settle again", now=now, size=seen.size,
                                       mtime_ns=seen.mtime_ns, stable_since=now)
        else:
            self.store.update_video(video.id, size=seen.size, mtime_ns=seen.mtime_ns, now=now)
            self.store.add_event(f"the file changed on disk while {video.state}; its results describe the "
                                 "earlier content (run `dlcwatch retry` to analyze it again)",
                                 video_id=video.id, now=now)

    # ------------------------------------------------------------------ settling

    def settle(self, now: float) -> None:
        """Collect finished reads, then start reading every settling video whose file has held still
        long enough."""
        for read in self.reads.collect():
            self._admit(read, now)
        for video in self.store.videos([S.SETTLING]):
            self._settle_one(video, now)

    def _settle_one(self, video: Video, now: float) -> None:
        if video.not_before and video.not_before > now:
            return  # the last read stalled: wait before trying again
        try:
            stat = os.stat(video.path)
        except FileNotFoundError:
            self.reads.forget(video.id)
            self.store.set_video_state(video.id, S.MISSING, "the file vanished while it was being written "
                                       "or before it settled", now=now)
            return
        except OSError as error:
            self.reads.forget(video.id)
            self._fail_unreadable(video, error, now)
            return
        if (stat.st_size, stat.st_mtime_ns) != (video.size, video.mtime_ns):
            self.reads.forget(video.id)
            self.store.update_video(video.id, size=stat.st_size, mtime_ns=stat.st_mtime_ns, stable_since=now, now=now)
            return
        if self.reads.get(video.id) is not None:
            return
        still_for = now - (video.stable_since if video.stable_since is not None else now)
        if still_for < self.settle_s:
            return
        if self.events and self.events.is_writing(video.path) and still_for < WRITING_GRACE_FACTOR * self.settle_s:
            return
        if stat.st_size == 0:
            self._quarantine(video, "empty file (0 bytes)", now)
            return
        self.reads.submit(video.id, video.path, stat.st_size)

    def _admit(self, read: Read, now: float) -> None:
        """Given a finished read, queue, quarantine or fail its video, or let it wait."""
        try:
            video = self.store.video(read.key)
        except KeyError:
            return
        if video.state is not S.SETTLING or isinstance(read.error, ReadCancelled):
            return
        error = read.error
        if isinstance(error, ReadStalled):
            self.store.update_video(video.id, stable_since=now, not_before=now + self.reads.stall_s, now=now,
                                    reason=f"waiting: {error}; trying again in {self.reads.stall_s:.0f} s")
            return
        if isinstance(error, FileNotFoundError):
            self.store.set_video_state(video.id, S.MISSING, "the file vanished while it was being read", now=now)
            return
        if isinstance(error, OSError):
            self._fail_unreadable(video, error, now)
            return
        if isinstance(error, ProbeError):
            self._quarantine(video, str(error), now)
            return
        if error is not None:
            log.error("video %d: cannot read %s: %s", video.id, video.path, error,
                      exc_info=not isinstance(error, ProbeUnavailableError))
            self.store.update_video(video.id, stable_since=now, reason=f"waiting: {error}", now=now)
            return
        examined: Examined = read.result
        try:
            after = os.stat(video.path)
        except OSError as error:
            self._fail_unreadable(video, error, now)
            return
        if (after.st_size, after.st_mtime_ns) != (video.size, video.mtime_ns):
            self.store.update_video(video.id, size=after.st_size, mtime_ns=after.st_mtime_ns, stable_since=now,
                                    now=now)
            return
        info, sha256 = examined.info, examined.sha256
        metadata = dict(sha256=sha256, frames=info.frames, fps=info.fps, duration=info.duration,
                        codec=info.codec, width=info.width, height=info.height, not_before=None)
        original = self.store.video_with_sha256(sha256, exclude_id=video.id)
        if original is not None:
            self.store.set_video_state(video.id, S.DUPLICATE, f"same content as video {original.id} "
                                       f"({original.path}); not analyzed again", now=now,
                                       duplicate_of=original.id, **metadata)
            return
        self.store.set_video_state(video.id, S.QUEUED, f"complete: {info.frames} frames at {info.fps:.3g} fps, "
                                   f"{info.codec} {info.width}x{info.height}", now=now, **metadata)

    def _quarantine(self, video: Video, why: str, now: float) -> None:
        self.store.set_video_state(video.id, S.QUARANTINED, f"quarantined: {why}; fix or replace the file, "
                                   "then run `dlcwatch retry`", now=now)

    def _fail_unreadable(self, video: Video, error: OSError, now: float) -> None:
        why = error.strerror or str(error)
        self.store.set_video_state(video.id, S.FAILED, f"cannot read the file: {why}; fix its permissions "
                                   "or storage, then run `dlcwatch retry`", now=now)


def check_readable(path: str) -> None:
    """Open and read one byte, so permission problems are named as such. Raise OSError."""
    with open(path, "rb") as stream:
        stream.read(1)
