"""The daemon with `executor: sge` against a real single-node Son of Grid Engine (tests/sge_cluster.sh):
real workers with the tiny model in a job array and a restart mid-run, a time-limit kill retried with
more time, `dlcwatch cancel` of a running and of a pending job, 200 tasks polled with one qstat, and
the CPU fallback."""

import time
from pathlib import Path

import pytest

from conftest import cli, needs_dlc
from dlcwatch.config import load_config
from dlcwatch.daemon import Daemon
from dlcwatch.executors.sge.executor import SgeExecutor
from dlcwatch.states import JobState
from dlcwatch.states import VideoState as S
from dlcwatch.demo.synthetic import write_video
from sge_fixtures import importable_setup
from cluster_fixtures import (
    CountingRunner,
    placeholder_model,
    queue_videos,
    sleeping_python,
    tick_until,
    write_cluster_config,
)
from cluster_scenarios import (
    every_video_delivered_once,
    gpu_jobs_wait_and_the_next_goes_to_the_cpu_place,
    one_status_call_per_cycle,
    three_videos_in_two_jobs,
    time_limit_kill_retried_then_cancel_left,
)

pytest_plugins = ["sge_fixtures"]


def sge_config(tmp_path, model, videos_per_job=2, **sge):
    return write_cluster_config(tmp_path, model, "sge", videos_per_job, setup=[importable_setup()], **sge)


@pytest.fixture
def sge_env(sge_cell, monkeypatch):
    """The cell's client settings in os.environ, as on a submit host (the daemon's own executor and
    `dlcwatch cancel` find the cell there)."""
    for key in ("SGE_ROOT", "SGE_CELL", "SGE_QMASTER_PORT", "SGE_EXECD_PORT"):
        monkeypatch.setenv(key, sge_cell.env[key])
    return sge_cell


def sge_variables(cell) -> dict:
    return {key: cell.env[key] for key in ("SGE_ROOT", "SGE_CELL", "SGE_QMASTER_PORT", "SGE_EXECD_PORT")}


@needs_dlc
def test_real_workers_in_an_array_and_a_restarted_daemon_deliver_each_video_once(sge_env, tiny_model, tmp_path):
    config_path = sge_config(tmp_path, tiny_model)
    first, jobs = three_videos_in_two_jobs(tmp_path, config_path, "Grid Engine")
    # Both jobs went to Grid Engine as the two tasks of one array (one qsub call), numbered from 1.
    [array_id] = {job.executor_job_id.split(".")[0] for job in jobs}
    assert sorted(job.executor_job_id for job in jobs) == [f"{array_id}.1", f"{array_id}.2"]
    assert all(job.executor == "sge" for job in jobs)
    script = (Path(jobs[0].spec_path).parent / "job.qsub").read_text()
    assert "#$ -l gpu=1\n" in script and "#$ -t 1-2\n" in script and "-m dlcwatch.worker " in script
    first.close()  # the daemon dies; Grid Engine keeps the jobs

    second = Daemon(load_config(config_path), watch_events=False)
    second.start()
    try:
        every_video_delivered_once(second, 3, 300)
        logs = [Path(job.log_path).read_text() for job in jobs]
        assert all("DeepLabCut 3.0.2" in text for text in logs), logs[0][-2000:]  # the real worker's own log
    finally:
        second.close()


def test_a_time_limit_kill_is_retried_with_more_time_and_a_cancel_is_left_cancelled(sge_env, tmp_path):
    # Grid Engine's real h_rt (one minute) kills the first job: qacct failed 37, exit 137.
    config_path = sge_config(tmp_path, placeholder_model(tmp_path), videos_per_job=1, time_limit_min=1,
                             max_time_limit_min=2, gpus=0, python=str(sleeping_python(tmp_path)))
    write_video(tmp_path / "videos" / "slow.mp4", frames=20)
    daemon = Daemon(load_config(config_path), watch_events=False)
    daemon.start()
    try:
        time_limit_kill_retried_then_cancel_left(daemon, config_path, sge_variables(sge_env), script_name="job.qsub",
                                                 retry_time_line="#$ -l h_rt=0:02:00\n", kill_timeout=150)
    finally:
        daemon.close()


def test_a_pending_job_cancelled_leaves_no_record_and_is_still_left_cancelled(sge_env, tmp_path):
    # Held (qsub -h): it stays pending. A deleted pending job never reaches the accounting file,
    # so the executor calls it lost after accounting_lag_s; the daemon knows a person asked.
    config_path = sge_config(tmp_path, placeholder_model(tmp_path), videos_per_job=1, gpus=0, extra_qsub=["-h"],
                             accounting_lag_s=1.0, python=str(sleeping_python(tmp_path)))
    write_video(tmp_path / "videos" / "held.mp4", frames=20)
    daemon = Daemon(load_config(config_path), watch_events=False)
    daemon.start()
    try:
        tick_until(daemon, lambda: daemon.store.active_jobs(), 60, "a Grid Engine job")
        [job] = daemon.store.active_jobs()
        completed = cli("cancel", "held.mp4", "--config", str(config_path), env=sge_variables(sge_env))
        assert completed.returncode == 0, completed.stderr
        assert "not found" in sge_env.command("sh", "-c", f"qacct -j {job.executor_job_id} 2>&1", check=False)
        tick_until(daemon, lambda: daemon.store.video(1).state is S.FAILED, 30, "the cancel")
        assert daemon.store.job(job.id).state is JobState.CANCELLED
        assert "cancelled" in daemon.store.video(1).reason
    finally:
        daemon.close()


def test_200_videos_go_as_arrays_within_max_aj_tasks_and_one_poll_asks_qstat_once(sge_cell, tmp_path):
    # The test cell's max_aj_tasks is 100: the 150 asked for become arrays of 100.
    config = load_config(sge_config(tmp_path, placeholder_model(tmp_path), videos_per_job=1, gpus=0,
                                    max_jobs_in_flight=250, array_tasks=150, array_throttle=2,
                                    python=str(sleeping_python(tmp_path))))
    runner = CountingRunner(sge_cell.runner)
    daemon = Daemon(config, executor=SgeExecutor(config.executor.sge, runner=runner), watch_events=False)
    try:
        queue_videos(daemon, 200)
        daemon.submit(time.time())
        assert runner.count("qsub") == 2
        jobs = daemon.store.active_jobs()
        assert len(jobs) == 200 and all(job.state is JobState.SUBMITTED for job in jobs)
        by_array: dict[str, list[int]] = {}
        for job in jobs:
            array_id, _, task = job.executor_job_id.partition(".")
            by_array.setdefault(array_id, []).append(int(task))
        assert sorted(sorted(tasks) for tasks in by_array.values()) == [list(range(1, 101))] * 2
        scripts = sorted(tmp_path.glob("staging/jobs/array*/job.qsub"))
        assert len(scripts) == 2 and all("#$ -t 1-100\n#$ -tc 2\n" in path.read_text() for path in scripts)

        # All 200 are in the queue (no qacct needed); two tasks run at a time per array (the throttle).
        one_status_call_per_cycle(daemon, runner, "qstat", running=4)
    finally:
        arrays = {job.executor_job_id.split(".")[0] for job in daemon.store.active_jobs() if job.executor_job_id}
        if arrays:
            sge_cell.command("qdel", *sorted(arrays), check=False)
        daemon.close()


def test_jobs_go_to_the_cpu_queue_while_gpu_jobs_wait(sge_cell, tmp_path):
    # Two fake GPUs: two GPU jobs run, the third waits; once it has waited past after_pending_min,
    # the next job goes to the fallback queue without GPUs (the cell's one queue, all.q) and starts.
    config = load_config(sge_config(tmp_path, placeholder_model(tmp_path), videos_per_job=1, gpus=1, array_tasks=1,
                                    python=str(sleeping_python(tmp_path)),
                                    cpu_fallback={"queue": "all.q", "after_pending_min": 0.05, "cpus": 1,
                                                  "time_limit_min": 5}))
    daemon = Daemon(config, executor=SgeExecutor(config.executor.sge, runner=sge_cell.runner), watch_events=False)

    try:
        gpu_jobs_wait_and_the_next_goes_to_the_cpu_place(daemon, place="queue", value="all.q", script_name="job.qsub",
                                                         script_lines=("#$ -q all.q\n", "#$ -l h_rt=0:05:00\n"),
                                                         absent="gpu")
    finally:
        ours = [job.executor_job_id for job in daemon.store.active_jobs() if job.executor_job_id]
        if ours:
            sge_cell.command("qdel", *ours, check=False)
        daemon.close()
