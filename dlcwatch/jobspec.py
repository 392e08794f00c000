"""The two files a job is made of: the spec the daemon writes and the result the worker writes.

Both sides import this module, so it depends on the standard library only. Files are written
to a temporary name and renamed, so a reader never sees half of one.
"""

from __future__ import annotations

import contextlib
import json
import os
import tempfile
from pathlib import Path
from typing import Any

SPEC_VERSION = 1

# Worker exit codes (sysexits.h): the executor reports them; the result file is the detail.
EXIT_OK = 0              # every video ended analyzed, bad or missing (see the result)
EXIT_USAGE = 64          # the spec could not be read: a bug or a damaged job folder
EXIT_BAD_INPUT = 65      # at least one video is bad; the rest are done
EXIT_ATTEMPT_FAILED = 75  # at least one video failed for a reason worth another attempt

# Per-video outcomes in the result file.
OK = "ok"
BAD_VIDEO = "bad_video"    # the video itself is unusable: quarantine, do not retry
NO_ANIMAL = "no_animal"    # analyzed, but no animal was found in it: deliver what there is, done
MISSING = "missing"        # the source file is gone
ERROR = "error"            # this attempt failed (out of memory, a crash, …): retry


def write_json_atomic(path: str | Path, data: Any) -> None:
    """Given a path and JSON-able data, write it so readers see the old or the new file, never half."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    handle, temporary = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(handle, "w", encoding="utf-8") as stream:
            json.dump(data, stream, indent=2, sort_keys=True, ensure_ascii=False)
            stream.flush()
            os.fsync(stream.fileno())
        os.replace(temporary, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(temporary)
        raise


def read_json(path: str | Path) -> Any:
    with open(path, encoding="utf-8") as stream:
        return json.load(stream)


def read_result(path: str | Path) -> dict | None:
    """Given a result path, return the result, or None if the worker never wrote one."""
    try:
        result = read_json(path)
    except FileNotFoundError:
        return None
    except (OSError, ValueError):
        return None  # unreadable counts as no result: the job is retried
    return result if isinstance(result, dict) else None


def staged_name(video_id: int, source: str) -> str:
    """Given a video id and its source path, return the ASCII name it is analyzed under.

    DeepLabCut breaks on some characters in names; results are renamed back on delivery."""
    extension = "".join(c for c in Path(source).suffix.lower() if c.isascii() and (c.isalnum() or c == "."))
    return f"video{video_id}{extension or '.mp4'}"

