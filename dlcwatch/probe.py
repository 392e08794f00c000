"""ffprobe: is a file a readable video, and how many frames, at what rate, does it hold?

We build ffprobe's argv ourselves instead of calling ffmpeg-python's probe(): that function
has no timeout, and a read that hangs on a stale NFS or SMB mount would freeze the daemon.
"""

from __future__ import annotations

import json
import subprocess
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path

PROBE_TIMEOUT_S = 120.0


@dataclass(frozen=True)
class VideoInfo:
    frames: int
    fps: float
    duration: float
    codec: str
    width: int
    height: int


class ProbeError(Exception):
    """ffprobe could not read the file as a video. The message says why, for a person."""


class ProbeUnavailableError(Exception):
    """ffprobe itself is missing or hung: nothing is known about the file."""


def probe_command(path: Path) -> list[str]:
    """Given an absolute path, return the ffprobe argv that reads its first video stream."""
    return [
        "ffprobe", "-v", "error", "-select_streams", "v:0", "-count_packets",
        "-show_entries",
        "stream=codec_name,codec_type,width,height,avg_frame_rate,r_frame_rate,nb_frames,nb_read_packets,duration"
        ":format=duration,format_name",
        "-of", "json", "-i", str(path),
    ]


def decode_command(path: Path) -> list[str]:
    """Given an absolute path, return the ffmpeg argv that decodes its first frame and discards it."""
    return ["ffmpeg", "-nostdin", "-v", "error", "-i", str(path), "-map", "0:v:0", "-frames:v", "1",
            "-f", "null", "-"]


def probe_video(path: str | Path, timeout_s: float = PROBE_TIMEOUT_S) -> VideoInfo:
    """Given a file, return its VideoInfo. Raise ProbeError if it is not a readable video."""
    path = Path(path).absolute()  # absolute, so a name starting with '-' is never an option
    output = _run(probe_command(path), timeout_s)
    try:
        data = json.loads(output)
    except json.JSONDecodeError as error:
        raise ProbeError(f"ffprobe printed something that is not JSON: {error}") from error
    streams = [s for s in data.get("streams", []) if s.get("codec_type", "video") == "video"]
    if not streams:
        raise ProbeError("the file has no video stream")
    stream = streams[0]
    frames = _int(stream.get("nb_read_packets")) or _int(stream.get("nb_frames"))
    if not frames:
        raise ProbeError("the video stream holds no frames")
    fps = _rate(stream.get("avg_frame_rate")) or _rate(stream.get("r_frame_rate"))
    if not fps:
        raise ProbeError("the video stream has no frame rate")
    duration = _float(stream.get("duration")) or _float(data.get("format", {}).get("duration")) or frames / fps
    _run(decode_command(path), timeout_s, what="decoding the first frame")
    return VideoInfo(frames=frames, fps=fps, duration=duration, codec=str(stream.get("codec_name", "?")),
                     width=_int(stream.get("width")) or 0, height=_int(stream.get("height")) or 0)


def _run(argv: list[str], timeout_s: float, what: str = "ffprobe") -> str:
    try:
        completed = subprocess.run(argv, capture_output=True, timeout=timeout_s, stdin=subprocess.DEVNULL)
    except FileNotFoundError as error:
        raise ProbeUnavailableError(f"{argv[0]} is not installed (apt-get install ffmpeg)") from error
    except subprocess.TimeoutExpired as error:
        raise ProbeUnavailableError(f"{argv[0]} did not finish within {timeout_s:.0f} s "
                                    "(is the file system hanging?)") from error
    if completed.returncode != 0:
        message = completed.stderr.decode("utf-8", "replace").strip().splitlines()
        # ffprobe prefixes lines with the file name; the last line is the useful one.
        detail = message[-1] if message else f"exit code {completed.returncode}"
        path = argv[-1] if what == "ffprobe" else argv[argv.index("-i") + 1]
        detail = detail.replace(f"{path}: ", "")
        raise ProbeError(f"not a readable video ({what} says: {detail})")
    return completed.stdout.decode("utf-8", "replace")


def _int(value) -> int | None:
    try:
        return int(value)
    except (TypeError, ValueError):
        return None


def _float(value) -> float | None:
    try:
        number = float(value)
    except (TypeError, ValueError):
        return None
    return number if number > 0 else None


def _rate(value) -> float | None:
    try:
        rate = Fraction(str(value))
    except (ValueError, ZeroDivisionError):
        return None
    return float(rate) if rate > 0 else None
