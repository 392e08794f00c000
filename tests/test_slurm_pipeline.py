"""The daemon with `executor: slurm` against a real single-node SLURM (tests/slurm_cluster.sh)."""

import time
from pathlib import Path

import pytest

from conftest import needs_dlc
from dlcwatch.config import load_config
from dlcwatch.daemon import Daemon
from dlcwatch.states import VideoState as S
from dlcwatch.demo.synthetic import write_video
from cluster_fixtures import sleeping_python, tick_until, wait_for, write_cluster_config
from cluster_scenarios import (
    every_video_delivered_once,
    three_videos_in_two_jobs,
    time_limit_kill_retried_then_cancel_left,
)

pytestmark = needs_dlc
pytest_plugins = ["slurm_fixtures"]


def slurm_config(tmp_path, model, **slurm):
    return write_cluster_config(tmp_path, model, "slurm", **slurm)


@pytest.fixture
def slurm_env(slurm_cluster, monkeypatch):
    monkeypatch.setenv("SLURM_CONF", slurm_cluster.env["SLURM_CONF"])
    return slurm_cluster


@pytest.fixture(params=["without accounting", "with accounting"])
def either_cluster(request, monkeypatch):
    """Each cluster in turn: without accounting squeue and the result files decide; with it (and
    MinJobAge 2 s), sacct is what still knows the ended tasks."""
    cluster = request.getfixturevalue("slurm_cluster" if request.param == "without accounting"
                                      else "slurm_accounting_cluster")
    monkeypatch.setenv("SLURM_CONF", cluster.env["SLURM_CONF"])
    return cluster


def test_videos_go_through_slurm_and_a_restarted_daemon_delivers_each_once(either_cluster, tiny_model, tmp_path):
    gpus = 1 if either_cluster.settings.get("FAKE_GPUS", "0") != "0" else 0
    config_path = slurm_config(tmp_path, tiny_model, gpus=gpus)
    first, jobs = three_videos_in_two_jobs(tmp_path, config_path, "SLURM")
    # Both jobs went to SLURM as the two tasks of one array (one sbatch call).
    [array_id] = {job.executor_job_id.split("_")[0] for job in jobs}
    assert sorted(job.executor_job_id for job in jobs) == [f"{array_id}_{task}" for task in (0, 1)]
    assert all(job.executor == "slurm" for job in jobs)
    script = (Path(jobs[0].spec_path).parent / "job.sbatch").read_text()
    assert ("--gres=gpu:1" in script) == bool(gpus)
    assert "-m dlcwatch.worker " in script and "#SBATCH --array=0-1\n" in script
    first.close()  # the daemon dies; SLURM keeps the jobs
    if either_cluster.settings.get("WITH_ACCOUNTING"):
        # Down long enough for the tasks to end and squeue to forget them: only sacct knows them now.
        wait_for(lambda: not either_cluster.command("squeue", "--noheader", "--array", f"--jobs={array_id}").strip(),
                 180, "squeue to forget the ended tasks", interval=1.0)

    second = Daemon(load_config(config_path), watch_events=False)
    second.start()
    try:
        every_video_delivered_once(second, 3, 240)
        if either_cluster.settings.get("WITH_ACCOUNTING"):
            ended = [e.message for e in second.store.events() if e.job_id and e.new_state == "finished"]
            # sacct knew how they ended, not just the result files.
            assert len(ended) == 2 and all("SLURM no longer lists" not in message for message in ended), ended
    finally:
        second.close()


def test_a_timeout_is_retried_with_more_time_and_a_cancel_is_left_cancelled(slurm_env, tiny_model, tmp_path):
    # SLURM's real time limit (one minute, checked every 30 s) ends the first job with TIMEOUT.
    config_path = slurm_config(tmp_path, tiny_model, time_limit_min=1, max_time_limit_min=2, gpus=0,
                               python=str(sleeping_python(tmp_path)))
    write_video(tmp_path / "videos" / "slow.mp4", frames=20)
    daemon = Daemon(load_config(config_path), watch_events=False)
    daemon.start()
    try:
        time_limit_kill_retried_then_cancel_left(daemon, config_path, {"SLURM_CONF": slurm_env.env["SLURM_CONF"]},
                                                 script_name="job.sbatch", retry_time_line="--time=00:02:00",
                                                 kill_timeout=200)
    finally:
        daemon.close()


def test_the_controller_stopped_mid_run_the_daemon_waits_and_loses_nothing(slurm_env, tiny_model, tmp_path):
    config_path = slurm_config(tmp_path, tiny_model, unreachable_backoff_s=1.0, command_timeout_s=5.0)
    for index in range(2):
        write_video(tmp_path / "videos" / f"m{index}.mp4", frames=30, phase=index)
    daemon = Daemon(load_config(config_path), watch_events=False)
    daemon.start()
    try:
        tick_until(daemon, lambda: daemon.store.active_jobs(), 60, "a SLURM job")
        slurm_env.control("ctld-stop")
        try:
            tick_until(daemon, lambda: any(c["name"] == "executor" for c in daemon.store.conditions()), 60,
                       "the outage to be noticed")
            before = {video.id: video.state for video in daemon.store.videos()}
            for _ in range(10):  # the controller stays away: nothing may change state meanwhile
                daemon.tick(time.time())
                time.sleep(0.3)
            assert {video.id: video.state for video in daemon.store.videos()} == before
            assert "does not answer" in daemon.store.conditions()[0]["message"]
        finally:
            slurm_env.control("ctld-start")
        tick_until(daemon, daemon.idle, 240, "every video delivered after the outage")
        assert [video.state for video in daemon.store.videos()] == [S.DONE, S.DONE]
        assert daemon.store.conditions() == []
        assert all(video.attempts == 1 for video in daemon.store.videos())
    finally:
        daemon.close()
