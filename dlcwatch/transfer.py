"""Copies that are atomic and verified: a reader sees the old file or the whole new one.

Each copy goes to a temporary name in the destination folder, is flushed to disk, read back and
compared by sha256, and only then renamed into place.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import tempfile
from pathlib import Path

from dlcwatch.checksum import CHUNK_BYTES, sha256_file


class TransferError(OSError):
    """A copy could not be made or did not verify."""


def copy_verified(source: Path, destination: Path) -> str:
    """Given a file and a destination path, copy it atomically; return its sha256. Raise TransferError."""
    destination.parent.mkdir(parents=True, exist_ok=True)
    handle, temporary = tempfile.mkstemp(prefix=f".{destination.name}.", suffix=".part", dir=destination.parent)
    try:
        digest = hashlib.sha256()
        with open(source, "rb") as reader, os.fdopen(handle, "wb") as writer:
            while chunk := reader.read(CHUNK_BYTES):
                digest.update(chunk)
                writer.write(chunk)
            writer.flush()
            os.fsync(writer.fileno())
        expected = digest.hexdigest()
        written = sha256_file(temporary)
        if written != expected:
            raise TransferError(f"copy of {source} to {destination} does not verify "
                                f"(sha256 {written[:12]}… instead of {expected[:12]}…)")
        os.replace(temporary, destination)
        fsync_folder(destination.parent)
        return expected
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(temporary)
        raise


def fsync_folder(folder: Path) -> None:
    """Flush a folder's entries, so a rename survives a power cut. Some file systems refuse: fine."""
    with contextlib.suppress(OSError):
        descriptor = os.open(folder, os.O_RDONLY)
        try:
            os.fsync(descriptor)
        finally:
            os.close(descriptor)
