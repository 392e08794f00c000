"""The local executor with real worker processes (no DeepLabCut needed for these paths)."""

import dataclasses
import sys
import time

from dlcwatch.config import Node
from dlcwatch.executors.base import Outcome, Submission
from dlcwatch.executors.local import LocalExecutor
from dlcwatch.jobs.spec import EXIT_USAGE, write_json_atomic
from dlcwatch.store import Store


def make_job(store, tmp_path, executor, spec):
    video = store.add_video(str(tmp_path / "v.mp4"), str(tmp_path), "v.mp4", size=1, mtime_ns=1)
    from dlcwatch.states import VideoState
    store.set_video_state(video.id, VideoState.QUEUED, "ok")
    job = store.create_job("local", [video.id])
    work = tmp_path / f"job{job.id}"
    write_json_atomic(work / "spec.json", spec)
    store.update_job(job.id, spec_path=str(work / "spec.json"), result_path=str(work / "result.json"))
    key = executor.submit(Submission(job.id, work / "spec.json", work / "worker.log", work, {}))
    from dlcwatch.states import JobState
    return store.set_job_state(job.id, JobState.SUBMITTED, "test", executor_job_id=key)


def sleeper(folder, seconds: float):
    """A stand-in for the worker's python that sleeps, with the worker's command line."""
    path = folder / "sleeper"
    path.write_text(f"#!{sys.executable}\nimport time\ntime.sleep({seconds})\n")
    path.chmod(0o755)
    return path


def settings(**values):
    return Node({"max_parallel": 2, "python": sys.executable, "time_limit_s": 0.0, **values})


def wait_ended(executor, job, timeout=60):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        status = executor.poll([job])[job.id]
        if status.outcome.ended:
            return status
        time.sleep(0.1)
    raise AssertionError("job did not end")


def test_exit_codes_are_reported(tmp_path):
    store = Store(tmp_path / "db")
    executor = LocalExecutor(settings())
    job = make_job(store, tmp_path, executor, {})  # a spec without the keys the worker needs
    status = wait_ended(executor, job)
    assert status.outcome is Outcome.FAILED and status.exit_code == EXIT_USAGE
    assert "cannot read the job spec" in (tmp_path / f"job{job.id}" / "worker.log").read_text()
    assert executor.slots(1) == 1 and executor.slots(2) == 0


def test_a_job_past_its_time_limit_is_stopped(tmp_path):
    store = Store(tmp_path / "db")
    clock = [time.time()]
    python = sleeper(tmp_path, 120)  # a "worker" that never finishes by itself
    executor = LocalExecutor(settings(time_limit_s=60.0, python=str(python)), clock=lambda: clock[0])
    job = make_job(store, tmp_path, executor, {"job_id": 2})
    assert executor.poll([job])[job.id].outcome is Outcome.RUNNING
    clock[0] += 61
    executor.poll([job])
    status = wait_ended(executor, job, timeout=30)
    assert status.outcome is Outcome.TIMEOUT and "time limit of 60 s" in status.detail


def test_a_restarted_daemon_finds_running_workers_again(tmp_path):
    store = Store(tmp_path / "db")
    python = sleeper(tmp_path, 2)
    first = LocalExecutor(settings(python=str(python)))
    job = make_job(store, tmp_path, first, {})
    # A new executor (the daemon restarted) knows the job only by its pid:start-time.
    second = LocalExecutor(settings(python=str(python)))
    assert second.poll([job])[job.id].outcome is Outcome.RUNNING
    first._children.clear()  # the old daemon is gone; the orphan is reaped by init
    import os
    pid = int(job.executor_job_id.split(":")[0])
    os.waitpid(pid, 0)
    status = second.poll([job])[job.id]
    assert status.outcome is Outcome.LOST and "without writing its result" in status.detail


def test_a_worker_started_just_before_a_stop_is_found_by_its_spec(tmp_path):
    store = Store(tmp_path / "db")
    python = sleeper(tmp_path, 120)
    before = LocalExecutor(settings(python=str(python)))
    job = make_job(store, tmp_path, before, {"job_id": 1})
    other = tmp_path / "job99" / "spec.json"  # a job that never started
    try:
        after = LocalExecutor(settings(python=str(python)))  # a new daemon: no children of its own
        unrecorded = dataclasses.replace(job, executor_job_id=None)
        never = dataclasses.replace(job, id=99, spec_path=str(other))
        assert after.adopt([unrecorded, never]) == {job.id: job.executor_job_id}
        assert after.poll([job])[job.id].outcome is Outcome.RUNNING
    finally:
        before.cancel(job)
    assert wait_ended(before, job).outcome in (Outcome.CANCELLED, Outcome.FAILED)
