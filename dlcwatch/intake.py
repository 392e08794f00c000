"""The watch step: reconcile watched folders with the database and admit complete videos.

A file moves from settling to queued only when its size and mtime have held still for the
settle time, inotify does not report it open for writing, ffprobe reads it as a video and its
sha256 is known. Bad files are quarantined with the reason; nothing is dropped silently.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import Callable

from dlcwatch.checksum import sha256_file
from dlcwatch.discovery import FileSeen, is_candidate, list_candidates, should_poll
from dlcwatch.probe import ProbeError, ProbeUnavailableError, VideoInfo, probe_video
from dlcwatch.states import VideoState
from dlcwatch.store import Store, Video
from dlcwatch.watcher import FileEvents

log = logging.getLogger("dlcwatch.intake")

S = VideoState
# With an open-for-write report but no close (a lost event), still admit after this many settle times.
WRITING_GRACE_FACTOR = 4


class Intake:
    """Given the watch config and the store, find, settle, probe and fingerprint videos."""

    def __init__(self, watch, store: Store, *, events: FileEvents | None = None,
                 skip_dirs: tuple[str, ...] = (), probe: Callable[[Path], VideoInfo] = probe_video,
                 hasher: Callable[[Path], str] = sha256_file):
        self.roots = list(watch.roots)
        self.settle_s = watch.settle_s
        self.rescan_interval_s = watch.rescan_interval_s
        self.store = store
        self.events = events
        self.skip_dirs = skip_dirs
        self.probe = probe
        self.hasher = hasher
        self._next_scan = {root.path: 0.0 for root in self.roots}
        self._root_problem: dict[str, str] = {}
        self.polled = frozenset(root.path for root in self.roots if should_poll(root.polling, root.path))

    def watched_roots(self) -> list[tuple[str, bool]]:
        """Return the (path, recursive) roots that inotify can watch."""
        return [(root.path, root.recursive) for root in self.roots if root.path not in self.polled]

    def tick(self, now: float) -> None:
        dirty, rescan = self.events.take() if self.events else (set(), False)
        for root in self.roots:
            if rescan or now >= self._next_scan[root.path]:
                self.scan_root(root, now)
                interval = root.polling_interval_s if root.path in self.polled else self.rescan_interval_s
                self._next_scan[root.path] = now + interval
        for path in sorted(dirty):
            self._look_at(path, now)
        self.settle(now)

    # ------------------------------------------------------------------ scanning

    def scan_root(self, root, now: float) -> None:
        """List one root, record what is new or changed, and notice what vanished."""
        if not os.path.isdir(root.path):
            self._report_root(root.path, f"watch root {root.path} is not available (unmounted?); "
                                         "skipping it, nothing is marked missing")
            return
        found, problems = list_candidates(root.path, root.include, root.exclude, root.recursive, self.skip_dirs)
        self._report_root(root.path, "; ".join(problems[:5]) if problems else "")
        for seen in found:
            self._observe(seen, now)
        present = {seen.path for seen in found}
        for video in self.store.videos([S.SETTLING, S.QUEUED]):
            if video.root == root.path and video.path not in present and not os.path.lexists(video.path):
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
            self._observe(FileSeen(path, relpath, stat.st_size, stat.st_mtime_ns), now)
            return

    def _observe(self, seen: FileSeen, now: float) -> None:
        video = self.store.video_by_path(seen.path)
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
        """Admit every settling video whose file has held still long enough."""
        for video in self.store.videos([S.SETTLING]):
            self._settle_one(video, now)

    def _settle_one(self, video: Video, now: float) -> None:
        try:
            stat = os.stat(video.path)
        except FileNotFoundError:
            self.store.set_video_state(video.id, S.MISSING, "the file vanished while it was being written "
                                       "or before it settled", now=now)
            return
        except OSError as error:
            self._fail_unreadable(video, error, now)
            return
        if (stat.st_size, stat.st_mtime_ns) != (video.size, video.mtime_ns):
            self.store.update_video(video.id, size=stat.st_size, mtime_ns=stat.st_mtime_ns, stable_since=now, now=now)
            return
        still_for = now - (video.stable_since if video.stable_since is not None else now)
        if still_for < self.settle_s:
            return
        if self.events and self.events.is_writing(video.path) and still_for < WRITING_GRACE_FACTOR * self.settle_s:
            return
        if stat.st_size == 0:
            self._quarantine(video, "empty file (0 bytes)", now)
            return
        try:
            check_readable(video.path)
        except OSError as error:
            self._fail_unreadable(video, error, now)
            return
        try:
            info = self.probe(Path(video.path))
        except ProbeError as error:
            self._quarantine(video, str(error), now)
            return
        except ProbeUnavailableError as error:
            log.error("video %d: cannot probe %s: %s", video.id, video.path, error)
            self.store.update_video(video.id, stable_since=now, reason=f"waiting: {error}", now=now)
            return
        try:
            sha256 = self.hasher(Path(video.path))
            after = os.stat(video.path)
        except OSError as error:
            self._fail_unreadable(video, error, now)
            return
        if (after.st_size, after.st_mtime_ns) != (video.size, video.mtime_ns):
            self.store.update_video(video.id, size=after.st_size, mtime_ns=after.st_mtime_ns, stable_since=now,
                                    now=now)
            return
        metadata = dict(sha256=sha256, frames=info.frames, fps=info.fps, duration=info.duration,
                        codec=info.codec, width=info.width, height=info.height)
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
