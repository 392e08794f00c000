"""Content fingerprints: sha256 of a file, read once, in chunks (videos are many GB)."""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import BinaryIO, Callable

CHUNK_BYTES = 4 * 1024 * 1024


def sha256_file(path: str | Path) -> str:
    """Given a file, return the hex sha256 of its content. Raise OSError."""
    with open(path, "rb") as stream:
        return sha256_stream(stream)


def sha256_stream(stream: BinaryIO, each_chunk: Callable[[bytes, int], None] | None = None) -> str:
    """Given a binary stream, return the hex sha256 of what is left in it. each_chunk(chunk, bytes
    so far) sees every chunk as it goes by (to feed another reader, to report progress); what it
    raises propagates. Raise OSError."""
    digest = hashlib.sha256()
    done = 0
    while chunk := stream.read(CHUNK_BYTES):
        digest.update(chunk)  # hashlib lets go of the GIL on big chunks: the main loop keeps running
        done += len(chunk)
        if each_chunk is not None:
            each_chunk(chunk, done)
    return digest.hexdigest()
