"""The daemon's bookkeeping of the cluster's scratch (dlcwatch.cluster_staging), against a real
sshd on 127.0.0.1 standing in for the login node: quota, release, and a cluster that goes away."""

import hashlib
import time

from dlcwatch.cluster_files import StagedFiles
from dlcwatch.cluster_scratch import ClusterScratch
from dlcwatch.cluster_staging import ClusterStaging
from dlcwatch.states import VideoState as S
from dlcwatch.store import Store


def staging_with(host, tmp_path, quota_gb: float):
    store = Store(tmp_path / "state.db")
    scratch = ClusterScratch(host, str(tmp_path / "scratch"), tmp_path / "jobs")
    pings = []
    return ClusterStaging(store, StagedFiles(scratch), quota_gb, alive=lambda: pings.append(1)), store, pings


def queued(store, path, content: bytes):
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(content)
    video = store.add_video(str(path), str(path.parent), path.name, size=len(content), mtime_ns=1)
    store.set_video_state(video.id, S.QUEUED, "probed", sha256=hashlib.sha256(content).hexdigest(), frames=1)
    return store.video(video.id)


def test_the_quota_holds_videos_back_until_a_copy_is_released(ssh_host, tmp_path):
    staging, store, pings = staging_with(ssh_host, tmp_path, quota_gb=1500 / 1e9)  # room for one 1000-byte video
    first = queued(store, tmp_path / "videos" / "a b.mp4", b"a" * 1000)
    second = queued(store, tmp_path / "videos" / "c.mp4", b"c" * 1000)
    now = time.time()
    assert staging.stage([first], now) is True and pings == [1]
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
    assert staging.stage([store.video(second.id)], now) is True


def test_a_video_larger_than_the_whole_quota_fails_with_what_to_change(ssh_host, tmp_path):
    staging, store, _ = staging_with(ssh_host, tmp_path, quota_gb=500 / 1e9)
    video = queued(store, tmp_path / "videos" / "big.mp4", b"b" * 1000)
    assert staging.stage([video], time.time()) is False
    video = store.video(video.id)
    assert video.state is S.FAILED and "scratch_quota_gb" in video.reason and video.staged_path is None


def test_a_cluster_that_went_away_sets_a_condition_and_changes_nothing(ssh_server, ssh_host, tmp_path):
    staging, store, _ = staging_with(ssh_host, tmp_path, quota_gb=0)
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
