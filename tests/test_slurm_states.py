"""What SLURM's commands print, parsed, and every job state mapped; the retry policy by cause.

The sample outputs below were printed by SLURM 22.05 (Debian 12) on the test cluster."""

from __future__ import annotations

import pytest

from dlcwatch.executors.base import Outcome
from dlcwatch.executors.slurm.states import (
    STATE_OUTCOMES,
    SlurmRecord,
    config_number,
    cannot_reach,
    is_accounting_disabled,
    is_submit_limit,
    is_unknown_job,
    is_unreachable,
    message_of,
    next_resources,
    parse_config,
    parse_exit_code,
    parse_sacct,
    parse_squeue,
    status_of,
)
from dlcwatch.run import CommandResult
from slurm_fixtures import slurm_settings

SQUEUE = """\
5|COMPLETED|0|None|
11_4|COMPLETED|0|None|
11_[2-3%2]|PENDING|0|JobArrayTaskLimit|
1|FAILED|768|NonZeroExitCode|
4|FAILED|1|BadConstraints|
3|PENDING|0|JobHeldUser|
10|TIMEOUT|15|TimeLimit|
12|CANCELLED|15|None|
13|RUNNING|0|None|
"""

SACCT = """\
1|FAILED|3:0|None
1.batch|FAILED|3:0|
2|CANCELLED by 0|0:15|None
7|OUT_OF_MEMORY|0:125|OutOfMemory
8|NODE_FAIL|0:0|NodeDown
"""


def test_squeue_output_is_parsed():
    records = parse_squeue(SQUEUE)
    assert records["1"] == SlurmRecord("1", "FAILED", 3, 0, "NonZeroExitCode")
    assert records["10"] == SlurmRecord("10", "TIMEOUT", 0, 15, "TimeLimit")
    assert records["5"] == SlurmRecord("5", "COMPLETED", 0, 0, "")
    assert records["11_[2-3%2]"].reason == "JobArrayTaskLimit" and "11_4" in records
    assert parse_squeue("") == {} and parse_squeue("garbage\n") == {}


def test_sacct_output_is_parsed_without_job_steps():
    records = parse_sacct(SACCT)
    assert set(records) == {"1", "2", "7", "8"}
    assert records["2"] == SlurmRecord("2", "CANCELLED", 0, 15, "")
    assert records["7"].state == "OUT_OF_MEMORY" and records["7"].signal == 125


def test_exit_codes_and_config():
    assert parse_exit_code("75:0") == (75, 0) and parse_exit_code("0:15") == (0, 15)
    assert parse_exit_code("") == (None, None)
    config = parse_config("Configuration data as of 2026-11-24T10:00:00\nMaxArraySize            = 1001\n"
                          "MaxJobCount             = 10000\nMinJobAge               = 3600 sec\n"
                          "SchedulerParameters     = batch_sched_delay=0\n")
    assert config_number(config, "MaxArraySize") == 1001 and config_number(config, "MinJobAge") == 3600
    assert config["SchedulerParameters"] == "batch_sched_delay=0"
    assert config_number(config, "MaxSubmitJobs") is None


# Every state the issue names, and what the daemon must hear.
EXPECTED = {
    "PENDING": Outcome.PENDING, "CONFIGURING": Outcome.PENDING, "REQUEUED": Outcome.PENDING,
    "RUNNING": Outcome.RUNNING, "COMPLETING": Outcome.RUNNING, "SUSPENDED": Outcome.RUNNING,
    "RESIZING": Outcome.RUNNING,
    "COMPLETED": Outcome.COMPLETED, "FAILED": Outcome.FAILED, "CANCELLED": Outcome.CANCELLED,
    "TIMEOUT": Outcome.TIMEOUT, "OUT_OF_MEMORY": Outcome.OUT_OF_MEMORY, "NODE_FAIL": Outcome.NODE_FAIL,
    "PREEMPTED": Outcome.PREEMPTED, "BOOT_FAIL": Outcome.NODE_FAIL, "DEADLINE": Outcome.FAILED,
    "REVOKED": Outcome.LOST, "SPECIAL_EXIT": Outcome.FAILED,
}


@pytest.mark.parametrize("state", sorted(EXPECTED))
def test_every_slurm_state_has_an_outcome(state):
    assert STATE_OUTCOMES[state] is EXPECTED[state]
    status = status_of(SlurmRecord("9", state, 0, 0, ""))
    assert status.outcome is EXPECTED[state]


def test_an_unknown_state_is_never_taken_for_an_end():
    status = status_of(SlurmRecord("9", "SOMETHING_NEW", 0, 0, ""))
    assert status.outcome is Outcome.PENDING and "SOMETHING_NEW" in status.detail


def test_details_say_what_a_person_needs():
    records = parse_squeue(SQUEUE)
    failed = status_of(records["1"])
    assert failed.outcome is Outcome.FAILED and failed.exit_code == 3 and failed.detail == "FAILED, exit code 3"
    timeout = status_of(records["10"])
    assert timeout.exit_code == -15 and timeout.detail == "TIMEOUT, killed by SIGTERM"
    assert status_of(records["3"]).detail == "pending (JobHeldUser)"
    assert status_of(records["5"]).detail == "COMPLETED" and status_of(records["5"]).exit_code == 0
    assert status_of(parse_sacct(SACCT)["8"]).detail == "NODE_FAIL, NodeDown"


def test_error_messages_are_recognised():
    down = "slurm_load_jobs error: Unable to contact slurm controller (connect failure)\n"
    assert is_unreachable(down)
    # Words dlcwatch itself would write are not SLURM's: a hung command or an unreachable login node is
    # told by the runner's answer, not by matching text.
    assert not is_unreachable("sbatch timed out after 60 s") and not is_unreachable("cannot reach login over ssh")
    assert cannot_reach(CommandResult(124, timed_out=True))
    assert cannot_reach(CommandResult(255, stderr="kex_exchange_identification", unreachable=True))
    assert cannot_reach(CommandResult(1, stderr=down))
    assert not cannot_reach(CommandResult(1, stderr="sbatch: error: invalid partition specified: x"))
    assert message_of("sbatch: error: invalid partition specified: nosuch\n"
                      "sbatch: error: Batch job submission failed: Invalid partition name specified\n") == \
        "invalid partition specified: nosuch; Batch job submission failed: Invalid partition name specified"
    assert is_submit_limit("sbatch: error: AssocMaxSubmitJobLimit\nsbatch: error: Batch job submission failed: "
                           "Job violates accounting/QOS policy (job submit limit, user's size and/or time limits)")
    assert is_unknown_job("slurm_load_jobs error: Invalid job id specified")
    assert is_accounting_disabled("Slurm accounting storage is disabled\n")
    assert not is_unreachable("invalid partition specified: nosuch")


# ---------------------------------------------------------------------- next_resources

POLICY = slurm_settings(time_limit_min=60, max_time_limit_min=200, mem_gb=16.0, max_mem_gb=48.0, retry_growth=2.0,
                        cpus=4, gpus=1)


def test_a_timeout_gets_more_time_up_to_the_cap():
    first = next_resources(Outcome.TIMEOUT, {}, POLICY)
    assert first == {"time_min": 120, "mem_mb": 16384, "cpus": 4, "gpus": 1}
    second = next_resources(Outcome.TIMEOUT, first, POLICY)
    assert second["time_min"] == 200  # held at the cap, not 240
    assert next_resources(Outcome.TIMEOUT, second, POLICY) is None
    assert next_resources(Outcome.TIMEOUT, {}, slurm_settings(max_time_limit_min=0)) is None


def test_out_of_memory_gets_more_memory_up_to_the_cap():
    first = next_resources(Outcome.OUT_OF_MEMORY, {}, POLICY)
    assert first["mem_mb"] == 32768 and first["time_min"] == 60
    assert next_resources(Outcome.OUT_OF_MEMORY, first, POLICY)["mem_mb"] == 49152
    assert next_resources(Outcome.OUT_OF_MEMORY, {"mem_mb": 49152}, POLICY) is None
    # a job that asked for the cluster's default memory goes straight to the cap
    assert next_resources(Outcome.OUT_OF_MEMORY, {"mem_mb": 0}, POLICY)["mem_mb"] == 49152
    assert next_resources(Outcome.OUT_OF_MEMORY, {}, slurm_settings(mem_gb=0.0, max_mem_gb=0.0)) is None


def test_a_small_growth_still_grows():
    settings = slurm_settings(time_limit_min=10, max_time_limit_min=100, retry_growth=1.0)
    assert next_resources(Outcome.TIMEOUT, {}, settings)["time_min"] == 11


@pytest.mark.parametrize("outcome", [Outcome.NODE_FAIL, Outcome.PREEMPTED])
def test_a_node_failure_or_preemption_gets_the_same_again(outcome):
    grown = {"time_min": 120, "mem_mb": 32768, "cpus": 4, "gpus": 1}
    assert next_resources(outcome, grown, POLICY) == grown
    assert next_resources(outcome, {}, POLICY) == {"time_min": 60, "mem_mb": 16384, "cpus": 4, "gpus": 1}


@pytest.mark.parametrize("outcome", [Outcome.COMPLETED, Outcome.FAILED, Outcome.CANCELLED, Outcome.LOST,
                                     Outcome.PENDING, Outcome.RUNNING])
def test_other_outcomes_are_not_retried_from_here(outcome):
    assert next_resources(outcome, {}, POLICY) is None
