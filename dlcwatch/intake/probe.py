"""ffprobe: is a file a readable video, and how many frames, at what rate, does it hold?

We build ffprobe's argv ourselves instead of calling ffmpeg-python's probe(). A probe has no
total timeout: a 20-GB video on a slow share takes minutes. Instead the caller watches progress
(the bytes ffprobe has read, from /proc/<pid>/io) and gives up on no progress (reads.py).

Counting packets reads the whole file. Where the container holds an exact frame count (MP4/MOV
sample tables, the AVI index), the header is enough and the one full read is the sha256; where
it does not (Matroska, MPEG-TS, raw streams), the packets are counted from a pipe fed by that
same read (admission.py), so each video is read once either way.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path
from typing import Callable

from dlcwatch.errors import ProbeError, ProbeUnavailableError
from dlcwatch.run import CommandResult, bytes_read, run

# Containers whose frame count in the header is exact (ffprobe's format_name lists these names).
EXACT_FRAME_COUNT_FORMATS = frozenset({"mov", "mp4", "m4a", "3gp", "3g2", "mj2", "avi"})


@dataclass(frozen=True)
class VideoInfo:
    frames: int
    fps: float
    duration: float
    codec: str
    width: int
    height: int


def probe_command(path: Path) -> list[str]:
    """Given an absolute path, return the ffprobe argv that reads its first video stream."""
    return [
        "ffprobe", "-v", "error", "-select_streams", "v:0", "-count_packets",
        "-show_entries",
        "stream=codec_name,codec_type,width,height,avg_frame_rate,r_frame_rate,nb_frames,nb_read_packets,duration"
        ":format=duration,format_name",
        "-of", "json", "-i", str(path),
    ]


def header_command(path: Path) -> list[str]:
    """Given an absolute path, return the ffprobe argv that reads the container header only."""
    return [argument for argument in probe_command(path) if argument != "-count_packets"]


def pipe_count_command() -> list[str]:
    """Return the ffprobe argv that counts the video packets of the bytes fed to its stdin."""
    return ["ffprobe", "-v", "error", "-select_streams", "v:0", "-count_packets",
            "-show_entries", "stream=nb_read_packets", "-of", "json", "-i", "pipe:0"]


def decode_command(path: Path) -> list[str]:
    """Given an absolute path, return the ffmpeg argv that decodes its first frame and discards it."""
    return ["ffmpeg", "-nostdin", "-v", "error", "-i", str(path), "-map", "0:v:0", "-frames:v", "1",
            "-f", "null", "-"]


def probe_video(path: str | Path, progress: Callable[[int], None] | None = None) -> VideoInfo:
    """Given a file, return its VideoInfo with its packets counted (a full read). Raise ProbeError
    if it is not a readable video. `progress(bytes read)` is called while ffprobe reads."""
    path = Path(path).absolute()  # absolute, so a name starting with '-' is never an option
    data, stream = _parse(run_watched(probe_command(path), progress))
    frames = _int(stream.get("nb_read_packets")) or _int(stream.get("nb_frames"))
    info = _info(data, stream, frames or 0)
    run_watched(decode_command(path), progress, what="decoding the first frame")
    return info


def probe_header(path: str | Path, progress: Callable[[int], None] | None = None) -> VideoInfo:
    """Given a file, return its VideoInfo from the container header and check that its first frame
    decodes. frames is 0 where the container has no exact count (count them: probe_video or a
    pipe_count_command fed with the file). Raise ProbeError if it is not a readable video."""
    path = Path(path).absolute()
    data, stream = _parse(run_watched(header_command(path), progress))
    formats = set(str(data.get("format", {}).get("format_name", "")).split(","))
    frames = _int(stream.get("nb_frames")) if formats & EXACT_FRAME_COUNT_FORMATS else None
    info = _info(data, stream, frames or 0, need_frames=False)
    run_watched(decode_command(path), progress, what="decoding the first frame")
    return info


def counted_frames(output: str) -> int:
    """Given what pipe_count_command printed, return the frame count. Raise ProbeError."""
    frames = _int(_parse(output)[1].get("nb_read_packets"))
    if not frames:
        raise ProbeError("the video stream holds no frames")
    return frames


def _parse(output: str) -> tuple[dict, dict]:
    try:
        data = json.loads(output)
    except json.JSONDecodeError as error:
        raise ProbeError(f"ffprobe printed something that is not JSON: {error}") from error
    streams = [s for s in data.get("streams", []) if s.get("codec_type", "video") == "video"]
    if not streams:
        raise ProbeError("the file has no video stream")
    return data, streams[0]


def _info(data: dict, stream: dict, frames: int, *, need_frames: bool = True) -> VideoInfo:
    if need_frames and not frames:
        raise ProbeError("the video stream holds no frames")
    fps = _rate(stream.get("avg_frame_rate")) or _rate(stream.get("r_frame_rate"))
    if not fps:
        raise ProbeError("the video stream has no frame rate")
    duration = _float(stream.get("duration")) or _float(data.get("format", {}).get("duration")) or frames / fps
    return VideoInfo(frames=frames, fps=fps, duration=duration, codec=str(stream.get("codec_name", "?")),
                     width=_int(stream.get("width")) or 0, height=_int(stream.get("height")) or 0)


def run_watched(argv: list[str], progress: Callable[[int], None] | None = None, *, what: str = "ffprobe",
                timeout_s: float | None = None) -> str:
    """Given an argv, run it and return its stdout. While it runs, call progress(bytes it has read)
    every 0.2 s; an exception from progress (the read was given up) kills it and propagates.
    Raise ProbeError if it fails, ProbeUnavailableError if it is missing or passes timeout_s."""
    watch = (lambda pid: progress(bytes_read(pid))) if progress is not None else None
    result = run(argv, timeout_s, watch=watch)
    if result.not_found:
        raise ProbeUnavailableError(f"{argv[0]} is not installed (apt-get install ffmpeg)")
    if result.timed_out:
        raise ProbeUnavailableError(f"{argv[0]} did not finish within {timeout_s:.0f} s (is the file system hanging?)")
    return _result(argv, result, what)


def _result(argv: list[str], result: CommandResult, what: str = "ffprobe") -> str:
    """Given how a probe ended, return its stdout. Raise ProbeError naming what it said."""
    if not result.ok:
        message = result.stderr.strip().splitlines()
        # ffprobe prefixes lines with the file name; the last line is the useful one.
        detail = message[-1] if message else f"exit code {result.code}"
        path = argv[-1] if what == "ffprobe" else argv[argv.index("-i") + 1]
        detail = detail.replace(f"{path}: ", "")
        raise ProbeError(f"not a readable video ({what} says: {detail})")
    return result.stdout


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
