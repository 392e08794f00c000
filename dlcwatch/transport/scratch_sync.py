"""The daemon's side of a cluster with its own scratch: what is copied there, when, and what the
database records of it (videos.staged_path). On a shared file system every step is a no-op.

Each step that reaches the cluster records a `scratch` condition while it fails (shown by
`dlcwatch status`, alerted if it lasts) and clears it once a copy works again; nothing changes
state because of a failed copy, so nothing is lost while the cluster is away.
"""

from __future__ import annotations

import logging
import os

from dlcwatch.reads import Read, ReadPool
from dlcwatch.states import VideoState
from dlcwatch.store import Job, Store, Video

log = logging.getLogger("dlcwatch.transport.scratch_sync")

S = VideoState
STAGE_RETRY_S = 300.0   # a video whose copy to the cluster failed waits this long before the next try
WAITING = (S.QUEUED, S.SUBMITTED, S.RUNNING)  # a video in these states still needs its scratch copy


class ClusterStaging:
    """Given the store, how job files reach the cluster (dlcwatch.transport.job_files) and the scratch
    quota, keep scratch in step. Videos are copied there outside the main loop (a 20-GB video takes
    minutes), at most `per_filesystem` at once per local file system, given up after `stall_s`
    without progress; the loop only starts copies and records how they ended."""

    def __init__(self, store: Store, files, quota_gb: float, *, per_filesystem: int = 2, stall_s: float = 300.0,
                 quota_setting: str = "executor.slurm.scratch_quota_gb"):
        self.store = store
        self.files = files
        self.quota_bytes = quota_gb * 1e9
        self.quota_setting = quota_setting  # named in what a person reads
        self.copies = ReadPool(self._copy, per_filesystem=per_filesystem, stall_s=stall_s)
        self._copying: dict[int, Video] = {}

    def model_ready(self, model_config: str, behavior_model: str, now: float) -> bool:
        """Mirror the models into scratch (once per run); False while that fails."""
        try:
            self.files.model_config(model_config)
            self.files.behavior_model(behavior_model)
        except OSError as error:
            self._problem(f"cannot copy the model to the cluster's scratch: {error.strerror or error}", now)
            return False
        return True

    def stage(self, videos: list[Video], now: float) -> bool:
        """Start copying a batch's videos into scratch, within the quota; return True once all of them
        are there (always, on a shared file system). Their scratch paths are recorded as copies end."""
        if not self.files.staged:
            return True
        self.collect(now)
        used = sum(staged.size or 0 for staged in self.store.staged_videos())
        used += sum(video.size or 0 for video in self._copying.values())
        ready = True
        for video in videos:
            video = self.store.video(video.id)
            if video.staged_path:
                continue
            ready = False
            if video.id in self._copying or (video.not_before and video.not_before > now):
                continue  # being copied, or its copy just failed: set aside for a while
            if self.quota_bytes and used + (video.size or 0) > self.quota_bytes:
                if not used:  # it would not fit even alone
                    self.store.set_video_state(video.id, S.FAILED, f"{(video.size or 0) / 1e9:.1f} GB is more "
                                               f"than {self.quota_setting} allows; raise it, then run "
                                               "`dlcwatch retry`", now=now)
                return False
            if not os.path.exists(video.path):
                self.store.set_video_state(video.id, S.MISSING, "the file disappeared before it was copied to "
                                           "the cluster", now=now)
                return False
            self._copying[video.id] = video
            self.copies.submit(video.id, video.path, video.size or 0)
            used += video.size or 0
        return ready

    def collect(self, now: float) -> None:
        """Record the copies to scratch that ended since the last call."""
        for copy in self.copies.collect():
            video = self._copying.pop(copy.key)
            if copy.error is None:
                self.store.update_video(video.id, staged_path=copy.result, now=now)
                self.store.add_event(f"copied to the cluster's scratch as {copy.result}", video_id=video.id, now=now)
                self.store.clear_condition("scratch", now=now)
                continue
            error = copy.error
            why = (error.strerror if isinstance(error, OSError) else None) or str(error)
            self._problem(f"cannot copy videos to the cluster's scratch: {why}", now)
            # Set aside for a while, so one video that keeps failing (changed since intake, say)
            # does not hold back the others.
            self.store.update_video(video.id, not_before=now + STAGE_RETRY_S, now=now)
            self.store.add_event(f"not copied to the cluster's scratch ({why}); trying again in "
                                 f"{STAGE_RETRY_S:.0f} s", video_id=video.id, now=now)

    def close(self) -> None:
        """Give up the copies in flight at once (an interrupted rsync resumes next time)."""
        self.copies.stop()

    def _copy(self, copy: Read) -> str:
        copy.advance("copying to the cluster")
        return self.files.stage(self._copying[copy.key], progress=lambda done: copy.advance(done_bytes=done))

    def pull(self, jobs: list[Job], now: float) -> bool:
        """Bring the jobs' folders (and their arrays' logs) back from scratch; False while that fails:
        results are read next time."""
        folders = {job.folder for job in jobs} | {job.log_folder for job in jobs if job.log_path}
        try:
            self.files.pull(sorted(folders))
        except OSError as error:
            self._problem(f"cannot copy results back from the cluster's scratch: {error.strerror or error}", now)
            return False
        self.store.clear_condition("scratch", now=now)
        return True

    def forget(self, ended: list[Job]) -> None:
        """Delete ended jobs' folders in scratch: their results are here now."""
        try:
            self.files.remove_jobs(sorted({job.folder for job in ended}))
        except OSError as error:
            log.warning("could not delete ended jobs' folders in the cluster's scratch (%s); they are small, and "
                        "deleted with the next ones", error)

    def release(self, now: float) -> None:
        """Delete scratch copies of videos no job needs any more (analyzed, failed, quarantined…)."""
        done = [video for video in self.store.staged_videos() if video.state not in WAITING]
        if not done:
            return
        try:
            self.files.release([video.staged_path for video in done])
        except (OSError, ValueError) as error:
            log.warning("could not delete %d video copies in the cluster's scratch: %s", len(done), error)
            return
        for video in done:
            self.store.update_video(video.id, staged_path=None, now=now)
            self.store.add_event("copy in the cluster's scratch deleted", video_id=video.id, now=now)

    def _problem(self, message: str, now: float) -> None:
        if self.store.set_condition("scratch", message, now=now):
            log.warning("%s", message)
