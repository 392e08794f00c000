"""Videos that arrive together go together: while more are still being checked (read outside the
loop, one after the other), queued videos wait for them, at most executor.gather_s."""

from dlcwatch.daemon import Daemon
from dlcwatch.states import VideoState as S


def add(store, tmp_path, name, state):
    video = store.add_video(str(tmp_path / "videos" / name), str(tmp_path / "videos"), name, size=1, mtime_ns=1)
    if state is S.QUEUED:
        store.set_video_state(video.id, S.QUEUED, "probed", sha256=name * 8, frames=10, fps=30.0)
    return store.video(video.id)


def test_queued_videos_wait_for_those_still_being_checked_then_go_in_one_job(lab, tmp_path):
    lab.executor["gather_s"] = 60.0
    daemon = Daemon(lab, watch_events=False)
    try:
        first = add(daemon.store, tmp_path, "a.mp4", S.QUEUED)
        second = add(daemon.store, tmp_path, "b.mp4", S.SETTLING)
        now = first.updated + 1
        daemon.submit(now)
        assert daemon.store.active_jobs() == [] and daemon.store.video(first.id).state is S.QUEUED
        daemon.store.set_video_state(second.id, S.QUEUED, "probed", sha256="b" * 64, frames=10, fps=30.0)
        daemon.submit(now + 1)  # nothing settles any more: both go, together
        [job] = daemon.store.active_jobs()
        assert sorted(daemon.store.job_video_ids(job.id)) == [first.id, second.id]
    finally:
        for job in daemon.store.active_jobs():
            daemon.executor.cancel(job)
        daemon.close()


def test_the_wait_ends_after_gather_s_however_many_are_still_being_checked(lab, tmp_path):
    lab.executor["gather_s"] = 60.0
    daemon = Daemon(lab, watch_events=False)
    try:
        first = add(daemon.store, tmp_path, "a.mp4", S.QUEUED)
        add(daemon.store, tmp_path, "b.mp4", S.SETTLING)  # a 40-GB video on a slow share, say
        daemon.submit(first.updated + 59)
        assert daemon.store.active_jobs() == []
        daemon.submit(first.updated + 61)
        [job] = daemon.store.active_jobs()
        assert daemon.store.job_video_ids(job.id) == [first.id]
    finally:
        for job in daemon.store.active_jobs():
            daemon.executor.cancel(job)
        daemon.close()
