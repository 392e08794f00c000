"""The daemon's bookkeeping of the cluster's scratch (dlcwatch.transport.scratch_sync), against a real
sshd on 127.0.0.1 standing in for the login node: quota, release, and a cluster that goes away."""

import hashlib
import time

from dlcwatch.transport.job_files import StagedFiles
from dlcwatch.transport.scratch import ClusterScratch
from dlcwatch.transport.scratch_sync import ClusterStaging
from dlcwatch.states import VideoState as S
from dlcwatch.store import Store


def staging_with(host, tmp_path, quota_gb: float):
    store = Store(tmp_path / "state.db")
    scratch = ClusterScratch(host, str(tmp_path / "scratch"), tmp_path / "jobs")
    return ClusterStaging(store, StagedFiles(scratch), quota_gb), store


def staged_in_the_end(staging, videos, now, timeout=60.0) -> bool:
    """Call stage() as the daemon's loop does, until the batch is in scratch; return True then."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if staging.stage(videos, now):
            return True
        time.sleep(0.05)
    return False


def queued(store, path, content: bytes):
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(content)
    video = store.add_video(str(path), str(path.parent), path.name, size=len(content), mtime_ns=1)
    store.set_video_state(video.id, S.QUEUED, "probed", sha256=hashlib.sha256(content).hexdigest(), frames=1)
    return store.video(video.id)


def test_the_quota_holds_videos_back_until_a_copy_is_released(ssh_host, tmp_path):
    staging, store = staging_with(ssh_host, tmp_path, quota_gb=1500 / 1e9)  # room for one 1000-byte video
    first = queued(store, tmp_path / "videos" / "a b.mp4", b"a" * 1000)
    second = queued(store, tmp_path / "videos" / "c.mp4", b"c" * 1000)
    now = time.time()
    assert staging.stage([first], now) is False  # the copy runs outside the loop: not there yet
    assert staging.stage([second], now) is False  # and the copy under way counts against the quota
    assert store.video(second.id).staged_path is None
    assert staged_in_the_end(staging, [first], now)
    first = store.video(first.id)
    assert first.staged_path.endswith(f"/scratch/videos/video{first.id}.mp4")
    assert open(first.staged_path, "rb").read() == b"a" * 1000
    assert staging.stage([second], now) is False  # no room: held back, nothing recorded against it
    assert store.video(second.id).state is S.QUEUED and store.video(second.id).not_before is None
    staging.release(now)  # the first still waits for its job: kept
    assert store.video(first.id).staged_path

    store.set_video_state(first.id, S.SUBMITTED, "in a job", now=now)
    store.set_video_state(first.id, S.ANALYZED, "analyzed", now=now)
    staging.release(now)
    assert store.video(first.id).staged_path is None and not (tmp_path / "scratch" / "videos" / "video1.mp4").exists()
    assert staged_in_the_end(staging, [store.video(second.id)], now)


def test_a_video_larger_than_the_whole_quota_fails_with_what_to_change(ssh_host, tmp_path):
    staging, store = staging_with(ssh_host, tmp_path, quota_gb=500 / 1e9)
    video = queued(store, tmp_path / "videos" / "big.mp4", b"b" * 1000)
    assert staging.stage([video], time.time()) is False
    video = store.video(video.id)
    assert video.state is S.FAILED and "scratch_quota_gb" in video.reason and video.staged_path is None


def test_a_cluster_that_went_away_sets_a_condition_and_changes_nothing(ssh_server, ssh_host, tmp_path):
    staging, store = staging_with(ssh_host, tmp_path, quota_gb=0)
    video = queued(store, tmp_path / "videos" / "v.mp4", b"v" * 100)
    job = store.create_job("slurm", [video.id])
    store.update_job(job.id, result_path=str(tmp_path / "jobs" / f"job{job.id}" / "result.json"),
                     log_path=str(tmp_path / "jobs" / f"job{job.id}" / "worker.log"))
    ssh_host.close()
    ssh_server.stop()
    now = time.time()
    assert staging.pull([store.job(job.id)], now) is False
    [condition] = store.conditions()
    assert condition["name"] == "scratch" and "cannot copy results back" in condition["message"]
    assert store.video(video.id).state is S.SUBMITTED
    ssh_server.start()
    assert staging.pull([store.job(job.id)], now + 1) is True  # nothing there yet is no failure
    assert store.conditions() == []


def test_a_copy_that_does_not_verify_sets_the_video_aside_and_says_why(ssh_host, tmp_path):
    staging, store = staging_with(ssh_host, tmp_path, quota_gb=0)
    video = queued(store, tmp_path / "videos" / "changed.mp4", b"x" * 500)
    (tmp_path / "videos" / "changed.mp4").write_bytes(b"y" * 500)  # rewritten after intake hashed it
    now = time.time()
    assert staging.stage([video], now) is False
    deadline = time.monotonic() + 60
    while store.video(video.id).not_before is None and time.monotonic() < deadline:
        staging.stage([video], now)
        time.sleep(0.05)
    video = store.video(video.id)
    assert video.not_before == now + 300 and video.staged_path is None and video.state is S.QUEUED
    [condition] = store.conditions()
    assert condition["name"] == "scratch" and "changed since it was found" in condition["message"]
    assert staging.stage([video], now) is False and not staging.copies.in_progress()  # not sent again at once
