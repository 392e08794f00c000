"""File-system events from watchdog, kept as hints.

Events say "look at this path soon" and "this file is open for writing"; they never decide on
their own. The periodic rescan in admission.py is the truth, so a missed event (inotify overflow, a
write from another NFS client) never loses a video. Roots on network file systems are not
watched here at all: inotify sees nothing there, and the rescan already polls them.
"""

from __future__ import annotations

import logging
import threading

from watchdog.events import FileSystemEvent, FileSystemEventHandler
from watchdog.observers import Observer

log = logging.getLogger("dlcwatch.intake.events")


class FileEvents(FileSystemEventHandler):
    """Collect watchdog events from several roots into a set of paths to look at."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._dirty: set[str] = set()
        self._writing: set[str] = set()
        self._rescan = False
        self._observer = None

    def start(self, roots: list[tuple[str, bool]]) -> list[str]:
        """Given (path, recursive) roots, start watching them; return problems (those roots are polled)."""
        problems = []
        self._observer = Observer()
        for path, recursive in roots:
            try:
                self._observer.schedule(self, path, recursive=recursive)
            except OSError as error:
                # Typically inotify's max_user_watches on a huge tree; the rescan still covers it.
                problems.append(f"cannot watch {path} with inotify ({error}); relying on rescans")
        self._observer.daemon = True
        self._observer.start()
        return problems

    def stop(self) -> None:
        if self._observer is not None:
            self._observer.stop()
            self._observer.join(timeout=5)
            self._observer = None

    def on_any_event(self, event: FileSystemEvent) -> None:
        kind = event.event_type
        if kind in ("opened", "closed_no_write"):
            return  # our own reads (ffprobe, sha256) cause these
        paths = [_text(event.src_path)]
        if kind == "moved":
            paths.append(_text(event.dest_path))
        with self._lock:
            if event.is_directory:
                if kind in ("moved", "created"):
                    self._rescan = True  # a folder full of videos moved in at once
                return
            self._dirty.update(paths)
            if kind in ("created", "modified"):
                self._writing.add(paths[0])
            elif kind in ("closed", "deleted", "moved"):
                self._writing.difference_update(paths[:1])

    def take(self) -> tuple[set[str], bool]:
        """Return (paths touched since the last call, whether a full rescan is wanted)."""
        with self._lock:
            dirty, self._dirty = self._dirty, set()
            rescan, self._rescan = self._rescan, False
        return dirty, rescan

    def is_writing(self, path: str) -> bool:
        """Return True if inotify saw this file written and not yet closed."""
        with self._lock:
            return path in self._writing


def _text(path: str | bytes) -> str:
    return path.decode("utf-8", "surrogateescape") if isinstance(path, bytes) else path
