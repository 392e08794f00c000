"""The PBS executor against a stand-in PBS server (tests/pbs_standin.py).

NOT A REAL PBS SERVER: none can be installed here. The stand-in replays the formats OpenPBS
documents and prints (tests/pbs_recorded/README.md) and really runs the job scripts; these tests
show the executor reads and drives those formats, not that a real server agrees. The jobs are
tiny: a stand-in for the worker's python (cluster_fixtures.fake_python) that sleeps, holds memory
and exits as its spec says. The stand-in's walltime runs 20 times faster than the clock
(walltime_speed), so a one-minute limit ends in three seconds.
"""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from cluster_fixtures import (
    CountingRunner,
    every_fifth_failed,
    fake_worker_settings,
    job_row,
    many_jobs_and_two_unknown,
    submit_fake_job,
    wait_ended,
    wait_for,
    write_spec,
)
from dlcwatch.errors import SubmitLimitReached
from dlcwatch.executors.base import ARRAY_TASK_ID, ExecutorError, Outcome, Submission
from dlcwatch.executors.pbs.executor import PbsExecutor
from dlcwatch.jobs.spec import ArrayFolder, write_json_atomic
from dlcwatch.store import Store
from pbs_fixtures import importable_setup, pbs_settings, wait_state

pytest_plugins = ["pbs_fixtures"]


def make_executor(server, folder: Path, *, runner=None, clock=time.time, **settings) -> PbsExecutor:
    values = fake_worker_settings(folder, setup=[importable_setup()], **settings)
    return PbsExecutor(pbs_settings(**values), runner=runner or server.runner, clock=clock)


def submit_array(executor, folder: Path, first_job_id: int, specs: list[dict], **throttle) -> tuple[ArrayFolder, list]:
    array = ArrayFolder.of(folder / "jobs", first_job_id)
    for task, spec in enumerate(specs):
        write_spec(array.spec(task), **spec)
    submission = Submission(first_job_id, array.spec(ARRAY_TASK_ID), array.log(ARRAY_TASK_ID), array.path, {})
    return array, executor.submit_array(submission, len(specs), **throttle)


# ---------------------------------------------------------------------- outcomes

def test_a_job_runs_to_completed_with_its_paths_quoted(pbs_server, tmp_path):
    folder = tmp_path / "lab's \"videos\" $(touch x) `touch y` %j #1: [0]"  # what qsub or bash could misread
    folder.mkdir()
    executor = make_executor(pbs_server, folder, gpus=1, cpus=2)
    job = submit_fake_job(Store(tmp_path / "db"), executor, folder, sleep=1)
    assert job.executor_job_id.endswith(".pbsserver") and "[" not in job.executor_job_id
    assert executor.poll([job])[job.id].outcome in (Outcome.PENDING, Outcome.RUNNING)
    attributes = pbs_server.jobs(job.executor_job_id)[job.executor_job_id]
    assert attributes["Job_Name"] == f"dlcwatch-{job.id}"
    assert attributes["Resource_List"]["select"] == "1:ncpus=2:ngpus=1:mem=256mb"
    status = wait_ended(executor, job)
    assert status.outcome is Outcome.COMPLETED and status.exit_code == 0
    log = Path(job.log_path).read_text()
    assert f"fake worker spec: {job.spec_path}\n" in log and "gpus: 0\n" in log  # the one GPU PBS gave it
    assert not any(path.name in ("x", "y") for path in tmp_path.rglob("*"))


def test_a_worker_exit_code_is_failed_with_that_code(pbs_server, tmp_path):
    executor = make_executor(pbs_server, tmp_path)
    job = submit_fake_job(Store(tmp_path / "db"), executor, tmp_path, exit=75)
    status = wait_ended(executor, job)
    assert status.outcome is Outcome.FAILED and status.exit_code == 75 and status.detail == "exit code 75"


def test_a_job_past_its_walltime_or_its_memory_is_killed_for_it(pbs_server, tmp_path):
    pbs_server.configure(walltime_speed=20.0)
    store = Store(tmp_path / "db")
    slow = submit_fake_job(store, make_executor(pbs_server, tmp_path, time_limit_min=1), tmp_path, sleep=600)
    greedy = submit_fake_job(store, make_executor(pbs_server, tmp_path, mem_gb=0.1), tmp_path, sleep=60, hold_mb=300)
    executor = make_executor(pbs_server, tmp_path)
    timed_out = wait_ended(executor, slow)
    assert timed_out.outcome is Outcome.TIMEOUT and timed_out.detail == "PBS exit status -29: it used up its walltime"
    out_of_memory = wait_ended(executor, greedy)
    assert out_of_memory.outcome is Outcome.OUT_OF_MEMORY and "-27" in out_of_memory.detail
    assert "mem" in pbs_server.jobs(greedy.executor_job_id)[greedy.executor_job_id]["comment"]
    assert executor.next_resources(Outcome.OUT_OF_MEMORY, greedy.resources)["mem_mb"] == 512


def test_qdel_of_a_running_job_is_cancelled_and_cancel_after_the_end_is_no_error(pbs_server, tmp_path):
    executor = make_executor(pbs_server, tmp_path)
    job = submit_fake_job(Store(tmp_path / "db"), executor, tmp_path, sleep=300)
    wait_for(lambda: executor.poll([job])[job.id].outcome is Outcome.RUNNING, 30, "the job to run")
    pbs_server.command("qdel", job.executor_job_id)  # a person, not dlcwatch
    status = wait_ended(executor, job)
    assert status.outcome is Outcome.CANCELLED and status.detail == "deleted (qdel), killed by SIGTERM"
    executor.cancel(job)  # "Job has finished": fine
    gone = job_row(Store(tmp_path / "db"), tmp_path, "pbs", "999999.pbsserver")
    executor.cancel(gone)  # "Unknown Job Id": fine


def test_a_failed_host_requeues_the_job_which_runs_again_under_its_id(pbs_server, tmp_path):
    executor = make_executor(pbs_server, tmp_path)
    job = submit_fake_job(Store(tmp_path / "db"), executor, tmp_path, sleep=3)
    wait_for(lambda: executor.poll([job])[job.id].outcome is Outcome.RUNNING, 30, "the job to run")
    pbs_server.fail_node()
    wait_for(lambda: executor.poll([job])[job.id].outcome is Outcome.PENDING, 30, "the job back in the queue")
    status = wait_ended(executor, job)
    assert status.outcome is Outcome.COMPLETED
    assert pbs_server.jobs(job.executor_job_id)[job.executor_job_id]["run_count"] == 2


def test_a_bad_queue_is_refused_in_pbss_words(pbs_server, tmp_path):
    executor = make_executor(pbs_server, tmp_path, queue="nosuchq")
    with pytest.raises(ExecutorError, match="qsub refused job 1: Unknown queue"):
        submit_fake_job(Store(tmp_path / "db"), executor, tmp_path)
    assert executor.slots(0) == 20  # a refusal is not an outage


# ---------------------------------------------------------------------- arrays, cost, limits

def test_an_array_runs_subjob_i_on_spec_i_within_its_throttle(pbs_server, tmp_path):
    counting = CountingRunner(pbs_server.runner)
    executor = make_executor(pbs_server, tmp_path, runner=counting)
    with pytest.raises(ExecutorError, match="max_array_size = 100"):
        submit_array(executor, tmp_path, 7, [{}] * 101)
    with pytest.raises(ExecutorError, match="at least two subjobs"):
        submit_array(executor, tmp_path, 7, [{}])
    assert counting.count("qsub") == 0 and executor.max_array_tasks() == 100
    array, task_ids = submit_array(executor, tmp_path, 7, [{"exit": task, "sleep": 1} for task in range(3)], throttle=1)
    array_id = task_ids[0].split("[")[0]
    assert task_ids == [f"{array_id}[{task}].pbsserver" for task in range(3)]
    assert "#PBS -J 0-2%1\n" in (array.path / "job.pbs").read_text()
    store = Store(tmp_path / "db")
    jobs = [job_row(store, tmp_path, "pbs", task_id) for task_id in task_ids]
    most_running = 0

    def all_ended():
        nonlocal most_running
        statuses = executor.poll(jobs)
        most_running = max(most_running, sum(s.outcome is Outcome.RUNNING for s in statuses.values()))
        return statuses if len(statuses) == 3 and all(s.outcome.ended for s in statuses.values()) else None
    statuses = wait_for(all_ended, 60, "the array's subjobs to end", interval=0.5)
    assert [statuses[job.id].exit_code for job in jobs] == [0, 1, 2] and most_running == 1
    for task in range(3):
        assert f"spec: {array.spec(task)}\n" in array.log(task).read_text()


def test_a_poll_over_many_jobs_asks_qstat_once(pbs_server, tmp_path):
    counting = CountingRunner(pbs_server.runner)
    executor = make_executor(pbs_server, tmp_path, runner=counting, max_jobs_in_flight=100)
    store = Store(tmp_path / "db")
    jobs, finished, vanished = many_jobs_and_two_unknown(store, executor, tmp_path, 30,
                                                        ("999990.pbsserver", "999991.pbsserver"))
    _, task_ids = submit_array(executor, tmp_path, 90, [{}, {"exit": 75}, {}, {}, {}])
    tasks = [job_row(store, tmp_path, "pbs", task_id) for task_id in task_ids]
    everything = jobs + tasks + [finished, vanished]

    counting.calls.clear()
    statuses = executor.poll(everything)
    [qstat] = counting.calls  # one command for 37 jobs: the array asked by its own id, not 5 subjob ids
    assert qstat[:6] == ["qstat", "-f", "-F", "json", "-t", "-x"] and len(qstat) == 6 + 30 + 1 + 2
    assert statuses[finished.id].outcome is Outcome.COMPLETED and statuses[vanished.id].outcome is Outcome.LOST
    assert "known to neither qstat nor its job history" in statuses[vanished.id].detail

    def all_ended():
        counting.calls.clear()
        statuses = executor.poll(everything)
        assert [argv[0] for argv in counting.calls] == ["qstat"]
        return statuses if len(statuses) == 37 and all(s.outcome.ended for s in statuses.values()) else None
    statuses = wait_for(all_ended, 120, "37 jobs to end", interval=1.0)
    assert every_fifth_failed(jobs, statuses)
    assert [statuses[task.id].exit_code for task in tasks] == [0, 75, 0, 0, 0]


def test_the_servers_max_queued_limits_us_and_a_refusal_pauses_submission(pbs_server, tmp_path):
    pbs_server.configure(max_queued="[u:PBS_GENERIC=3]")
    now = [time.time()]
    executor = make_executor(pbs_server, tmp_path, clock=lambda: now[0])
    assert executor.slots(0) == 3 and executor.slots(1) == 2 and executor.max_array_tasks() == 3
    store = Store(tmp_path / "db")
    first = submit_fake_job(store, executor, tmp_path, sleep=300)
    others = [submit_fake_job(store, executor, tmp_path, sleep=300) for _ in range(2)]
    with pytest.raises(SubmitLimitReached, match="would exceed complex's per-user limit"):
        submit_fake_job(store, executor, tmp_path)
    assert executor.slots(0) == 0  # paused until one of ours ends
    pbs_server.command("qdel", first.executor_job_id)
    wait_for(lambda: executor.poll([first, *others]).get(first.id, None) and executor.slots(2) > 0, 30,
             "the pause to end with the first job")


def test_without_job_history_ended_jobs_are_judged_by_their_result_files(pbs_server, tmp_path):
    pbs_server.configure(history=False, walltime_speed=20.0)
    started = time.time()

    def fast_clock():  # the executor's clock runs as fast as the stand-in's walltime
        return started + 20 * (time.time() - started)
    counting = CountingRunner(pbs_server.runner)
    executor = make_executor(pbs_server, tmp_path, runner=counting, clock=fast_clock)
    store = Store(tmp_path / "db")
    slow = submit_fake_job(store, make_executor(pbs_server, tmp_path, time_limit_min=1), tmp_path, sleep=600)
    store.update_job(slow.id, resources={"time_min": 1})  # as the daemon records a job's resources
    slow = store.job(slow.id)
    wait_for(lambda: executor.poll([slow])[slow.id].outcome is Outcome.RUNNING, 30, "the slow job to run")
    job = submit_fake_job(store, executor, tmp_path, result=str(tmp_path / "job2" / "result.json"), exit=0)
    silent = submit_fake_job(store, executor, tmp_path, exit=3)  # writes no result
    _, task_ids = submit_array(executor, tmp_path, 50, [{"sleep": 1}, {"sleep": 6}])
    tasks = [job_row(store, tmp_path, "pbs", task_id) for task_id in task_ids]
    everything = [job, silent, slow, *tasks]

    def first_subjob_ended():
        statuses = executor.poll(tasks)
        return statuses if statuses[tasks[0].id].outcome.ended else None
    statuses = wait_for(first_subjob_ended, 60, "the first subjob to end", interval=0.5)
    # While its array still runs, an ended subjob is a bare X ("Subjob finished"), without exit status.
    assert statuses[tasks[1].id].outcome is Outcome.RUNNING
    assert statuses[tasks[0].id].outcome is Outcome.LOST and "kept no exit status" in statuses[tasks[0].id].detail

    def all_ended():
        statuses = executor.poll(everything)
        return statuses if len(statuses) == 5 and all(s.outcome.ended for s in statuses.values()) else None
    statuses = wait_for(all_ended, 60, "every job to end", interval=0.5)
    assert all("-x" not in argv for argv in counting.calls)  # the server said it keeps no history
    assert statuses[job.id].outcome is Outcome.COMPLETED and "no longer lists" in statuses[job.id].detail
    assert statuses[silent.id].outcome is Outcome.LOST
    assert "(the server keeps no job history)" in statuses[silent.id].detail
    assert statuses[slow.id].outcome is Outcome.TIMEOUT and "its whole walltime" in statuses[slow.id].detail
    # Once every subjob ended, the array is gone too: "Unknown Job Id".
    assert all(statuses[task.id].outcome is Outcome.LOST and "known to neither" in statuses[task.id].detail
               for task in tasks)


def test_a_server_that_stops_keeping_history_is_asked_without_x_from_then_on(pbs_server, tmp_path):
    counting = CountingRunner(pbs_server.runner)
    executor = make_executor(pbs_server, tmp_path, runner=counting)
    job = submit_fake_job(Store(tmp_path / "db"), executor, tmp_path, sleep=1)
    assert executor.poll([job])  # with -x: the server read at the start keeps history
    pbs_server.configure(history=False)  # an admin turned it off
    counting.calls.clear()
    assert executor.poll([job]) == {}  # refused -x: no news this time
    assert "-x" in counting.calls[-1] and executor.unreachable == ""
    status = wait_ended(executor, job)
    assert status.outcome is Outcome.LOST and "-x" not in counting.calls[-1]


def test_adopt_finds_jobs_submitted_before_a_stop_by_name_and_index(pbs_server, tmp_path):
    counting = CountingRunner(pbs_server.runner)
    executor = make_executor(pbs_server, tmp_path, runner=counting, extra_qsub=["-h"])  # held: they stay queued
    store = Store(tmp_path / "db")
    lone = job_row(store, tmp_path, "pbs")
    write_spec(Path(lone.spec_path))
    lone_id = executor.submit(Submission(lone.id, Path(lone.spec_path), Path(lone.log_path),
                                         Path(lone.spec_path).parent, {}))
    first, second = job_row(store, tmp_path, "pbs"), job_row(store, tmp_path, "pbs")
    array = ArrayFolder.of(tmp_path / "jobs", first.id)
    for task, job in enumerate((first, second)):
        store.update_job(job.id, spec_path=str(array.spec(task)))
        write_spec(array.spec(task))
    task_ids = executor.submit_array(Submission(first.id, array.spec(ARRAY_TASK_ID), array.log(ARRAY_TASK_ID),
                                                array.path, {}), 2)
    never = job_row(store, tmp_path, "pbs")  # recorded, never submitted
    counting.calls.clear()
    found = executor.adopt([store.job(job.id) for job in (lone, first, second, never)])
    assert found == {lone.id: lone_id, first.id: task_ids[0], second.id: task_ids[1]}
    assert [argv[0] for argv in counting.calls] == ["qselect"] * 3  # one per job name (never's too)


# ---------------------------------------------------------------------- the server goes away

def test_a_server_that_does_not_answer_means_no_news_and_fewer_questions(pbs_server, tmp_path):
    now = [time.time()]
    counting = CountingRunner(pbs_server.runner)
    executor = make_executor(pbs_server, tmp_path, runner=counting, clock=lambda: now[0], unreachable_backoff_s=30.0)
    job = submit_fake_job(Store(tmp_path / "db"), executor, tmp_path, sleep=1)
    pbs_server.set_down(True)
    try:
        assert executor.poll([job]) == {}
        assert executor.unreachable == "Connection refused; cannot connect to server pbsserver (errno=15010)"
        assert executor.slots(0) == 0
        asked = len(counting.calls)
        now[0] += 29
        assert executor.poll([job]) == {} and len(counting.calls) == asked  # within the pause: not asked
        with pytest.raises(ExecutorError, match="PBS server not answering"):
            now[0] += 2
            submit_fake_job(Store(tmp_path / "db2"), executor, tmp_path)
    finally:
        pbs_server.set_down(False)
    now[0] += 120
    assert wait_ended(executor, job).outcome is Outcome.COMPLETED and executor.unreachable == ""


def test_cancel_of_a_queued_subjob_leaves_no_exit_status(pbs_server, tmp_path):
    executor = make_executor(pbs_server, tmp_path, extra_qsub=["-h"])
    _, task_ids = submit_array(executor, tmp_path, 60, [{}, {}])
    job = job_row(Store(tmp_path / "db"), tmp_path, "pbs", task_ids[1])
    assert executor.poll([job])[job.id].outcome is Outcome.PENDING
    executor.cancel(job)
    assert wait_state(pbs_server, task_ids[1], "X")["substate"] == 92  # "Subjob finished", as PBS shows it
    status = wait_ended(executor, job)
    assert status.outcome is Outcome.LOST and "kept no exit status" in status.detail  # the daemon knows who asked
    write_json_atomic(job.result_path, {"finished": time.time(), "exit_code": 0, "videos": {}})
    assert executor.poll([job])[job.id].outcome is Outcome.COMPLETED  # a result file, where there is one, decides
