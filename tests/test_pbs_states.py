"""What PBS's commands print, parsed, and every job state and exit status mapped.

NOT FROM A REAL PBS SERVER RUN BY THESE TESTS: none can be installed here. The samples in
tests/pbs_recorded/ were printed by real servers (OpenPBS 22.05.11, PBS Professional 2025.2) and
recorded by others; tests/pbs_recorded/README.md says where each comes from. Samples built here
(a subjob's entry, a memory kill by the cgroup hook) follow the OpenPBS source cited there, and
say so where they are made."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from dlcwatch.executors.base import Outcome
from dlcwatch.executors.pbs.states import (
    STATE_OUTCOMES,
    PbsRecord,
    array_of,
    cannot_reach,
    history_enabled,
    history_refused,
    is_gone,
    is_submit_limit,
    largest_array,
    message_of,
    other_problems,
    parse_duration,
    parse_qstat_json,
    parse_server_json,
    parse_size_kb,
    queued_limit,
    short_id,
    split_id,
    status_of,
    subjob_id,
    task_index,
    unknown_ids,
)
from dlcwatch.run import CommandResult

RECORDED = Path(__file__).with_name("pbs_recorded")


def recorded(name: str) -> str:
    return (RECORDED / name).read_text()


def test_a_recorded_finished_job_is_completed_with_what_it_used():
    records = parse_qstat_json(recorded("qstat_finished_job_openpbs_22.05.11.json"))
    [record] = records.values()
    assert record.job_id == "0.725ccdf1a5fb" and record.name == "testname" and record.state == "F"
    assert record.substate == 92 and record.exit_status == 0 and record.mem_kb == 7060 and record.walltime_s == 0
    assert record.owner == "pbsuser@725ccdf1a5fb"
    status = status_of(record)
    assert status.outcome is Outcome.COMPLETED and status.exit_code == 0


def test_the_same_job_ended_otherwise_maps_by_its_exit_status_and_substate():
    # The recorded job with the values OpenPBS sets for other endings (tests/pbs_recorded/README.md).
    data = json.loads(recorded("qstat_finished_job_openpbs_22.05.11.json"))
    job = data["Jobs"]["0.725ccdf1a5fb"]

    def ended(**changes):
        job.update(changes)
        return status_of(parse_qstat_json(json.dumps(data))["0.725ccdf1a5fb"])

    walltime = ended(Exit_status=-29, substate=93,
                     comment="Job run at Tue Oct 11 at 08:13 on (725ccdf1a5fb:ncpus=1) and exceeded resource walltime")
    assert walltime.outcome is Outcome.TIMEOUT and "walltime" in walltime.detail
    assert ended(Exit_status=-27).outcome is Outcome.OUT_OF_MEMORY
    assert ended(Exit_status=-26).outcome is Outcome.OUT_OF_MEMORY
    deleted = ended(Exit_status=271, substate=91)
    assert deleted.outcome is Outcome.CANCELLED and deleted.detail == "deleted (qdel), killed by SIGTERM"
    assert deleted.exit_code == -15
    worker = ended(Exit_status=75, substate=93)
    assert worker.outcome is Outcome.FAILED and worker.exit_code == 75 and worker.detail == "exit code 75"
    assert ended(Exit_status=-11, substate=93).outcome is Outcome.NODE_FAIL
    assert ended(Exit_status=-20).outcome is Outcome.NODE_FAIL
    assert ended(Exit_status=-12).outcome is Outcome.PREEMPTED
    refused = ended(Exit_status=-10)
    assert refused.outcome is Outcome.FAILED and "user or group" in refused.detail
    unknown = ended(Exit_status=-99)
    assert unknown.outcome is Outcome.FAILED and "does not know" in unknown.detail


def test_every_job_state_is_mapped_explicitly():
    assert set(STATE_OUTCOMES) == set("BEFHMQRSTUWX")  # qstat(1B), "The job's state"
    for state in "QHWT":
        assert status_of(PbsRecord("1.s", state)).outcome is Outcome.PENDING
    for state in "RESUB":
        assert status_of(PbsRecord("1.s", state)).outcome is Outcome.RUNNING
    assert status_of(PbsRecord("1.s", "R")).detail == ""
    held = status_of(PbsRecord("1.s", "H", comment="job held, too many failed attempts to run"))
    assert held.detail == "held (job held, too many failed attempts to run)"
    waiting = status_of(PbsRecord("1.s", "Q", comment="Not Running: Insufficient amount of resource: ngpus"))
    assert waiting.detail == "queued (Not Running: Insufficient amount of resource: ngpus)"
    assert status_of(PbsRecord("1.s", "M")).outcome is Outcome.LOST
    assert status_of(PbsRecord("1.s", "Z")).outcome is Outcome.PENDING  # unknown: waiting, never a failure


def test_an_ended_subjob_without_history_has_no_exit_status_and_no_verdict():
    # Built from src/server/stat_job.c status_subjob: a subjob with no job object of its own is
    # shown from its array, state X, substate 92, comment "Subjob finished", no Exit_status.
    faked = PbsRecord("12[3].srv", "X", substate=92, comment="Subjob finished")
    assert status_of(faked) is None  # the worker's result file decides
    # Deleted while queued, no history kept: the same (the daemon knows when a person asked).
    assert status_of(PbsRecord("12[4].srv", "X", substate=92)) is None
    # With history, deleted while queued: terminated, no exit status.
    assert status_of(PbsRecord("13.srv", "F", substate=91)).outcome is Outcome.CANCELLED


def test_a_kill_by_signal_is_judged_by_what_the_job_used():
    # Before OpenPBS 22.05 (no -29/-27) and with the cgroup hook (the kernel kills): 256 + signal.
    cgroup = PbsRecord("1.s", "F", substate=93, exit_status=265, diagnosis='{"node3":"Cgroup mem limit exceeded"}')
    assert status_of(cgroup).outcome is Outcome.OUT_OF_MEMORY and status_of(cgroup).exit_code == -9
    at_mem = PbsRecord("1.s", "F", substate=93, exit_status=265, mem_kb=2_097_200, mem_limit_kb=2_097_152)
    assert status_of(at_mem).outcome is Outcome.OUT_OF_MEMORY
    at_walltime = PbsRecord("1.s", "F", substate=93, exit_status=271, walltime_s=3601, walltime_limit_s=3600)
    assert status_of(at_walltime).outcome is Outcome.TIMEOUT
    other = PbsRecord("1.s", "F", substate=93, exit_status=265, walltime_s=10, walltime_limit_s=3600)
    assert status_of(other).outcome is Outcome.FAILED and status_of(other).detail == "killed by SIGKILL"


def test_ids_of_jobs_arrays_and_subjobs():
    assert split_id("123[4].pbs01.example.org") == ("123", 4, False, ".pbs01.example.org")
    assert split_id("123[].srv") == ("123", None, True, ".srv")
    assert split_id("123") == ("123", None, False, "")
    assert subjob_id("123[].srv", 0) == "123[0].srv" and array_of("123[7].srv") == "123[].srv"
    assert array_of("123.srv") is None and task_index("123[7].srv") == 7 and task_index("123.srv") is None
    assert short_id("123[7].pbs01.example.org") == "123[7]"
    with pytest.raises(ValueError):
        subjob_id("123.srv", 1)
    with pytest.raises(ValueError):
        split_id("srv.123")


def test_unknown_ids_a_refused_history_and_an_outage_are_told_apart():
    stderr = "qstat: Unknown Job Id 999.pbsserver\nqstat: Unknown Job Id 12[].pbsserver\n"
    assert unknown_ids(stderr) == {"999", "12[]"} and other_problems(stderr) == ""
    assert history_refused("qstat: PBS is not configured to maintain job history 12.pbsserver\n")
    down = CommandResult(255, recorded("qstat_server_down_openpbs_22.05.11.stdout"),
                         recorded("qstat_server_down_openpbs_22.05.11.stderr"))
    assert parse_qstat_json(down.stdout) == {}  # the prologue alone, without Jobs
    assert cannot_reach(down) and message_of(down.stderr) == \
        "Connection refused; cannot connect to server 6cfab3a0b8ac (errno=15010)"
    assert other_problems(down.stderr).startswith("Connection refused")
    no_route = CommandResult(255, recorded("qstat_no_route_pbspro_2025.2.stdout"),
                             recorded("qstat_no_route_pbspro_2025.2.stderr"))
    assert cannot_reach(no_route)
    assert cannot_reach(CommandResult(124, stderr="qstat timed out after 5 s", timed_out=True))
    assert not cannot_reach(CommandResult(170, stderr="qsub: Unknown queue\n"))
    with pytest.raises(ValueError, match="no JSON"):
        parse_qstat_json("qstat: illegally formed job identifier: x")


def test_refusals_and_what_qdel_takes_as_already_ended():
    assert is_submit_limit(message_of("qsub: would exceed complex's per-user limit\n"))
    assert is_submit_limit("Maximum number of jobs for user lab already in complex")
    assert not is_submit_limit("Array job exceeds server or queue size limit")
    assert not is_submit_limit("Unknown queue")
    for said in ("qdel: Job has finished 12.srv", "qdel: Unknown Job Id 12.srv",
                 "qdel: Request invalid for state of job 12.srv"):
        assert is_gone(message_of(said))
    assert not is_gone("qdel: Unauthorized Request 12.srv")


def test_the_server_attributes_give_history_and_limits():
    text = json.dumps({"timestamp": 1, "pbs_version": "23.06.06", "pbs_server": "srv", "Server": {"srv": {
        "server_state": "Active", "job_history_enable": "True", "max_array_size": 500,
        "max_queued": "[u:PBS_GENERIC=200],[u:lab=50],[o:PBS_ALL=1000]"}}})
    server = parse_server_json(text)
    assert history_enabled(server) is True and largest_array(server) == 500
    assert queued_limit(server, "lab") == 50 and queued_limit(server, "other") == 200
    plain = {"server_state": "Active"}
    assert history_enabled(plain) is False and largest_array(plain) == 10000 and queued_limit(plain, "lab") == 0
    assert history_enabled({}) is None and parse_server_json("not json") == {}
    assert queued_limit({"max_queued": "[o:PBS_ALL=30]"}, "lab") == 30


def test_durations_and_sizes_as_pbs_writes_them():
    assert parse_duration("01:30:00") == 5400 and parse_duration(90) == 90 and parse_duration("90") == 90
    assert parse_duration(None) is None and parse_duration("1234:56:78.5") == 1234 * 3600 + 56 * 60 + 78.5
    assert parse_size_kb("7060kb") == 7060 and parse_size_kb("16gb") == 16 * 1024 ** 2
    assert parse_size_kb("512mb") == 512 * 1024 and parse_size_kb("2048") == 2 and parse_size_kb("0b") == 0
    assert parse_size_kb("a lot") is None
