"""The result files the page may show: pictures and clips named in a delivered video's manifest.

A file is asked for by video id and output kind (`/files/12/qc_png`), never by a path: the
database says where the video's results are, their manifest says which file a kind is, and only
a plain file name of a picture or a clip, inside that folder, is ever served.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

from dlcwatch.delivery.results import MANIFEST
from dlcwatch.schema import parse_remote
from dlcwatch.store import Video

MEDIA_TYPES = {".png": "image/png", ".jpg": "image/jpeg", ".jpeg": "image/jpeg", ".gif": "image/gif",
               ".mp4": "video/mp4", ".webm": "video/webm"}
MANIFEST_MAX_BYTES = 4 * 1024 * 1024


@dataclass(frozen=True)
class ResultFile:
    kind: str        # the manifest's key, e.g. qc_png
    name: str        # the file name in the results folder
    media_type: str

    @property
    def is_image(self) -> bool:
        return self.media_type.startswith("image/")


def results_folder(video: Video) -> Path | None:
    """Given a video, return its local results folder, or None (none yet, or on another machine)."""
    if not video.output_dir or parse_remote(video.output_dir):
        return None
    return Path(video.output_dir)


def read_manifest(video: Video) -> dict | None:
    """Given a video, return its delivered manifest, or None when there is none to read here."""
    folder = results_folder(video)
    if folder is None:
        return None
    try:
        with open(folder / MANIFEST, "rb") as stream:
            manifest = json.loads(stream.read(MANIFEST_MAX_BYTES))
    except (OSError, ValueError):
        return None
    return manifest if isinstance(manifest, dict) else None


def listed_files(manifest: dict | None) -> list[ResultFile]:
    """Given a manifest, return the pictures and clips it names, in the order of their kinds."""
    outputs = (manifest or {}).get("outputs")
    if not isinstance(outputs, dict):
        return []
    found = []
    for kind, entry in sorted(outputs.items()):
        name = entry.get("file") if isinstance(entry, dict) else None
        media_type = MEDIA_TYPES.get(Path(name).suffix.lower()) if isinstance(name, str) else None
        # A manifest sits on the lab's storage, where anyone may have edited it: only a plain
        # name of a file beside it counts.
        if media_type and name == Path(name).name and not name.startswith(".") and "\\" not in name:
            found.append(ResultFile(str(kind), name, media_type))
    return found


def viewable_files(video: Video, manifest: dict | None) -> list[ResultFile]:
    """Given a video and its manifest, return the pictures and clips that can be served."""
    folder = results_folder(video)
    return [file for file in listed_files(manifest) if folder is not None and _inside(folder, file.name)]


def result_file(video: Video, kind: str) -> tuple[Path, str] | None:
    """Given a video and an output kind, return (the file, its media type), or None if not servable."""
    for file in viewable_files(video, read_manifest(video)):
        if file.kind == kind:
            return results_folder(video) / file.name, file.media_type
    return None


def _inside(folder: Path, name: str) -> bool:
    """Given a folder and a file name, say whether that is a file in the folder, links followed."""
    path = folder / name
    try:
        return path.resolve(strict=True).parent == folder.resolve(strict=True) and path.is_file()
    except OSError:
        return False
