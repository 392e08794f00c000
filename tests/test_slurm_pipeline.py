"""The daemon with `executor: slurm` against a real single-node SLURM (tests/slurm_cluster.sh)."""

import time
from pathlib import Path

import pytest

from conftest import cli, needs_dlc, write_config
from dlcwatch.config import load_config
from dlcwatch.daemon import Daemon
from dlcwatch.states import VideoState as S
from dlcwatch.demo.synthetic import write_video
from slurm_fixtures import sleeping_python, wait_for

pytestmark = needs_dlc
pytest_plugins = ["slurm_fixtures"]


def slurm_config(tmp_path, model, **slurm):
    settings = {"cpus": 1, "gpus": 1, "mem_gb": 0.5, "time_limit_min": 10, "poll_interval_s": 1.0,
                "python": str(Path(__import__("sys").executable)), **slurm}
    return write_config(tmp_path, model, watch={"settle_s": 0.2},
                        executor={"kind": "slurm", "videos_per_job": 2, "slurm": settings})


def tick_until(daemon, condition, timeout, what, now=time.time):
    def step():
        daemon.tick(now())
        return condition()
    return wait_for(step, timeout, what, interval=0.3)


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
    for index in range(3):
        write_video(tmp_path / "videos" / f"cage {index}.mp4", frames=30, phase=index)
    first = Daemon(load_config(config_path), watch_events=False)
    first.start()
    tick_until(first, lambda: len(first.store.active_jobs()) == 2, 60, "two SLURM jobs")
    jobs = first.store.active_jobs()
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
        tick_until(second, second.idle, 240, "every video delivered")
        videos = second.store.videos()
        assert [video.state for video in videos] == [S.DONE] * 3
        for video in videos:
            assert [e.new_state for e in second.store.events(video_id=video.id)].count("done") == 1
            assert (Path(video.output_dir) / "manifest.json").exists()
            assert video.attempts == 1  # nothing ran twice
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
        def messages():
            return [event.message for event in daemon.store.events(video_id=1)]

        tick_until(daemon, lambda: any("timeout" in m for m in messages()), 200, "a TIMEOUT")
        retry = next(m for m in messages() if "timeout" in m)
        assert "trying again" in retry and "a 2 min time limit" in retry
        tick_until(daemon, lambda: len(daemon.store.jobs()) == 2 and daemon.store.active_jobs(), 60, "the retry")
        [job] = daemon.store.active_jobs()
        assert job.resources["time_min"] == 2
        assert "--time=00:02:00" in (Path(job.spec_path).parent / "job.sbatch").read_text()

        completed = cli("cancel", "slow.mp4", "--config", str(config_path),
                        env={"SLURM_CONF": slurm_env.env["SLURM_CONF"]})
        assert completed.returncode == 0, completed.stderr
        tick_until(daemon, lambda: daemon.store.video(1).state is S.FAILED, 60, "the cancel")
        assert "cancelled" in daemon.store.video(1).reason
        for _ in range(5):  # a person's cancel is left so
            daemon.tick(time.time())
        assert daemon.store.video(1).state is S.FAILED and not daemon.store.active_jobs()
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
