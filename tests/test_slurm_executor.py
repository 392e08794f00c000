"""The SLURM executor against a real single-node SLURM (tests/slurm_cluster.sh).

The jobs are tiny: a stand-in for the worker's python (cluster_fixtures.fake_python) that sleeps
and exits as its spec says, except in the one test that runs the real worker. The TIMEOUT job
needs a real minute (SLURM's time limits are whole minutes, checked every 30 s), so it is
submitted before every other test here and checked after them: its wait overlaps theirs.
"""

from __future__ import annotations

import logging
import signal
import sys
import time
from pathlib import Path

import pytest

from conftest import needs_dlc
from dlcwatch.executors.base import ExecutorError, Outcome, Submission
from dlcwatch.executors.slurm.script import ARRAY_TASK_ID
from dlcwatch.executors.slurm.executor import SlurmExecutor
from dlcwatch.jobs.spec import EXIT_OK, MISSING, OK, read_result, write_json_atomic
from dlcwatch.states import JobState
from dlcwatch.store import Store
from dlcwatch.demo.synthetic import write_video
from cluster_fixtures import (
    CountingRunner,
    fake_worker_settings,
    every_fifth_failed,
    job_row,
    many_jobs_and_two_unknown,
    start_timeout_job,
    submit_fake_job,
    wait_ended,
    wait_for,
    write_spec,
)
from slurm_fixtures import slurm_settings

pytest_plugins = ["slurm_fixtures"]  # the fixtures slurm_cluster and slurm_accounting_cluster


def make_executor(cluster, folder: Path, *, runner=None, clock=time.time, **settings) -> SlurmExecutor:
    values = fake_worker_settings(folder, **settings)
    return SlurmExecutor(slurm_settings(**values), runner=runner or cluster.runner, clock=clock)


@pytest.fixture(scope="module", autouse=True)
def early_timeout_job(slurm_cluster, tmp_path_factory):
    """A job with a one-minute limit that sleeps ten minutes: submitted first, checked last."""
    folder = tmp_path_factory.mktemp("timeout")
    return start_timeout_job(make_executor(slurm_cluster, folder, time_limit_min=1), folder)


# ---------------------------------------------------------------------- the real worker

@needs_dlc
def test_the_real_worker_runs_under_slurm(slurm_cluster, tiny_model, tmp_path):
    video = write_video(tmp_path / "in" / "souris $(x).mp4", frames=40)
    store = Store(tmp_path / "db")
    job = job_row(store, tmp_path, "slurm")
    work = Path(job.spec_path).parent
    write_json_atomic(job.spec_path, {
        "version": 1, "job_id": job.id, "work_dir": str(work), "result": job.result_path,
        "model": {"config": str(tiny_model), "shuffle": 1, "trainingsetindex": 0, "batch_size": 4, "device": "auto"},
        "filter": {"enabled": False}, "copy_videos": False, "behavior_model": None,
        "videos": [{"id": 1, "path": str(video), "frames": 40, "fps": 30.0},
                   {"id": 2, "path": str(tmp_path / "in" / "deleted.mp4"), "frames": 10, "fps": 30.0}],
    })
    executor = make_executor(slurm_cluster, tmp_path, python=sys.executable, cpus=2, mem_gb=0.0, gpus=1)
    slurm_id = executor.submit(Submission(job.id, Path(job.spec_path), Path(job.log_path), work, {}))
    job = store.set_job_state(job.id, JobState.SUBMITTED, "test", executor_job_id=slurm_id)
    status = wait_ended(executor, job, timeout=180)
    log_text = Path(job.log_path).read_text()
    assert status.outcome is Outcome.COMPLETED and status.exit_code == EXIT_OK, log_text[-3000:]
    result = read_result(job.result_path)
    assert result["finished"] and result["exit_code"] == EXIT_OK
    assert result["videos"]["1"]["status"] == OK and result["videos"]["1"]["frames"] == 40
    assert result["videos"]["2"]["status"] == MISSING
    assert "DeepLabCut 3.0.2" in log_text  # the worker's own log went to the job's --output


# ---------------------------------------------------------------------- outcomes

def test_a_job_runs_to_completed_with_its_paths_quoted(slurm_cluster, tmp_path):
    folder = tmp_path / "lab's \"videos\" $(touch x) %j #1"  # every character sbatch or bash could misread
    folder.mkdir()
    store = Store(tmp_path / "db")
    executor = make_executor(slurm_cluster, folder, gpus=1)  # --gres=gpu:1 on the node's fake GPUs
    job = submit_fake_job(store, executor, folder, sleep=1)
    assert executor.poll([job])[job.id].outcome in (Outcome.PENDING, Outcome.RUNNING)
    status = wait_ended(executor, job)
    assert status.outcome is Outcome.COMPLETED and status.exit_code == 0
    log_text = Path(job.log_path).read_text()  # --output went exactly where asked
    assert f"fake worker spec: {job.spec_path}\n" in log_text
    assert "task: None gpus: 0\n" in log_text  # SLURM gave it one of the node's (fake) GPUs
    assert not (folder / "x").exists() and not (tmp_path / "x").exists()
    name = slurm_cluster.command("squeue", "-h", "-t", "all", "-j", job.executor_job_id, "-O", "Name:|")
    assert name == f"dlcwatch-{job.id}|\n"


def test_a_worker_exit_code_is_failed_with_that_code(slurm_cluster, tmp_path):
    executor = make_executor(slurm_cluster, tmp_path)
    job = submit_fake_job(Store(tmp_path / "db"), executor, tmp_path, exit=75)
    status = wait_ended(executor, job)
    assert status.outcome is Outcome.FAILED and status.exit_code == 75
    assert status.detail == "FAILED, exit code 75"


def test_scancel_gives_cancelled(slurm_cluster, tmp_path):
    executor = make_executor(slurm_cluster, tmp_path)
    job = submit_fake_job(Store(tmp_path / "db"), executor, tmp_path, sleep=300)
    wait_for(lambda: executor.poll([job])[job.id].outcome is Outcome.RUNNING, 30, "the job to run")
    executor.cancel(job)
    status = wait_ended(executor, job)
    assert status.outcome is Outcome.CANCELLED
    executor.cancel(job)  # cancelling a job that already ended is no error


def test_a_bad_partition_is_refused_in_slurms_words(slurm_cluster, tmp_path):
    executor = make_executor(slurm_cluster, tmp_path, partition="no-such-partition")
    with pytest.raises(ExecutorError) as refused:
        submit_fake_job(Store(tmp_path / "db"), executor, tmp_path)
    assert "sbatch refused job 1: invalid partition specified: no-such-partition" in str(refused.value)
    assert executor.slots(0) == 20  # a refusal is not an outage


# ---------------------------------------------------------------------- cost and limits

def test_a_poll_over_many_jobs_asks_squeue_once_and_sacct_at_most_once(slurm_cluster, tmp_path):
    counting = CountingRunner(slurm_cluster.runner)
    executor = make_executor(slurm_cluster, tmp_path, runner=counting, max_jobs_in_flight=100)
    store = Store(tmp_path / "db")
    jobs, finished, vanished = many_jobs_and_two_unknown(store, executor, tmp_path, 50, ("9999990", "9999991"))
    everything = jobs + [finished, vanished]

    counting.calls.clear()
    statuses = executor.poll(everything)
    assert [argv[0] for argv in counting.calls] == ["squeue", "sacct"]
    assert len(statuses) == 52
    assert statuses[finished.id].outcome is Outcome.COMPLETED and statuses[finished.id].exit_code == 0
    assert statuses[vanished.id].outcome is Outcome.LOST and "accounting is disabled" in statuses[vanished.id].detail

    def all_ended():
        counting.calls.clear()
        statuses = executor.poll(everything)
        assert [argv[0] for argv in counting.calls] == ["squeue"]  # sacct said accounting is off: never again
        return statuses if all(status.outcome.ended for status in statuses.values()) else None
    statuses = wait_for(all_ended, 90, "50 jobs to end", interval=1.0)
    assert every_fifth_failed(jobs, statuses)


def test_slots_respect_our_cap_and_read_the_cluster_once(slurm_cluster, tmp_path):
    counting = CountingRunner(slurm_cluster.runner)
    executor = make_executor(slurm_cluster, tmp_path, runner=counting, max_jobs_in_flight=3)
    assert [executor.slots(active) for active in (0, 2, 3, 7)] == [3, 1, 0, 0]
    assert counting.count("scontrol") == 1 and counting.count("sbatch") == 0
    assert executor.cluster_config()["MaxArraySize"] == "100"


def test_a_job_array_runs_every_task_on_its_own_spec(slurm_cluster, tmp_path):
    counting = CountingRunner(slurm_cluster.runner)
    executor = make_executor(slurm_cluster, tmp_path, runner=counting)
    work = tmp_path / "array job"
    for task in range(3):
        write_spec(work / f"spec-{task}.json", exit=task)  # task 0 exits 0, task 1 exits 1, …
    array = Submission(7, work / f"spec-{ARRAY_TASK_ID}.json", work / f"worker-{ARRAY_TASK_ID}.log", work, {})
    with pytest.raises(ExecutorError, match="MaxArraySize = 100"):
        executor.submit_array(array, 101)
    assert counting.count("sbatch") == 0
    task_ids = executor.submit_array(array, 3, throttle=1)
    assert "#SBATCH --array=0-2%1" in (work / "job.sbatch").read_text()
    store = Store(tmp_path / "db")
    jobs = [job_row(store, tmp_path, "slurm", task_id) for task_id in task_ids]

    def all_ended():
        statuses = executor.poll(jobs)
        return statuses if len(statuses) == 3 and all(s.outcome.ended for s in statuses.values()) else None
    statuses = wait_for(all_ended, 60, "the array's tasks to end")
    assert [statuses[job.id].exit_code for job in jobs] == [0, 1, 2]
    for task in range(3):
        assert f"spec: {work}/spec-{task}.json\n" in (work / f"worker-{task}.log").read_text()


# ---------------------------------------------------------------------- the controller goes away

def test_a_stopped_controller_means_no_news_and_fewer_questions(slurm_cluster, tmp_path, caplog):
    caplog.set_level(logging.DEBUG, logger="dlcwatch.executors.slurm.executor")
    now = [time.time()]
    counting = CountingRunner(slurm_cluster.runner)
    executor = make_executor(slurm_cluster, tmp_path, runner=counting, clock=lambda: now[0],
                             unreachable_backoff_s=30.0)
    store = Store(tmp_path / "db")
    # Long enough to outlive the outage (about 10 s): a job that ends while the controller is down is
    # only reported by slurmd's next retry, 15 s later, which would just slow the test down.
    job = submit_fake_job(store, executor, tmp_path, sleep=15)
    wait_for(lambda: executor.poll([job])[job.id].outcome is Outcome.RUNNING, 30, "the job to run")
    slurm_cluster.control("ctld-stop")
    try:
        asked = len(counting.calls)
        assert executor.poll([job]) == {}  # squeue failed: no news, nothing raised
        assert len(counting.calls) == asked + 1 and executor.unreachable.startswith("slurm_load_jobs error: Unable")
        assert executor.slots(0) == 0
        now[0] += 29
        assert executor.poll([job]) == {} and len(counting.calls) == asked + 1  # within the pause: not asked
        now[0] += 2
        assert executor.poll([job]) == {} and len(counting.calls) == asked + 2  # asked again; the pause doubles
        now[0] += 59
        assert executor.poll([job]) == {} and len(counting.calls) == asked + 2
        with pytest.raises(ExecutorError, match="SLURM controller not answering, job .* not submitted: .*Unable "
                                                "to contact slurm controller"):
            submit_fake_job(store, executor, tmp_path)
    finally:
        slurm_cluster.control("ctld-start")
    now[0] += 600
    status = wait_for(lambda: executor.poll([job]).get(job.id), 30, "news once the controller is back")
    assert status.outcome in (Outcome.RUNNING, Outcome.COMPLETED) and executor.unreachable == ""
    assert executor.slots(0) == 20
    warnings = [r for r in caplog.records if r.levelno == logging.WARNING and "not answering" in r.getMessage()]
    assert len(warnings) == 1, [r.getMessage() for r in warnings]
    assert wait_ended(executor, job).outcome is Outcome.COMPLETED


def test_a_hung_controller_costs_one_command_timeout(slurm_cluster, tmp_path):
    now = [time.time()]
    executor = make_executor(slurm_cluster, tmp_path, clock=lambda: now[0], command_timeout_s=1.0)
    job = submit_fake_job(Store(tmp_path / "db"), executor, tmp_path, sleep=1)
    slurm_cluster.signal_controller(signal.SIGSTOP)  # alive, but answers nobody
    try:
        started = time.monotonic()
        assert executor.poll([job]) == {}
        assert time.monotonic() - started < 3 and executor.unreachable == "squeue timed out after 1 s"
    finally:
        slurm_cluster.signal_controller(signal.SIGCONT)
    now[0] += 31
    assert wait_ended(executor, job).outcome is Outcome.COMPLETED


# ---------------------------------------------------------------------- with accounting

def test_sacct_knows_jobs_squeue_forgot_and_its_silence_is_no_loss(slurm_accounting_cluster, tmp_path, caplog):
    cluster = slurm_accounting_cluster
    counting = CountingRunner(cluster.runner)
    executor = make_executor(cluster, tmp_path, runner=counting)
    job = submit_fake_job(Store(tmp_path / "db"), executor, tmp_path, exit=75)  # writes no result file

    def from_sacct():
        counting.calls.clear()
        status = executor.poll([job]).get(job.id)
        return status if counting.count("sacct") == 1 else None
    status = wait_for(from_sacct, 60, "squeue to forget the job (MinJobAge = 2 s)", interval=1.0)
    assert counting.count("squeue") == 1
    assert status.outcome is Outcome.FAILED and status.exit_code == 75
    assert read_result(job.result_path) is None  # so only sacct could tell

    cluster.control("dbd-stop")  # accounting goes down: sacct fails
    try:
        counting.calls.clear()
        assert executor.poll([job]) == {} and executor.poll([job]) == {}  # not LOST: sacct may know it later
        assert [argv[0] for argv in counting.calls] == ["squeue", "sacct"] * 2
        assert len([r for r in caplog.records if "sacct failed" in r.getMessage()]) == 1
        write_json_atomic(job.result_path, {"finished": time.time(), "exit_code": 75, "videos": {}})
        status = executor.poll([job])[job.id]  # the worker's own word will do
        assert status.outcome is Outcome.FAILED and status.exit_code == 75 and "its worker ended" in status.detail
    finally:
        cluster.control("dbd-start")


def test_a_submit_limit_pauses_submission_until_one_of_ours_ends(slurm_accounting_cluster, tmp_path):
    cluster = slurm_accounting_cluster
    cluster.command("sacctmgr", "-i", "modify", "user", "root", "set", "MaxSubmitJobs=2")
    try:
        executor = make_executor(cluster, tmp_path, extra_sbatch=["--hold"])  # held: they stay in the queue
        store = Store(tmp_path / "db")
        first, second = (submit_fake_job(store, executor, tmp_path) for _ in range(2))
        with pytest.raises(ExecutorError, match="submit limit reached .*AssocMaxSubmitJobLimit"):
            submit_fake_job(store, executor, tmp_path)
        assert executor.slots(2) == 0
        executor.cancel(first)
        assert wait_ended(executor, first).outcome is Outcome.CANCELLED
        assert executor.slots(1) == 1  # the account's MaxSubmitJobs (2), read from sacctmgr, not just our cap
        third = submit_fake_job(store, executor, tmp_path)
        for job in (second, third):
            executor.cancel(job)
    finally:
        cluster.command("sacctmgr", "-i", "modify", "user", "root", "set", "MaxSubmitJobs=-1")


# ---------------------------------------------------------------------- last: the minute is up

def test_a_job_past_its_time_limit_is_timeout(early_timeout_job):
    executor, job, submitted = early_timeout_job
    status = wait_ended(executor, job, timeout=max(5.0, 150 - (time.monotonic() - submitted)))
    assert status.outcome is Outcome.TIMEOUT and status.detail.startswith("TIMEOUT")
    assert time.monotonic() - submitted > 55  # the one-minute limit, not sooner
