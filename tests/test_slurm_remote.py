"""A cluster whose login node is another machine: SLURM commands over ssh, videos and job files
staged into the cluster's scratch with rsync. The "login node" is a real sshd on 127.0.0.1 in
front of the real test SLURM; its scratch is a folder this process never hands to a job itself."""

import hashlib
import os
import sys
import time
from pathlib import Path

import pytest

import sshd
from conftest import needs_dlc, write_config
from dlcwatch.config import load_config
from dlcwatch.daemon import Daemon
from dlcwatch.jobs.spec import read_json
from dlcwatch.states import VideoState as S
from dlcwatch.demo.synthetic import write_video
from cluster_scenarios import staged_within_the_quota_and_delivered
from cluster_fixtures import placeholder_model, reporting_python, sleeping_python, wait_for

pytest_plugins = ["slurm_fixtures"]


@pytest.fixture
def login_node(slurm_cluster, tmp_path):
    """An sshd whose sessions find the test cluster (as a login node's shell would)."""
    with sshd.serving(tmp_path / "sshd", extra_config=[f"SetEnv SLURM_CONF={slurm_cluster.env['SLURM_CONF']}"]) as server:
        yield server


def remote_config(tmp_path, model, server, **slurm):
    settings = {"cpus": 1, "gpus": 1, "mem_gb": 0.5, "time_limit_min": 10, "poll_interval_s": 1.0,
                "python": sys.executable, "host": f"{server.user}@127.0.0.1",
                "ssh": {"identity_file": str(server.client_key), "port": server.port},
                "scratch": str(tmp_path / "cluster scratch"), **slurm}
    return write_config(tmp_path, model, watch={"settle_s": 0.2},
                        executor={"kind": "slurm", "videos_per_job": 1, "slurm": settings})


@needs_dlc
def test_videos_are_staged_to_scratch_within_its_quota_analyzed_there_and_cleaned_up(login_node, tiny_model,
                                                                                    tmp_path, monkeypatch):
    # No SLURM_CONF here: a SLURM command run on this side could not find the cluster, so every
    # one that works went through the login node.
    monkeypatch.delenv("SLURM_CONF", raising=False)
    sizes = []
    for index in range(3):
        path = tmp_path / "videos" / f"cage {index} 'a'.mp4"
        write_video(path, frames=30, phase=index)
        sizes.append(path.stat().st_size)
    quota_gb = 1.5 * max(sizes) / 1e9  # room for one video at a time
    config = load_config(remote_config(tmp_path, tiny_model, login_node, scratch_quota_gb=quota_gb))
    scratch = tmp_path / "cluster scratch"
    daemon = Daemon(config, watch_events=False)
    daemon.start()
    try:
        staged_within_the_quota_and_delivered(daemon, 3, 300)
        videos = daemon.store.videos()
        # The job saw only scratch paths; the model came along, without the project's videos.
        spec = read_json(daemon.store.job(videos[0].job_id).spec_path)
        assert spec["videos"][0]["path"].startswith(f"{scratch}/videos/")
        assert spec["model"]["config"].startswith(f"{scratch}/model/")
        assert spec["result"].startswith(f"{scratch}/jobs/")
        assert Path(spec["model"]["config"]).exists()
        # Nothing left behind in scratch but the model: videos and ended jobs' folders are deleted.
        assert [p.name for p in (scratch / "videos").iterdir() if not p.name.startswith(".")] == []
        assert not list((scratch / "jobs").glob("job*"))
        assert not daemon.store.conditions()
    finally:
        daemon.close()


def test_an_unreachable_login_node_pauses_everything_and_loses_nothing(login_node, tmp_path, monkeypatch):
    monkeypatch.delenv("SLURM_CONF", raising=False)
    model = placeholder_model(tmp_path)
    (model.parent / "dlc-models-pytorch").mkdir()
    config = load_config(remote_config(tmp_path, model, login_node, unreachable_backoff_s=1.0))
    login_node.stop()  # before anything connected: no shared connection outlives it
    daemon = Daemon(config, watch_events=False)
    daemon.start()
    try:
        path = tmp_path / "videos" / "x.mp4"
        path.write_bytes(b"not looked at: nothing gets that far")
        video = daemon.store.add_video(str(path), str(path.parent), path.name, size=path.stat().st_size,
                                       mtime_ns=path.stat().st_mtime_ns)
        daemon.store.set_video_state(video.id, S.QUEUED, "probed", frames=10, fps=30.0, sha256="0" * 64)
        for _ in range(3):
            daemon.tick(time.time())
            time.sleep(0.3)
        assert daemon.store.video(video.id).state is S.QUEUED and daemon.store.jobs() == []
        problem = daemon.executor.unreachable
        assert "cannot reach" in problem and "127.0.0.1" in problem
        [condition] = daemon.store.conditions()
        assert condition["name"] == "executor" and "cannot reach" in condition["message"]
    finally:
        daemon.close()
    assert os.environ.get("SLURM_CONF") is None


def test_a_video_that_changed_since_intake_is_set_aside_and_the_others_go_on(login_node, tmp_path, monkeypatch):
    monkeypatch.delenv("SLURM_CONF", raising=False)
    model = placeholder_model(tmp_path)
    sleeper = sleeping_python(tmp_path)
    config = load_config(remote_config(tmp_path, model, login_node, gpus=0, python=str(sleeper)))
    daemon = Daemon(config, watch_events=False)
    daemon.start()
    try:
        # The changed one is longer, so it is packed (and copied) first.
        for name, content, frames in (("changed.mp4", b"new content", 20),
                                      ("fine.mp4", b"the bytes intake hashed", 10)):
            path = tmp_path / "videos" / name
            path.write_bytes(content)
            video = daemon.store.add_video(str(path), str(path.parent), name, size=path.stat().st_size,
                                           mtime_ns=path.stat().st_mtime_ns)
            daemon.store.set_video_state(video.id, S.QUEUED, "probed", frames=frames, fps=30.0,
                                         sha256=hashlib.sha256(b"the bytes intake hashed").hexdigest())
        now = time.time()
        # Copies run outside the loop: submit as the loop does until the changed one's copy ended.
        # It fails verification: set aside; nothing is submitted with it.
        changed, fine = daemon.store.videos()
        deadline = time.monotonic() + 120
        while daemon.store.video(changed.id).not_before is None and time.monotonic() < deadline:
            daemon.submit(now)
            time.sleep(0.1)
        changed = daemon.store.video(changed.id)
        assert changed.state is S.QUEUED and changed.not_before > now + 60 and changed.staged_path is None
        assert any("not copied to the cluster's scratch" in e.message for e in daemon.store.events(video_id=changed.id))
        assert any(e.message.startswith("problem: cannot copy videos to the cluster's scratch")
                   for e in daemon.store.events())
        assert not (tmp_path / "cluster scratch" / "videos" / f"video{changed.id}.mp4").exists()  # the bad copy was removed
        while daemon.store.video(fine.id).state is not S.SUBMITTED and time.monotonic() < deadline:
            daemon.submit(now + 1)  # the other one goes on
            time.sleep(0.1)
        fine = daemon.store.video(fine.id)
        assert fine.state is S.SUBMITTED and fine.staged_path.endswith(f"/videos/video{fine.id}.mp4")
        assert Path(fine.staged_path).read_bytes() == b"the bytes intake hashed"
        assert daemon.store.conditions() == []  # the copy that worked says scratch is fine again
    finally:
        for job in daemon.store.active_jobs():
            daemon.executor.cancel(job)
        daemon.close()


def test_a_shared_file_system_needs_only_the_commands_over_ssh(login_node, tmp_path, monkeypatch):
    monkeypatch.delenv("SLURM_CONF", raising=False)
    model = placeholder_model(tmp_path)
    worker = reporting_python(tmp_path)  # reports its one video analyzed, with the path it was given
    config = load_config(remote_config(tmp_path, model, login_node, gpus=0, python=str(worker), scratch=""))
    daemon = Daemon(config, watch_events=False)
    daemon.start()
    try:
        path = tmp_path / "videos" / "in place.mp4"
        path.write_bytes(b"x")
        video = daemon.store.add_video(str(path), str(path.parent), path.name, size=1,
                                       mtime_ns=path.stat().st_mtime_ns)
        daemon.store.set_video_state(video.id, S.QUEUED, "probed", frames=10, fps=30.0, sha256="0" * 64)
        daemon.submit(time.time())
        [job] = daemon.store.active_jobs()

        def analyzed():
            daemon.poll(time.time() + 2)
            return daemon.store.video(video.id).state is S.ANALYZED
        wait_for(analyzed, 60, "the job, submitted over ssh, to report its video", interval=1.1)
        result = read_json(job.result_path)  # written by the job itself, at our own path
        assert result["videos"][str(video.id)]["path"] == str(path)
        assert daemon.store.video(video.id).staged_path is None
        assert not (tmp_path / "cluster scratch").exists()
    finally:
        daemon.close()
