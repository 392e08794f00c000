"""Content fingerprints: sha256 of a file, read once, in chunks (videos are many GB)."""

from __future__ import annotations

import hashlib
from pathlib import Path

CHUNK_BYTES = 4 * 1024 * 1024


def sha256_file(path: str | Path) -> str:
    """Given a file, return the hex sha256 of its content. Raise OSError."""
    digest = hashlib.sha256()
    with open(path, "rb") as stream:
        while chunk := stream.read(CHUNK_BYTES):
            digest.update(chunk)
    return digest.hexdigest()
