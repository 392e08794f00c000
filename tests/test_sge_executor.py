"""The Grid Engine executor against a real single-node Son of Grid Engine (tests/sge_cluster.sh).

The jobs are tiny: a stand-in for the worker's python (cluster_fixtures.fake_python) that sleeps and
exits as its spec says. The time-limit job needs a real minute (h_rt is set in whole minutes), so it
is submitted before every other test here and checked after them: its wait overlaps theirs.
"""

from __future__ import annotations

import os
import signal
import time
from pathlib import Path

import pytest

from dlcwatch.executors.base import ARRAY_TASK_ID, ExecutorError, Outcome, Submission
from dlcwatch.executors.sge.executor import SgeExecutor
from dlcwatch.executors.sge.states import parse_qstat_xml
from dlcwatch.jobs.spec import ArrayFolder
from dlcwatch.store import Store
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
from sge_fixtures import importable_setup, sge_settings


pytest_plugins = ["sge_fixtures"]


def make_executor(cell, folder: Path, *, runner=None, clock=time.time, **settings) -> SgeExecutor:
    values = fake_worker_settings(folder, setup=[importable_setup()], **settings)
    return SgeExecutor(sge_settings(**values), runner=runner or cell.runner, clock=clock)


@pytest.fixture(scope="module", autouse=True)
def early_timeout_job(sge_cell, tmp_path_factory):
    """A job with a one-minute limit that sleeps ten minutes: submitted first, checked last."""
    folder = tmp_path_factory.mktemp("timeout")
    return start_timeout_job(make_executor(sge_cell, folder, time_limit_min=1), folder)


# ---------------------------------------------------------------------- outcomes

def test_a_job_runs_to_completed_with_its_paths_quoted(sge_cell, tmp_path):
    folder = tmp_path / "lab's \"videos\" $(touch x) `touch y` %j #1"  # every character qsub or bash could misread
    folder.mkdir()
    store = Store(tmp_path / "db")
    executor = make_executor(sge_cell, folder, gpus=1, cpus=2)  # -l gpu=1 on the fake consumable, -pe smp 2
    job = submit_fake_job(store, executor, folder, sleep=1)
    assert executor.poll([job])[job.id].outcome in (Outcome.PENDING, Outcome.RUNNING)
    status = wait_ended(executor, job)
    assert status.outcome is Outcome.COMPLETED and status.exit_code == 0
    assert f"fake worker spec: {job.spec_path}\n" in Path(job.log_path).read_text()  # the log went where asked
    assert not (folder / "x").exists() and not (tmp_path / "x").exists() and not (folder / "y").exists()
    accounting = sge_cell.command("qacct", "-j", job.executor_job_id)
    assert f"jobname      dlcwatch-{job.id} " in accounting and "-pe smp 2" in accounting and "gpu=1" in accounting


def test_a_worker_exit_code_is_failed_with_that_code(sge_cell, tmp_path):
    executor = make_executor(sge_cell, tmp_path)
    job = submit_fake_job(Store(tmp_path / "db"), executor, tmp_path, exit=75)
    status = wait_ended(executor, job)
    assert status.outcome is Outcome.FAILED and status.exit_code == 75 and status.detail == "exit code 75"


def test_qdel_of_a_running_job_is_cancelled_and_cancel_after_the_end_is_no_error(sge_cell, tmp_path):
    executor = make_executor(sge_cell, tmp_path)
    job = submit_fake_job(Store(tmp_path / "db"), executor, tmp_path, sleep=300)
    wait_for(lambda: executor.poll([job])[job.id].outcome is Outcome.RUNNING, 30, "the job to run")
    sge_cell.command("qdel", job.executor_job_id)  # a person, not dlcwatch
    status = wait_ended(executor, job)
    assert status.outcome is Outcome.CANCELLED and "qdel" in status.detail
    executor.cancel(job)


def test_a_pending_task_deleted_leaves_no_record_and_is_lost_only_after_the_accounting_lag(sge_cell, tmp_path):
    now = [time.time()]
    counting = CountingRunner(sge_cell.runner)
    executor = make_executor(sge_cell, tmp_path, runner=counting, clock=lambda: now[0], accounting_lag_s=60.0,
                             extra_qsub=["-h"])  # held: stays pending
    job = submit_fake_job(Store(tmp_path / "db"), executor, tmp_path)
    assert executor.poll([job])[job.id].detail == "hqw (held)"
    executor.cancel(job)
    counting.calls.clear()
    assert executor.poll([job]) == {}  # qacct knows nothing: maybe not yet written
    assert [argv[0] for argv in counting.calls] == ["qstat", "qacct"]
    assert "not found" in sge_cell.command("sh", "-c", f"qacct -j {job.executor_job_id} 2>&1", check=False)
    now[0] += 61
    status = executor.poll([job])[job.id]
    assert status.outcome is Outcome.LOST and "known to neither qstat nor qacct" in status.detail


def test_an_error_state_job_is_failed_and_deleted(sge_cell, tmp_path):
    executor = make_executor(sge_cell, tmp_path, extra_qsub=["-o /nonexistent-folder/out"])  # cannot open: Eqw
    job = submit_fake_job(Store(tmp_path / "db"), executor, tmp_path)
    status = wait_ended(executor, job, timeout=30)
    assert status.outcome is Outcome.FAILED and "could not start it (state Eqw" in status.detail
    wait_for(lambda: job.executor_job_id not in parse_qstat_xml(sge_cell.command("qstat", "-xml")), 10,
             "the Eqw job to be deleted")


def test_a_bad_queue_is_refused_in_grid_engines_words(sge_cell, tmp_path):
    executor = make_executor(sge_cell, tmp_path, queue="no-such.q")
    with pytest.raises(ExecutorError, match="qsub refused job 1: .*no-such.q"):
        submit_fake_job(Store(tmp_path / "db"), executor, tmp_path)
    assert executor.slots(0) == 20  # a refusal is not an outage


# ---------------------------------------------------------------------- arrays, cost, adopt

def test_an_array_runs_task_i_plus_one_on_spec_i(sge_cell, tmp_path):
    counting = CountingRunner(sge_cell.runner)
    executor = make_executor(sge_cell, tmp_path, runner=counting)
    array = ArrayFolder.of(tmp_path / "jobs", 7)
    for task in range(3):
        write_spec(array.spec(task), exit=task)  # task file 0 exits 0, 1 exits 1, …
    submission = Submission(7, array.spec(ARRAY_TASK_ID), array.log(ARRAY_TASK_ID), array.path, {})
    with pytest.raises(ExecutorError, match="max_aj_tasks = 100"):
        executor.submit_array(submission, 101)
    assert counting.count("qsub") == 0 and executor.max_array_tasks() == 100
    task_ids = executor.submit_array(submission, 3, throttle=1)
    array_id = task_ids[0].split(".")[0]
    assert task_ids == [f"{array_id}.1", f"{array_id}.2", f"{array_id}.3"]
    assert "#$ -t 1-3\n#$ -tc 1\n" in (array.path / "job.qsub").read_text()
    store = Store(tmp_path / "db")
    jobs = [job_row(store, tmp_path, "sge", task_id) for task_id in task_ids]

    def all_ended():
        statuses = executor.poll(jobs)
        return statuses if len(statuses) == 3 and all(s.outcome.ended for s in statuses.values()) else None
    statuses = wait_for(all_ended, 60, "the array's tasks to end")
    assert [statuses[job.id].exit_code for job in jobs] == [0, 1, 2]
    for task in range(3):
        assert f"spec: {array.spec(task)}\n" in array.log(task).read_text()


def test_a_poll_over_many_jobs_asks_qstat_once_and_qacct_at_most_once(sge_cell, tmp_path):
    counting = CountingRunner(sge_cell.runner)
    executor = make_executor(sge_cell, tmp_path, runner=counting, max_jobs_in_flight=100, accounting_lag_s=0.0)
    store = Store(tmp_path / "db")
    jobs, finished, vanished = many_jobs_and_two_unknown(store, executor, tmp_path, 30, ("999990", "999991"))
    everything = jobs + [finished, vanished]

    counting.calls.clear()
    statuses = executor.poll(everything)
    assert [argv[0] for argv in counting.calls] == ["qstat", "qacct"]
    assert statuses[finished.id].outcome is Outcome.COMPLETED and statuses[vanished.id].outcome is Outcome.LOST

    def all_ended():
        counting.calls.clear()
        statuses = executor.poll(everything)
        assert [argv[0] for argv in counting.calls] in (["qstat"], ["qstat", "qacct"])
        return statuses if len(statuses) == 32 and all(s.outcome.ended for s in statuses.values()) else None
    statuses = wait_for(all_ended, 120, "30 jobs to end", interval=1.0)
    assert every_fifth_failed(jobs, statuses)
    assert all("no longer lists" not in statuses[job.id].detail for job in jobs)  # qacct knew, not result files


def test_adopt_finds_jobs_submitted_before_a_stop_by_name_and_task(sge_cell, tmp_path):
    executor = make_executor(sge_cell, tmp_path, extra_qsub=["-h"])
    store = Store(tmp_path / "db")
    lone = job_row(store, tmp_path, "sge")
    write_spec(Path(lone.spec_path))
    lone_id = executor.submit(Submission(lone.id, Path(lone.spec_path), Path(lone.log_path),
                                         Path(lone.spec_path).parent, {}))
    first, second = job_row(store, tmp_path, "sge"), job_row(store, tmp_path, "sge")
    array = ArrayFolder.of(tmp_path / "jobs", first.id)
    for task, job in enumerate((first, second)):
        store.update_job(job.id, spec_path=str(array.spec(task)))
        write_spec(array.spec(task))
    task_ids = executor.submit_array(Submission(first.id, array.spec(ARRAY_TASK_ID), array.log(ARRAY_TASK_ID),
                                                array.path, {}), 2)
    never = job_row(store, tmp_path, "sge")  # recorded, never submitted
    try:
        found = executor.adopt([store.job(job.id) for job in (lone, first, second, never)])
        assert found == {lone.id: lone_id, first.id: task_ids[0], second.id: task_ids[1]}
    finally:
        sge_cell.command("qdel", lone_id, task_ids[0].split(".")[0])


# ---------------------------------------------------------------------- the qmaster goes away

def test_a_hung_qmaster_costs_one_command_timeout_and_means_no_news(sge_cell, tmp_path):
    now = [time.time()]
    counting = CountingRunner(sge_cell.runner)
    executor = make_executor(sge_cell, tmp_path, runner=counting, clock=lambda: now[0], command_timeout_s=1.0,
                             unreachable_backoff_s=30.0)
    job = submit_fake_job(Store(tmp_path / "db"), executor, tmp_path, sleep=1)
    qmaster = int((sge_cell.prefix / "spool" / "qmaster" / "qmaster.pid").read_text())
    os.kill(qmaster, signal.SIGSTOP)  # alive, but answers nobody
    try:
        started = time.monotonic()
        asked = len(counting.calls)
        assert executor.poll([job]) == {}
        assert time.monotonic() - started < 3 and executor.unreachable == "qstat timed out after 1 s"
        assert executor.slots(0) == 0
        now[0] += 29
        assert executor.poll([job]) == {} and len(counting.calls) == asked + 1  # within the pause: not asked
    finally:
        os.kill(qmaster, signal.SIGCONT)
    now[0] += 2
    assert wait_ended(executor, job).outcome is Outcome.COMPLETED and executor.unreachable == ""


# ---------------------------------------------------------------------- last: the minute is up

def test_a_job_past_its_h_rt_is_timeout(early_timeout_job):
    executor, job, submitted = early_timeout_job
    status = wait_ended(executor, job, timeout=max(5.0, 150 - (time.monotonic() - submitted)))
    assert status.outcome is Outcome.TIMEOUT and status.detail.startswith("failed 37")
    assert time.monotonic() - submitted > 55  # the one-minute limit, not sooner
