"""Which files in a watched folder are candidate videos, and what kind of file system holds it."""

from __future__ import annotations

import fnmatch
import logging
import os
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterator

log = logging.getLogger("dlcwatch.intake.scan")

# Names that writers use while a file is incomplete: browsers, rsync, scp/WinSCP, editors.
PARTIAL_SUFFIXES = (".part", ".partial", ".tmp", ".temp", ".crdownload", ".filepart", ".download", "~")

# inotify sees no changes made by other hosts on these, so 'polling: auto' polls them.
NETWORK_FILESYSTEMS = frozenset({
    "nfs", "nfs4", "cifs", "smb3", "smbfs", "fuse.sshfs", "sshfs", "9p", "ceph", "fuse.ceph", "lustre",
    "gpfs", "glusterfs", "fuse.glusterfs", "beegfs", "afs", "davfs", "fuse.rclone", "fuse.s3fs", "fuse.gcsfuse",
    "panfs", "wekafs", "fuse.juicefs",
})


@dataclass(frozen=True)
class FileSeen:
    path: str      # absolute
    relpath: str   # relative to its watch root, with '/' separators
    size: int
    mtime_ns: int


def is_partial_name(name: str) -> bool:
    """Given a file name, return True if it looks like a file still being written or hidden.

    Hidden names cover rsync's temporary '.name.XXXXXX' and macOS '._name' files."""
    lowered = name.lower()
    return name.startswith((".", "~$")) or lowered.endswith(PARTIAL_SUFFIXES)


def matches_patterns(relpath: str, include: list[str], exclude: list[str]) -> bool:
    """Given a relative path, return True if its name matches an include pattern and no exclude.

    Matching ignores case, so '*.mp4' takes 'Mouse1.MP4' too."""
    name = relpath.rsplit("/", 1)[-1].lower()
    if not any(fnmatch.fnmatchcase(name, pattern.lower()) for pattern in include):
        return False
    lowered = relpath.lower()
    return not any(fnmatch.fnmatchcase(lowered, pattern.lower()) or fnmatch.fnmatchcase(name, pattern.lower())
                   for pattern in exclude)


def is_candidate(root: str, path: str, include: list[str], exclude: list[str], recursive: bool,
                 skip_dirs: tuple[str, ...] = ()) -> str | None:
    """Given a path under a root, return its relative path if it is a candidate video, else None."""
    try:
        relpath = Path(path).relative_to(root).as_posix()
    except ValueError:
        return None
    parts = relpath.split("/")
    if not recursive and len(parts) > 1:
        return None
    if any(part.startswith(".") for part in parts[:-1]) or is_partial_name(parts[-1]):
        return None
    if any(_is_within(path, skip) for skip in skip_dirs):
        return None
    return relpath if matches_patterns(relpath, include, exclude) else None


def list_candidates(root: str, include: list[str], exclude: list[str], recursive: bool,
                    skip_dirs: tuple[str, ...] = ()) -> tuple[list[FileSeen], list[str]]:
    """Given a watch root, return (every candidate video in it, oldest first; problems met while
    listing). A folder that cannot be read is reported and skipped; the rest is still listed."""
    scanner = TreeScanner(root, include, exclude, recursive, skip_dirs)
    found = [seen for listing in scanner.scan(full=True) for seen in listing.found]
    found.sort(key=lambda seen: (seen.mtime_ns, seen.path))
    return found, scanner.problems


# A folder changed this recently may change again within its mtime's granularity (1-2 s on
# SMB and FAT-backed shares) without its mtime moving: list it again next time.
RACY_WINDOW_NS = 2_000_000_000


@dataclass
class FolderListing:
    """One folder that was listed: the candidate videos in it, and the sub-folders that are gone."""

    folder: str
    found: list[FileSeen]
    vanished: list[str] = field(default_factory=list)


@dataclass
class _Folder:
    mtime_ns: int | None   # None: list it again next time (changed too recently to trust)
    subfolders: list[str]


class TreeScanner:
    """Given a watch root and its patterns, list only the folders whose mtime changed since the last
    scan: adding, removing or renaming a file changes its folder's mtime, so an unchanged folder
    holds the same files. A scan stats every known folder and no file of an unchanged one.

    What mtimes miss (a file rewritten in place, a folder whose mtime a network file system caches
    or does not keep) is caught by a full scan (full=True), which lists everything."""

    def __init__(self, root: str, include: list[str], exclude: list[str], recursive: bool,
                 skip_dirs: tuple[str, ...] = ()):
        self.root = root
        self.include, self.exclude, self.recursive, self.skip_dirs = include, exclude, recursive, skip_dirs
        self._folders: dict[str, _Folder] = {}
        self.counts: Counter = Counter()  # 'folder_stats', 'listings', 'file_stats' since creation
        self.problems: list[str] = []

    def scan(self, *, full: bool = False) -> Iterator[FolderListing]:
        """Yield the folders listed, each with its candidate videos, visiting the tree from the root
        and listing a folder only if full or its mtime changed; one folder at a time, so memory
        does not grow with the tree. Problems met are in self.problems once the scan is done."""
        self.problems = problems = []
        pending = [self.root]
        while pending:
            folder = pending.pop()
            known = self._folders.get(folder)
            try:
                self.counts["folder_stats"] += 1
                mtime_ns = os.stat(folder).st_mtime_ns
            except OSError as error:
                problems.append(f"cannot list {folder}: {error.strerror or error}")
                self._forget(folder)
                continue
            if not full and known is not None and known.mtime_ns == mtime_ns:
                pending.extend(os.path.join(folder, name) for name in known.subfolders)
                continue
            listing, subfolders = self._list(folder, problems)
            if listing is None:
                self._forget(folder)
                continue
            if known is not None:
                listing.vanished = [os.path.join(folder, name) for name in known.subfolders
                                    if name not in subfolders]
                for gone in listing.vanished:
                    self._forget(gone)
            trusted = time.time_ns() - mtime_ns >= RACY_WINDOW_NS
            self._folders[folder] = _Folder(mtime_ns if trusted else None, subfolders)
            pending.extend(os.path.join(folder, name) for name in subfolders)
            yield listing

    def _list(self, folder: str, problems: list[str]) -> tuple[FolderListing | None, list[str]]:
        try:
            self.counts["listings"] += 1
            with os.scandir(folder) as entries:
                entries = list(entries)
        except OSError as error:
            problems.append(f"cannot list {folder}: {error.strerror or error}")
            return None, []
        found, subfolders = [], []
        for entry in entries:
            try:
                if entry.is_dir(follow_symlinks=False):
                    if self.recursive and not entry.name.startswith(".") and entry.path not in self.skip_dirs:
                        subfolders.append(entry.name)
                    continue
                if not entry.is_file():
                    continue
                relpath = is_candidate(self.root, entry.path, self.include, self.exclude, self.recursive,
                                       self.skip_dirs)
                if relpath is None:
                    continue
                self.counts["file_stats"] += 1
                stat = entry.stat()
            except OSError as error:
                problems.append(f"cannot read {entry.path}: {error.strerror or error}")
                continue
            found.append(FileSeen(entry.path, relpath, stat.st_size, stat.st_mtime_ns))
        return FolderListing(folder, found), sorted(subfolders)

    def _forget(self, folder: str) -> None:
        known = self._folders.pop(folder, None)
        for name in known.subfolders if known else ():
            self._forget(os.path.join(folder, name))


def filesystem_type(path: str, mountinfo: str | None = None) -> str:
    """Given a path, return the type of the file system it lives on ('' if unknown).

    Reads /proc/self/mountinfo unless its text is given (tests pass their own)."""
    if mountinfo is None:
        try:
            mountinfo = Path("/proc/self/mountinfo").read_text()
        except OSError:
            return ""
    target = os.path.realpath(path)
    best, best_type = "", ""
    for line in mountinfo.splitlines():
        fields = line.split()
        if " - " not in line or len(fields) < 5:
            continue
        mount_point = fields[4].replace("\\040", " ")
        fs_type = line.split(" - ", 1)[1].split()[0]
        if _is_within(target, mount_point) and len(mount_point) >= len(best):
            best, best_type = mount_point, fs_type
    return best_type


def should_poll(polling: str, path: str, mountinfo: str | None = None) -> bool:
    """Given the 'polling' setting of a root, return True if it must be polled."""
    if polling == "on":
        return True
    if polling == "off":
        return False
    return filesystem_type(path, mountinfo) in NETWORK_FILESYSTEMS


def _is_within(path: str, folder: str) -> bool:
    folder = folder.rstrip("/") or "/"
    return path == folder or path.startswith(folder if folder == "/" else folder + "/")
