"""The one way dlcwatch writes a file, and the one rule for the permissions it gets.

Every file the project writes (job spec and result, delivered copies, manifest, QC picture,
behavior labels and models) goes through `atomic_write`: a temporary name in the destination
folder, flushed to disk, given its final mode (and group), then renamed into place. A reader
sees the old file or the whole new one, and never a file with the temporary file's owner-only
mode (mkstemp makes 0600 files, which is how results once became unreadable to the lab).

The rule (`Permissions`): files 0666 and folders 0777 less the process umask — the unit's
UMask=0027 gives 0640/0750 — unless the config names modes; an optional group, with folders
setgid so that what lands in them later inherits it; never writable by others.

Both the daemon and the worker import this module, so it needs the standard library only.
"""

from __future__ import annotations

import contextlib
import grp
import hashlib
import json
import os
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any, Callable, Iterator

from dlcwatch.intake.fingerprint import CHUNK_BYTES, sha256_file
from dlcwatch.errors import TransferError

WORLD_WRITABLE = 0o002


def current_umask() -> int:
    """Return the process umask without changing it (os.umask would, briefly, for every thread)."""
    try:
        with open("/proc/self/status", encoding="ascii") as status:
            for line in status:
                if line.startswith("Umask:"):
                    return int(line.split()[1], 8)
    except (OSError, ValueError, IndexError):
        pass
    mask = os.umask(0o022)  # no /proc (not Linux): the round trip is the only way to read it
    os.umask(mask)
    return mask


@dataclass(frozen=True)
class Permissions:
    """What a written file or a created folder gets: its mode, and a group when one is set."""

    file_mode: int
    dir_mode: int
    group: str = ""

    @classmethod
    def from_umask(cls, *, file_mode: int | None = None, dir_mode: int | None = None,
                   group: str = "") -> "Permissions":
        """Given optional explicit modes and a group name, return the permissions for them.

        Modes not given follow the process umask. With a group, folders are setgid. Nobody but
        the owner and the group may ever write, whatever the umask or the config says."""
        mask = current_umask()
        files = (0o666 & ~mask) if file_mode is None else file_mode
        folders = (0o777 & ~mask) if dir_mode is None else dir_mode
        if group:
            folders |= 0o2000
        return cls(files & ~WORLD_WRITABLE & 0o777, folders & ~WORLD_WRITABLE & 0o2777, group)

    @property
    def gid(self) -> int | None:
        """Return the group's id on this machine, or None when no group is set. Raise KeyError."""
        return grp.getgrnam(self.group).gr_gid if self.group else None

    def apply(self, path: Path | str, *, folder: bool = False) -> None:
        """Given a path this process owns, give it the group (first) and then the mode. Raise OSError."""
        gid = self._gid_or_error()
        if gid is not None:
            os.chown(path, -1, gid)
        # chmod after chown: changing the group may clear the setgid bit.
        os.chmod(path, self.dir_mode if folder else self.file_mode)

    def _gid_or_error(self) -> int | None:
        try:
            return self.gid
        except KeyError:
            raise PermissionError(f"output.group: no group {self.group!r} on this machine") from None


_default: Permissions | None = None


def default_permissions() -> Permissions:
    """Return the permissions of a file written where the config says nothing: the umask's."""
    global _default
    if _default is None:
        _default = Permissions.from_umask()
    return _default


@contextlib.contextmanager
def atomic_write(path: Path | str, *, binary: bool = True, permissions: Permissions | None = None,
                 before_rename: Callable[[Path], None] | None = None) -> Iterator[IO]:
    """Given a destination path, yield a temporary file beside it; when the block ends, move it into place.

    The temporary file is flushed to disk, given `permissions` (default: the umask's), checked by
    `before_rename` when given (which raises to refuse it), and renamed over `path`. On any error
    the temporary file is removed and the error propagates; the old file, if any, stays."""
    with atomic_path(path, permissions=permissions, before_rename=before_rename) as temporary:
        text = {} if binary else {"encoding": "utf-8", "newline": ""}
        with open(temporary, "wb" if binary else "w", **text) as stream:
            yield stream


@contextlib.contextmanager
def atomic_path(path: Path | str, *, permissions: Permissions | None = None,
                before_rename: Callable[[Path], None] | None = None) -> Iterator[Path]:
    """Given a destination path, yield a temporary path beside it (also for a library that writes by
    file name, such as pandas' HDF5); when the block ends, the file there is flushed, given its
    permissions, checked by `before_rename`, and renamed over `path`. On any error it is removed
    and the error propagates."""
    path = Path(path)
    handle, temporary = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".part", dir=path.parent)
    os.close(handle)
    try:
        yield Path(temporary)
        with open(temporary, "rb+") as stream:
            os.fsync(stream.fileno())
        (permissions or default_permissions()).apply(temporary)
        if before_rename is not None:
            before_rename(Path(temporary))
        os.replace(temporary, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(temporary)
        raise
    fsync_folder(path.parent)


def write_json_atomic(path: Path | str, data: Any, *, permissions: Permissions | None = None) -> None:
    """Given a path and JSON-able data, write it so readers see the old or the new file, never half."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with atomic_write(path, binary=False, permissions=permissions) as stream:
        json.dump(data, stream, indent=2, sort_keys=True, ensure_ascii=False)


def copy_verified(source: Path, destination: Path, *, permissions: Permissions | None = None,
                  progress: Callable[[int], None] | None = None) -> str:
    """Given a file and a destination path, copy it atomically and verified; return its sha256.

    The copy is read back from disk and compared with what was read from the source before it
    is renamed into place; progress(bytes copied so far) follows the copy, and what it raises stops
    it. Raise TransferError (or OSError) and leave nothing behind on failure."""
    digest = hashlib.sha256()

    def verify(temporary: Path) -> None:
        written = sha256_file(temporary)
        if written != digest.hexdigest():
            raise TransferError(f"copy of {source} to {destination} does not verify "
                                f"(sha256 {written[:12]}… instead of {digest.hexdigest()[:12]}…)")

    with open(source, "rb") as reader, atomic_write(destination, permissions=permissions,
                                                     before_rename=verify) as writer:
        while chunk := reader.read(CHUNK_BYTES):
            digest.update(chunk)
            writer.write(chunk)
            if progress is not None:
                progress(reader.tell())
    return digest.hexdigest()


def make_folder(folder: Path, *, below: Path, permissions: Permissions | None = None) -> None:
    """Given a folder under `below`, create it and its missing parents up to `below`, each with the permissions.

    Folders that already exist are left as they are (a lab may have set them up by hand). Raise OSError."""
    folder, below = Path(folder), Path(below)
    permissions = permissions or default_permissions()
    missing = []
    current = folder
    while not current.is_dir() and current != current.parent:
        missing.append(current)
        if current == below:
            break
        current = current.parent
    if missing:
        missing[-1].parent.mkdir(parents=True, exist_ok=True)  # above `below`: not ours to set
    for path in reversed(missing):
        try:
            path.mkdir()
        except FileExistsError:
            if not path.is_dir():
                raise
            continue  # made meanwhile by someone else: theirs to set
        permissions.apply(path, folder=True)


def make_private_folder(folder: Path) -> Path:
    """Given a folder only this service should read (staging, state), create it 0700 if missing; return it.

    An existing folder keeps the mode a person gave it."""
    folder = Path(folder)
    if not folder.is_dir():
        folder.parent.mkdir(parents=True, exist_ok=True)
        with contextlib.suppress(FileExistsError):
            folder.mkdir()
            os.chmod(folder, 0o700)
    return folder


def create_private_file(path: Path) -> None:
    """Given a file only this service should read (the state database), create it empty and 0600 if missing."""
    with contextlib.suppress(FileExistsError):
        os.close(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600))


def fsync_folder(folder: Path) -> None:
    """Flush a folder's entries, so a rename survives a power cut. Some file systems refuse: fine."""
    with contextlib.suppress(OSError):
        descriptor = os.open(folder, os.O_RDONLY)
        try:
            os.fsync(descriptor)
        finally:
            os.close(descriptor)
