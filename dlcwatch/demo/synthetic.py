"""Synthetic behavior videos for the demo and the tests: two bright dots (head, tail) circling.

Frames are drawn with numpy and encoded by the ffmpeg command-line tool, so nothing is
downloaded and the ground truth of every frame is known.
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path

import numpy as np

from dlcwatch.run import run

FFMPEG_TIMEOUT_S = 600  # a few GB written at disk speed; far longer means ffmpeg is stuck
BODYPARTS = ("head", "tail")
COLORS = {"head": (255, 255, 255), "tail": (255, 40, 40)}  # RGB


def positions(index: int, total: int, size: int, phase: float = 0.0) -> dict[str, tuple[float, float]]:
    """Given a frame index, return the true (x, y) of each body part in that frame."""
    center, radius = size / 2, size * 0.3
    angle = phase + 2 * np.pi * index / total * 2  # two laps per video
    head = (center + radius * np.cos(angle), center + radius * np.sin(angle))
    tail = (center + 0.5 * radius * np.cos(angle + 0.8), center + 0.5 * radius * np.sin(angle + 0.8))
    return {"head": head, "tail": tail}


def draw_frame(index: int, total: int, size: int, phase: float = 0.0) -> np.ndarray:
    """Given a frame index, return that frame as an RGB uint8 array."""
    frame = np.full((size, size, 3), 20, np.uint8)
    rows, columns = np.mgrid[0:size, 0:size]
    dot_radius = max(3, size // 24)
    for part, (x, y) in positions(index, total, size, phase).items():
        frame[(columns - x) ** 2 + (rows - y) ** 2 <= dot_radius**2] = COLORS[part]
    return frame


def video_command(path: Path, size: int, fps: float) -> list[str]:
    """Return the ffmpeg argv that encodes raw RGB frames from stdin into `path`."""
    codec = ["-c:v", "mjpeg", "-q:v", "3"] if path.suffix.lower() == ".avi" else \
        ["-c:v", "libx264", "-preset", "veryfast", "-crf", "18", "-pix_fmt", "yuv420p"]
    return ["ffmpeg", "-nostdin", "-v", "error", "-y", "-f", "rawvideo", "-pix_fmt", "rgb24",
            "-video_size", f"{size}x{size}", "-framerate", str(fps), "-i", "-", *codec, str(path)]


def write_video(path: str | Path, frames: int = 150, size: int = 128, fps: float = 30,
                phase: float = 0.0) -> Path:
    """Given a path (.mp4 or .avi), write a synthetic video there and return the path."""
    path = Path(path).absolute()
    path.parent.mkdir(parents=True, exist_ok=True)

    return encode_video(path, (draw_frame(index, frames, size, phase) for index in range(frames)), size, fps)


def encode_video(path: Path, frames: Iterable[np.ndarray], size: int, fps: float) -> Path:
    """Given a path, RGB frames (size x size x 3, uint8) and a frame rate, encode them there with ffmpeg.
    Return the path; raise RuntimeError with ffmpeg's reason if it fails."""

    def send(write) -> None:
        for frame in frames:
            write(frame.tobytes())

    completed = run(video_command(path, size, fps), FFMPEG_TIMEOUT_S, feed=send)
    if not completed.ok:
        raise RuntimeError(f"ffmpeg could not write {path}: {completed.reason('ffmpeg')}")
    return path


def write_long_video(path: str | Path, gigabytes: float, *, width: int = 1280, height: int = 1024,
                     fps: int = 200) -> tuple[Path, int]:
    """Given an .avi path, write an MJPEG video of about that many GB (a lab camera at 200 fps) in
    seconds: encode one second, then concatenate copies of it without re-encoding (-c copy).
    Return (path, frames). Raise RuntimeError with ffmpeg's reason if it fails."""
    path = Path(path)
    segment = path.with_name(path.stem + ".segment.avi")
    listing = path.with_name(path.stem + ".segments.txt")
    _ffmpeg(["-f", "lavfi", "-i", f"testsrc2=size={width}x{height}:rate={fps}", "-t", "1", "-c:v", "mjpeg",
             "-q:v", "2", "-pix_fmt", "yuvj420p", str(segment.absolute())], path)
    copies = max(1, round(gigabytes * 1e9 / segment.stat().st_size))
    quoted = "'" + str(segment.absolute()).replace("'", "'\\''") + "'"
    listing.write_text(f"file {quoted}\n" * copies)
    try:
        _ffmpeg(["-f", "concat", "-safe", "0", "-i", str(listing.absolute()), "-c", "copy", str(path.absolute())],
                path)
    finally:
        segment.unlink(missing_ok=True)
        listing.unlink(missing_ok=True)
    return path, copies * fps


def _ffmpeg(arguments: list[str], path: Path) -> None:
    """Run ffmpeg quietly with these arguments; raise RuntimeError with its reason if it fails."""
    completed = run(["ffmpeg", "-nostdin", "-v", "error", "-y", *arguments], FFMPEG_TIMEOUT_S)
    if not completed.ok:
        raise RuntimeError(f"ffmpeg could not write {path}: {completed.reason('ffmpeg')}")
