"""What `dlcwatch status` and `dlcwatch show` print: read-only views of the store."""

from __future__ import annotations

import time
from pathlib import Path

from dlcwatch.states import VideoState
from dlcwatch.store import Store, Video

STATE_ORDER = [state.value for state in VideoState]
# States a person should look at, shown first in the recent list.
ATTENTION = {VideoState.FAILED, VideoState.QUARANTINED, VideoState.MISSING}


def status_data(store: Store, *, limit: int = 15, now: float | None = None) -> dict:
    """Given the store, return counts per state, active jobs and the most recent videos."""
    now = time.time() if now is None else now
    counts = store.counts()
    recent = store.videos(order="recent", limit=limit)
    return {
        "counts": {state: counts.get(state, 0) for state in STATE_ORDER},
        "total": sum(counts.values()),
        "active_jobs": [{"id": job.id, "executor": job.executor, "executor_job_id": job.executor_job_id,
                         "state": job.state.value, "videos": len(store.job_video_ids(job.id)),
                         "elapsed_s": round(now - (job.started or job.created), 1)}
                        for job in store.active_jobs()],
        "videos": [_video_summary(video, now) for video in recent],
    }


def _video_summary(video: Video, now: float) -> dict:
    return {"id": video.id, "state": video.state.value, "path": video.path, "reason": video.reason,
            "frames": video.frames, "attempts": video.attempts, "job_id": video.job_id,
            "output_dir": video.output_dir, "updated_ago_s": round(now - video.updated, 1)}


def format_status(data: dict) -> str:
    counts = {state: n for state, n in data["counts"].items() if n}
    lines = [f"{data['total']} video(s): " + (", ".join(f"{n} {state}" for state, n in counts.items()) or "none yet")]
    attention = sum(data["counts"].get(state.value, 0) for state in ATTENTION)
    if attention:
        lines.append(f"{attention} need a person: see `dlcwatch show ID`, fix, then `dlcwatch retry`")
    if data["active_jobs"]:
        lines.append("")
        lines.append("jobs in flight:")
        for job in data["active_jobs"]:
            lines.append(f"  job {job['id']:<5} {job['state']:<9} {job['executor']} {job['executor_job_id'] or '-'}"
                         f"  {job['videos']} video(s)  {_duration(job['elapsed_s'])}")
    if data["videos"]:
        lines.append("")
        lines.append(f"{'id':>5}  {'state':<11}  {'when':>8}  video")
        for video in data["videos"]:
            lines.append(f"{video['id']:>5}  {video['state']:<11}  {_duration(video['updated_ago_s']) + ' ago':>8}"
                         f"  {Path(video['path']).name}")
            if video["state"] in {state.value for state in ATTENTION} or video["state"] == "duplicate":
                lines.append(f"{'':>5}  {'':<11}  {'':>8}  ↳ {video['reason']}")
    return "\n".join(lines)


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


def _duration(seconds: float) -> str:
    seconds = max(0, int(seconds))
    if seconds < 60:
        return f"{seconds}s"
    if seconds < 3600:
        return f"{seconds // 60}m"
    if seconds < 86400:
        return f"{seconds // 3600}h{seconds % 3600 // 60:02d}m"
    return f"{seconds // 86400}d{seconds % 86400 // 3600:02d}h"
