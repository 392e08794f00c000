"""The daemon submitting job arrays to a real single-node SLURM (no DeepLabCut: the worker's python
is a stand-in that sleeps, so tasks stay in the queue while the test looks at them)."""

import time

import pytest

from conftest import cli, write_config
from dlcwatch.config import load_config
from dlcwatch.daemon import Daemon
from dlcwatch.executors.slurm.executor import SlurmExecutor
from dlcwatch.states import JobState
from dlcwatch.states import VideoState as S
from dlcwatch.store import Store
from cluster_scenarios import one_status_call_per_cycle
from cluster_fixtures import (
    CountingRunner,
    placeholder_model,
    queue_videos,
    reporting_python,
    sleeping_python,
    wait_for,
)

pytest_plugins = ["slurm_fixtures"]


def array_daemon(cluster, tmp_path, clock=time.time, **slurm):
    """A daemon on the test cluster whose SLURM commands are counted (daemon.executor.runner)."""
    model = placeholder_model(tmp_path)
    settings = {"cpus": 1, "gpus": 0, "mem_gb": 0.1, "time_limit_min": 10, "poll_interval_s": 1.0,
                "python": str(sleeping_python(tmp_path)), **slurm}
    config = load_config(write_config(tmp_path, model, executor={"kind": "slurm", "videos_per_job": 1,
                                                                  "slurm": settings}))
    executor = SlurmExecutor(config.executor.slurm, runner=CountingRunner(cluster.runner), clock=clock)
    return Daemon(config, executor=executor, watch_events=False)


def cancel_all(cluster, daemon) -> None:
    arrays = {job.executor_job_id.split("_")[0] for job in daemon.store.active_jobs() if job.executor_job_id}
    if arrays:
        cluster.command("scancel", *sorted(arrays), check=False)


def test_200_videos_go_as_arrays_within_max_array_size_and_one_poll_asks_squeue_once(slurm_cluster, tmp_path):
    # The test cluster's MaxArraySize is 100: the 150 asked for become arrays of 100.
    daemon = array_daemon(slurm_cluster, tmp_path, max_jobs_in_flight=250, array_tasks=150, array_throttle=2)
    runner = daemon.executor.runner
    try:
        queue_videos(daemon, 200)
        daemon.submit(time.time())
        assert runner.count("sbatch") == 2
        jobs = daemon.store.active_jobs()
        assert len(jobs) == 200 and all(job.state is JobState.SUBMITTED for job in jobs)
        by_array: dict[str, list[str]] = {}
        for job in jobs:
            array_id, _, task = job.executor_job_id.partition("_")
            by_array.setdefault(array_id, []).append(task)
        assert sorted(len(tasks) for tasks in by_array.values()) == [100, 100]
        assert all(sorted(map(int, tasks)) == list(range(100)) for tasks in by_array.values())
        scripts = sorted(tmp_path.glob("staging/jobs/array*/job.sbatch"))
        assert len(scripts) == 2 and all("#SBATCH --array=0-99%2\n" in path.read_text() for path in scripts)
        assert {len(daemon.store.job_video_ids(job.id)) for job in jobs} == {1}
        assert {video.state for video in daemon.store.videos()} == {S.SUBMITTED}

        # All 200 are in the queue (no sacct needed); two tasks run at a time per array (the throttle).
        first_poll = one_status_call_per_cycle(daemon, runner, "squeue", running=4)
        # squeue is asked about the two arrays, not 200 task ids.
        assert sum(argv[-2].count(",") + 1 for argv in first_poll if argv[-2].startswith("--jobs=")) == 2
    finally:
        cancel_all(slurm_cluster, daemon)
        daemon.close()


def test_max_jobs_in_flight_holds_the_rest_back_and_a_freed_slot_gets_one_job(slurm_cluster, tmp_path):
    daemon = array_daemon(slurm_cluster, tmp_path, max_jobs_in_flight=5)
    runner = daemon.executor.runner
    try:
        queue_videos(daemon, 12)
        daemon.submit(time.time())
        daemon.submit(time.time())  # no room: nothing more
        assert runner.count("sbatch") == 1
        jobs = daemon.store.active_jobs()
        assert len(jobs) == 5 and len({job.executor_job_id.split("_")[0] for job in jobs}) == 1
        assert len(daemon.store.videos([S.QUEUED])) == 7

        # A person cancels one pending task: SLURM drops it without a record (no CANCELLED state
        # to read), yet its video is left failed, not retried, and its slot takes one more job.
        completed = cli("cancel", "--job", str(jobs[0].id), "--config", str(tmp_path / "config.yaml"),
                        env={"SLURM_CONF": slurm_cluster.env["SLURM_CONF"]})
        assert completed.returncode == 0, completed.stderr
        wait_for(lambda: (daemon.poll(time.time()) or True) and len(daemon.store.active_jobs()) == 4, 60,
                 "the cancelled task to end", interval=1.1)
        cancelled = daemon.store.video(daemon.store.job_video_ids(jobs[0].id)[0])
        assert cancelled.state is S.FAILED and "cancelled" in cancelled.reason
        assert daemon.store.job(jobs[0].id).state is JobState.CANCELLED
        daemon.submit(time.time())
        assert runner.count("sbatch") == 2
        newest = max(daemon.store.active_jobs(), key=lambda job: job.id)
        assert "_" not in newest.executor_job_id  # a single job, no array of one
        assert len(daemon.store.videos([S.QUEUED])) == 6
    finally:
        cancel_all(slurm_cluster, daemon)
        daemon.close()


def test_an_array_refused_by_the_controller_returns_its_videos_to_the_queue_with_slurms_words(slurm_cluster,
                                                                                             tmp_path):
    daemon = array_daemon(slurm_cluster, tmp_path, partition="no-such-partition")
    try:
        queue_videos(daemon, 3)
        daemon.submit(time.time())
        assert [job.state for job in daemon.store.jobs()] == [JobState.FAILED] * 3
        for video in daemon.store.videos():
            assert video.state is S.QUEUED and video.attempts == 0  # not the video's fault
            assert "invalid partition" in video.reason.lower() and "sbatch refused job array" in video.reason
    finally:
        daemon.close()


def test_the_accounts_submit_limit_is_read_and_kept(slurm_accounting_cluster, tmp_path):
    cluster = slurm_accounting_cluster
    cluster.command("sacctmgr", "-i", "modify", "user", "root", "set", "MaxSubmitJobs=3")
    daemon = array_daemon(cluster, tmp_path, extra_sbatch=["--hold"])
    runner = daemon.executor.runner
    try:
        queue_videos(daemon, 5)
        daemon.submit(time.time())
        daemon.submit(time.time())
        active = daemon.store.active_jobs()
        assert len(active) == 3 and runner.count("sbatch") == 1  # one array of 3: nothing refused
        assert len(daemon.store.videos([S.QUEUED])) == 2
    finally:
        cancel_all(cluster, daemon)
        daemon.close()
        cluster.command("sacctmgr", "-i", "modify", "user", "root", "set", "MaxSubmitJobs=-1")


def test_a_submit_limit_filled_by_other_jobs_splits_the_next_arrays(slurm_accounting_cluster, tmp_path):
    cluster = slurm_accounting_cluster
    cluster.command("sacctmgr", "-i", "modify", "user", "root", "set", "MaxSubmitJobs=4")
    # Two jobs of the same account that dlcwatch does not know about take half of the limit.
    others = [cluster.command("sbatch", "--parsable", "--hold", "--wrap", "sleep 1").strip() for _ in range(2)]
    now = [time.time()]
    daemon = array_daemon(cluster, tmp_path, clock=lambda: now[0], extra_sbatch=["--hold"])
    runner = daemon.executor.runner
    try:
        queue_videos(daemon, 5)
        for _ in range(4):  # each refusal pauses submission (LIMIT_PAUSE_S); the clock jumps past it
            daemon.submit(now[0])
            now[0] += 301
        active = daemon.store.active_jobs()
        assert len(active) == 2  # what the limit leaves us
        # Array of 4 refused | 2 taken, 2 refused | 1 refused | 1 refused: after a refusal nothing
        # more is tried in that round, and arrays shrink.
        assert runner.count("sbatch") == 5
        assert all(job.executor_job_id.count("_") == 1 for job in active)
        queued = daemon.store.videos([S.QUEUED])
        assert len(queued) == 3 and all(video.attempts == 0 for video in queued)  # not the videos' fault
        # Each one that was tried says why it waits; one was never tried (the limit left no room).
        assert sum("submit limit reached" in video.reason for video in queued) >= 2
        assert all("submit limit reached" in video.reason for video in queued if video.job_id)
    finally:
        cluster.command("scancel", *others, check=False)
        cancel_all(cluster, daemon)
        daemon.close()
        cluster.command("sacctmgr", "-i", "modify", "user", "root", "set", "MaxSubmitJobs=-1")


def test_a_finished_array_task_is_taken_while_the_others_still_run(slurm_cluster, tmp_path):
    daemon = array_daemon(slurm_cluster, tmp_path, python=str(reporting_python(tmp_path, odd_ids_sleep=True)))
    try:
        queue_videos(daemon, 2)
        daemon.submit(time.time())
        jobs = {daemon.store.job_video_ids(job.id)[0]: job for job in daemon.store.active_jobs()}
        assert len({job.executor_job_id.split("_")[0] for job in jobs.values()}) == 1  # one array

        def taken():
            daemon.poll(time.time() + 2)
            return daemon.store.job(jobs[2].id).state is JobState.FINISHED
        wait_for(taken, 60, "the even video's task to end and be taken", interval=1.1)
        assert any("analyzed in job" in event.message for event in daemon.store.events(video_id=2))
        assert daemon.store.job(jobs[1].id).state in (JobState.SUBMITTED, JobState.RUNNING)
        assert daemon.store.video(1).state in (S.SUBMITTED, S.RUNNING)
    finally:
        cancel_all(slurm_cluster, daemon)
        daemon.close()


class StopAfterSbatch(Exception):
    """The daemon dies after sbatch accepted, before the database heard of it."""


def test_jobs_submitted_just_before_a_stop_are_found_again_and_not_run_twice(slurm_cluster, tmp_path, monkeypatch):
    def crash_on_submitted(store, job_id, new, *args, **kwargs):
        if new is JobState.SUBMITTED:
            raise StopAfterSbatch()
        return real_set_job_state(store, job_id, new, *args, **kwargs)
    real_set_job_state = Store.set_job_state

    first = array_daemon(slurm_cluster, tmp_path)
    second = None
    try:
        queue_videos(first, 3)
        monkeypatch.setattr(Store, "set_job_state", crash_on_submitted)
        with pytest.raises(StopAfterSbatch):
            first.submit(time.time())  # one array of three tasks reached SLURM
        queue_videos(first, 1)
        with pytest.raises(StopAfterSbatch):
            first.submit(time.time())  # and one single job
        monkeypatch.setattr(Store, "set_job_state", real_set_job_state)
        assert [job.state for job in first.store.jobs()] == [JobState.CREATED] * 4
        first.close()

        second = array_daemon(slurm_cluster, tmp_path, unreachable_backoff_s=1.0)  # same config and database
        slurm_cluster.control("ctld-stop")  # and the controller is away when it starts
        try:
            second.start()
            assert [job.state for job in second.store.jobs()] == [JobState.CREATED] * 4  # undecided, not failed
        finally:
            slurm_cluster.control("ctld-start")
        wait_for(lambda: second.tick(time.time()) or not second.store.jobs([JobState.CREATED]), 60,
                 "the jobs to be found once the controller answers", interval=1.1)
        jobs = second.store.jobs()
        # Found, and (the same tick polls them) maybe already seen running; none failed or resubmitted.
        assert all(job.state in (JobState.SUBMITTED, JobState.RUNNING) for job in jobs), jobs
        array_id = jobs[0].executor_job_id.split("_")[0]
        assert [job.executor_job_id for job in jobs[:3]] == [f"{array_id}_{task}" for task in range(3)]
        assert "_" not in jobs[3].executor_job_id
        for job in jobs:
            assert any("submitted just before the daemon stopped" in event.message
                       for event in second.store.events(job_id=job.id))
        second.tick(time.time())
        assert second.executor.runner.count("sbatch") == 0  # nothing submitted again
        assert all(video.attempts == 1 and video.state in (S.SUBMITTED, S.RUNNING) for video in second.store.videos())
    finally:
        cancel_all(slurm_cluster, second or first)
        (second or first).close()
