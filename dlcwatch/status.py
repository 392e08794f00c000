"""What `dlcwatch status` and `dlcwatch show` print: read-only views of the store.

status_data() gathers plain data (also what `--json` prints); render_status() lays it out with
rich for a person: the first line alone answers "is everything fine?".
"""

from __future__ import annotations

import dataclasses
import time
from pathlib import Path

from rich.console import Group
from rich.table import Table
from rich.text import Text

from dlcwatch.reads import format_gb
from dlcwatch.states import VIDEO_NEEDS_A_PERSON, VIDEO_PENDING, VideoState
from dlcwatch.store import Store, Video

STATE_ORDER = [state.value for state in VideoState]
PENDING = [state.value for state in VideoState if state in VIDEO_PENDING]
STATE_STYLE = {"done": "green", "failed": "bold red", "quarantined": "red", "missing": "yellow",
               "duplicate": "dim", "running": "cyan", "submitted": "cyan", "analyzed": "cyan",
               "delivering": "cyan"}
HOUR, DAY = 3600.0, 86400.0


def status_data(store: Store, *, limit: int = 15, now: float | None = None) -> dict:
    """Given the store, return counts, jobs in flight, throughput, an ETA and the recent videos."""
    now = time.time() if now is None else now
    counts = store.counts()
    done_hour = store.count_events(VideoState.DONE, since=now - HOUR)
    done_day = store.count_events(VideoState.DONE, since=now - DAY)
    pending = sum(counts.get(state, 0) for state in PENDING)
    # The last hour's pace when there was one, else the day's: a fair guess either way.
    rate_per_hour = done_hour or done_day / 24
    eta_s = round(pending / rate_per_hour * HOUR) if pending and rate_per_hour else None
    return {
        "counts": {state: counts.get(state, 0) for state in STATE_ORDER},
        "total": sum(counts.values()),
        "attention": sum(counts.get(state.value, 0) for state in VIDEO_NEEDS_A_PERSON),
        "problems": [{"name": c["name"], "message": c["message"], "for_s": round(now - c["since"], 1)}
                     for c in store.conditions()],
        "reads": [{"video_id": read["video_id"], "path": _video_path(store, read), "step": read["step"],
                   "done_bytes": read["done_bytes"], "total_bytes": read["total_bytes"],
                   "for_s": round(now - read["started"], 1)} for read in store.reads()],
        "throughput": {"done_last_hour": done_hour, "done_last_day": done_day},
        "pending": pending,
        "eta_s": eta_s,
        "active_jobs": [{"id": job.id, "executor": job.executor, "executor_job_id": job.executor_job_id,
                         "state": job.state.value, "videos": [Path(store.video(i).path).name
                                                               for i in store.job_video_ids(job.id)],
                         "elapsed_s": round(now - (job.started or job.created), 1)}
                        for job in store.active_jobs()],
        "videos": [_video_summary(video, now) for video in store.videos(order="recent", limit=limit)],
    }


def _video_summary(video: Video, now: float) -> dict:
    return {"id": video.id, "state": video.state.value, "path": video.path, "reason": video.reason,
            "frames": video.frames, "attempts": video.attempts, "job_id": video.job_id,
            "output_dir": video.output_dir, "updated_ago_s": round(now - video.updated, 1)}


def headline(data: dict) -> str:
    """The one line that says how things stand."""
    counts = {state: n for state, n in data["counts"].items() if n}
    text = f"{data['total']} video(s): " + (", ".join(f"{n} {state}" for state, n in counts.items()) or "none yet")
    if data["attention"]:
        text += f" — {data['attention']} need a person"
    return text


def render_status(data: dict) -> Group:
    """Lay the status out for a terminal."""
    parts: list = [Text(headline(data), style="bold red" if data["attention"] else "bold")]
    for problem in data["problems"]:
        parts.append(Text(f"problem for {format_duration(problem['for_s'])}: {problem['message']}", style="bold yellow"))
    pace = data["throughput"]
    line = f"done in the last hour: {pace['done_last_hour']}, last day: {pace['done_last_day']}"
    if data["pending"]:
        line += f"; {data['pending']} pending" + (f", done in about {format_duration(data['eta_s'])}"
                                                  if data["eta_s"] else "")
    parts.append(Text(line))
    for read in data.get("reads", []):
        parts.append(Text(f"reading for {format_duration(read['for_s'])}: {describe_read(read)}"))
    if data["attention"]:
        parts.append(Text("see `dlcwatch show ID`, fix the cause, then `dlcwatch retry ID`", style="dim"))
    if data["active_jobs"]:
        jobs = Table(title="jobs in flight", title_justify="left", show_edge=False)
        for column in ("job", "state", "executor id", "for", "videos"):
            jobs.add_column(column)
        for job in data["active_jobs"]:
            names = ", ".join(job["videos"][:3]) + (f" +{len(job['videos']) - 3}" if len(job["videos"]) > 3 else "")
            jobs.add_row(str(job["id"]), job["state"], job["executor_job_id"] or "-", format_duration(job["elapsed_s"]),
                         names)
        parts += [Text(""), jobs]
    if data["videos"]:
        videos = Table(title="recent videos", title_justify="left", show_edge=False)
        for column in ("id", "state", "when", "video", "why"):
            videos.add_column(column, overflow="fold")
        for video in data["videos"]:
            why = video["reason"] if video["state"] not in ("done",) else ""
            videos.add_row(str(video["id"]), Text(video["state"], style=STATE_STYLE.get(video["state"], "")),
                           format_duration(video["updated_ago_s"]) + " ago", Path(video["path"]).name, why)
        parts += [Text(""), videos]
    return Group(*parts)


def show_data(store: Store, video: Video, *, now: float | None = None) -> dict:
    """Given a video, return its details and full history as plain data (what `show --json` prints)."""
    now = time.time() if now is None else now
    details = {field.name: getattr(video, field.name) for field in dataclasses.fields(video)}
    details.update(state=video.state.value, updated_ago_s=round(now - video.updated, 1))
    details["history"] = [{"at": event.at, "old_state": event.old_state, "new_state": event.new_state,
                           "job_id": event.job_id, "message": event.message}
                          for event in store.events(video_id=video.id)]
    return details


def _video_path(store: Store, read: dict) -> str:
    """Given a read in flight, return its video's path: what people know it by, even while its
    results (read from the job's folder) are being delivered."""
    try:
        return store.video(read["video_id"]).path
    except KeyError:
        return read["path"]


def describe_read(read: dict) -> str:
    """Given a read in flight, return e.g. 'hashing big.avi, 8.1 of 20.0 GB'."""
    name = Path(read["path"]).name
    if read["step"].startswith("waiting"):
        return f"{name}: {read['step']}"
    return f"{read['step']} {name}, {format_gb(read['done_bytes'])} of {format_gb(read['total_bytes'])}"


def format_show(store: Store, video: Video) -> str:
    lines = [f"video {video.id}: {video.path}", f"  state:    {video.state.value} ({video.reason})"]
    if video.frames:
        lines.append(f"  video:    {video.frames} frames at {video.fps:.3g} fps, {video.codec} "
                     f"{video.width}x{video.height}, {video.size} bytes")
    if video.sha256:
        lines.append(f"  sha256:   {video.sha256}")
    if video.duplicate_of:
        lines.append(f"  duplicate of video {video.duplicate_of}")
    lines.append(f"  attempts: {video.attempts}" + (f" (last job {video.job_id})" if video.job_id else ""))
    if video.output_dir:
        lines.append(f"  results:  {video.output_dir}")
    lines.append("")
    lines.append("history:")
    for event in store.events(video_id=video.id):
        change = f"{event.old_state or '·'} → {event.new_state}" if event.new_state else "note"
        lines.append(f"  {time.strftime('%Y-%m-%d %H:%M:%S', time.localtime(event.at))}  {change:<24}  {event.message}")
    return "\n".join(lines)


def format_duration(seconds: float) -> str:
    """Given seconds, return a short human duration: 45s, 12m, 3h05m, 2d04h."""
    seconds = max(0, int(seconds))
    if seconds < 60:
        return f"{seconds}s"
    if seconds < 3600:
        return f"{seconds // 60}m"
    if seconds < 86400:
        return f"{seconds // 3600}h{seconds % 3600 // 60:02d}m"
    return f"{seconds // 86400}d{seconds % 86400 // 3600:02d}h"
