"""What Grid Engine's commands print, parsed, and every job state and qacct code mapped.

Every sample below was printed by Son of Grid Engine 8.1.9 (Debian 12's gridengine packages) on the
test cell of tests/sge_cluster.sh, on 2026-11-27: QSTAT by `qstat -xml` with jobs running, in an
error state (Eqw: -wd to a folder that does not exist), held (qsub -h) and an array of 5 with
-tc 1; QACCT_* by `qacct -j N` after the job ended (a time limit, qdel of a running job, the Eqw
job; QACCT_QDEL and QACCT_EQW keep only the lines dlcwatch reads, in qacct's order). The submit
limit message is qsub's with max_u_jobs 2; the unreachable one qstat's with sge_qmaster killed."""

from __future__ import annotations

import pytest

from dlcwatch.executors.base import Outcome
from dlcwatch.executors.sge.states import (
    STATE_OUTCOMES,
    SgeRecord,
    category_limits,
    config_limit,
    expand_tasks,
    is_no_accounting_yet,
    is_submit_limit,
    is_unknown_job,
    message_of,
    parse_global_config,
    parse_qacct,
    parse_qstat_xml,
    cannot_reach,
    status_of,
)
from dlcwatch.run import CommandResult

QSTAT = """<?xml version='1.0'?>
<job_info  xmlns:xsd="http://arc.liv.ac.uk/repos/darcs/sge/source/dist/util/resources/schemas/qstat/qstat.xsd">
  <queue_info>
    <job_list state="running">
      <JB_job_number>9</JB_job_number>
      <JAT_prio>0.60500</JAT_prio>
      <JB_name>dlcwatch-20</JB_name>
      <JB_owner>root</JB_owner>
      <state>r</state>
      <JAT_start_time>2026-11-27T14:27:07</JAT_start_time>
      <queue_name>all.q@localhost</queue_name>
      <slots>2</slots>
    </job_list>
    <job_list state="running">
      <JB_job_number>10</JB_job_number>
      <JAT_prio>0.50500</JAT_prio>
      <JB_name>dlcwatch-21</JB_name>
      <JB_owner>root</JB_owner>
      <state>r</state>
      <JAT_start_time>2026-11-27T14:27:08</JAT_start_time>
      <queue_name>all.q@localhost</queue_name>
      <slots>1</slots>
    </job_list>
    <job_list state="running">
      <JB_job_number>12</JB_job_number>
      <JAT_prio>0.50500</JAT_prio>
      <JB_name>dlcwatch-23</JB_name>
      <JB_owner>root</JB_owner>
      <state>r</state>
      <JAT_start_time>2026-11-27T14:27:08</JAT_start_time>
      <queue_name>all.q@localhost</queue_name>
      <slots>1</slots>
      <tasks>1</tasks>
    </job_list>
  </queue_info>
  <job_info>
    <job_list state="pending">
      <JB_job_number>4</JB_job_number>
      <JAT_prio>0.50500</JAT_prio>
      <JB_name>other</JB_name>
      <JB_owner>root</JB_owner>
      <state>qw</state>
      <JB_submission_time>2026-11-27T14:22:35</JB_submission_time>
      <queue_name></queue_name>
      <slots>1</slots>
    </job_list>
    <job_list state="pending">
      <JB_job_number>11</JB_job_number>
      <JAT_prio>0.50500</JAT_prio>
      <JB_name>dlcwatch-22</JB_name>
      <JB_owner>root</JB_owner>
      <state>Eqw</state>
      <JB_submission_time>2026-11-27T14:27:08</JB_submission_time>
      <queue_name></queue_name>
      <slots>1</slots>
    </job_list>
    <job_list state="pending">
      <JB_job_number>12</JB_job_number>
      <JAT_prio>0.00000</JAT_prio>
      <JB_name>dlcwatch-23</JB_name>
      <JB_owner>root</JB_owner>
      <state>qw</state>
      <JB_submission_time>2026-11-27T14:27:08</JB_submission_time>
      <queue_name></queue_name>
      <slots>1</slots>
      <tasks>2-5:1</tasks>
    </job_list>
    <job_list state="pending">
      <JB_job_number>13</JB_job_number>
      <JAT_prio>0.00000</JAT_prio>
      <JB_name>dlcwatch-24</JB_name>
      <JB_owner>root</JB_owner>
      <state>hqw</state>
      <JB_submission_time>2026-11-27T14:27:08</JB_submission_time>
      <queue_name></queue_name>
      <slots>1</slots>
    </job_list>
  </job_info>
</job_info>
"""

QACCT_TIMEOUT = """==============================================================
qname        all.q               
hostname     localhost           
group        root                
owner        root                
project      NONE                
department   defaultdepartment   
jobname      dlcwatch-20         
jobnumber    9                   
taskid       undefined
account      sge                 
priority     0                   
qsub_time    Fri Nov 27 14:27:07 2026
start_time   Fri Nov 27 14:27:07 2026
end_time     Fri Nov 27 14:27:11 2026
granted_pe   smp                 
slots        2                   
failed       37  : qmaster enforced h_rt, h_cpu, or h_vmem limit
exit_status  137                  (Killed)
ru_wallclock 4s
ru_utime     0.099s
ru_stime     0.025s
ru_maxrss    4.375KB
ru_ixrss     0.000B
ru_ismrss    0.000B
ru_idrss     0.000B
ru_isrss     0.000B
ru_minflt    15112               
ru_majflt    0                   
ru_nswap     0                   
ru_inblock   0                   
ru_oublock   24                  
ru_msgsnd    0                   
ru_msgrcv    0                   
ru_nsignals  0                   
ru_nvcsw     245                 
ru_nivcsw    90                  
cpu          0.125s
mem          0.000Bs
io           651.166KB
iow          0.000s
maxvmem      6.766MB
arid         undefined
ar_sub_time  undefined
category     -l h_rt=3,h_vmem=1G -pe smp 2
"""

QACCT_QDEL = """==============================================================
jobname      dlcwatch-21         
jobnumber    10                  
taskid       undefined
failed       100 : assumedly after job
exit_status  137                  (Killed)
ru_wallclock 2s
category     NONE
"""

QACCT_EQW = """==============================================================
jobname      dlcwatch-22         
jobnumber    11                  
taskid       undefined
failed       28  : changing into working directory
exit_status  0                   
ru_wallclock 0s
category     NONE
"""

QACCT_ARRAY = """\
==============================================================
jobname      dlcwatch-2          
jobnumber    8                   
taskid       1                   
failed       0    
exit_status  0                   
ru_wallclock 1s
category     -l gpu=1,h_rt=300,mem_free=512M -pe smp 2
==============================================================
jobname      dlcwatch-2          
jobnumber    8                   
taskid       2                   
failed       0    
exit_status  1                   
ru_wallclock 1s
category     -l gpu=1,h_rt=300,mem_free=512M -pe smp 2
==============================================================
jobname      dlcwatch-2          
jobnumber    8                   
taskid       3                   
failed       0    
exit_status  2                   
ru_wallclock 1s
category     -l gpu=1,h_rt=300,mem_free=512M -pe smp 2
"""


def test_qstat_lists_jobs_and_every_pending_task():
    records = parse_qstat_xml(QSTAT)
    assert {job_id: record.state for job_id, record in records.items()} == {
        "9": "r", "10": "r", "12.1": "r", "4": "qw", "11": "Eqw", "12.2": "qw", "12.3": "qw", "12.4": "qw",
        "12.5": "qw", "13": "hqw"}
    assert records["12.3"].name == "dlcwatch-23"
    assert parse_qstat_xml("<?xml version='1.0'?>\n<job_info>\n  <queue_info>\n  </queue_info>\n  <job_info>\n"
                           "  </job_info>\n</job_info>\n") == {}
    with pytest.raises(ValueError, match="qstat printed no XML"):
        parse_qstat_xml("error: commlib error: got select error (Connection refused)")


def test_task_lists_expand_as_qstat_writes_them():
    assert expand_tasks("4") == [4]
    assert expand_tasks("3-6:1") == [3, 4, 5, 6]
    assert expand_tasks("1,3") == [1, 3]  # seen when a task in the middle was deleted
    assert expand_tasks("1-7:2,10") == [1, 3, 5, 7, 10]
    with pytest.raises(ValueError):
        expand_tasks("undefined")


def test_qstat_states_map_to_outcomes():
    records = parse_qstat_xml(QSTAT)
    assert status_of(records["9"]).outcome is Outcome.RUNNING and status_of(records["9"]).detail == ""
    assert status_of(records["12.2"]).outcome is Outcome.PENDING
    held = status_of(records["13"])
    assert held.outcome is Outcome.PENDING and held.detail == "hqw (held)"
    error = status_of(records["11"])
    assert error.outcome is Outcome.FAILED and "qstat -j 11" in error.detail
    for state in ("dr", "Rr", "s", "S", "T", "t", "dRT"):
        assert status_of(SgeRecord("1", state=state)).outcome is Outcome.RUNNING
    assert status_of(SgeRecord("1", state="hRwq")).outcome is Outcome.PENDING
    unknown = status_of(SgeRecord("1", state="Xq"))
    assert unknown.outcome is Outcome.PENDING and "not known" in unknown.detail
    # sge_status(5): every documented state is in the table, none is guessed
    documented = "qw hqw hRwq r t Rr Rt s ts S tS T tT Rs Rts RS RtS RT RtT Eqw Ehqw EhRqw dr dt dRr dRt ds dS dT " \
                 "dRs dRS dRT"
    assert set(documented.split()) == set(STATE_OUTCOMES)


def test_qacct_time_limit_kill_is_timeout():
    [record] = parse_qacct(QACCT_TIMEOUT).values()
    assert (record.job_id, record.failed, record.exit_status, record.wallclock_s) == ("9", 37, 137, 4.0)
    status = status_of(record)
    assert status.outcome is Outcome.TIMEOUT
    assert status.detail == "failed 37: qmaster enforced h_rt, h_cpu, or h_vmem limit"
    assert category_limits(record.category) == {"h_rt": 3.0, "h_vmem": 0.0}


def test_failed_37_short_of_its_time_limit_is_a_memory_kill():
    record = SgeRecord("5", failed=37, failed_text="qmaster enforced h_rt, h_cpu, or h_vmem limit", exit_status=137,
                       wallclock_s=40.0, category="-l h_rt=7200,h_vmem=4G -pe smp 4")
    assert status_of(record).outcome is Outcome.OUT_OF_MEMORY


def test_qacct_qdel_of_a_running_job_is_cancelled():
    [record] = parse_qacct(QACCT_QDEL).values()
    status = status_of(record)
    assert status.outcome is Outcome.CANCELLED and status.exit_code == -9
    assert status.detail == "failed 100: assumedly after job, killed by SIGKILL (qdel)"


def test_qacct_of_an_eqw_job_and_of_host_failures():
    [record] = parse_qacct(QACCT_EQW).values()
    assert status_of(record).outcome is Outcome.FAILED
    assert status_of(record).detail == "failed 28: changing into working directory"
    for failed, outcome in ((25, Outcome.NODE_FAIL), (8, Outcome.NODE_FAIL), (26, Outcome.FAILED),
                            (100, Outcome.FAILED)):  # 100 without a kill: not a qdel
        assert status_of(SgeRecord("1", failed=failed, exit_status=1)).outcome is outcome


def test_qacct_array_tasks_by_task_id_and_their_exit_codes():
    records = parse_qacct(QACCT_ARRAY)
    assert sorted(records) == ["8.1", "8.2", "8.3"]
    assert [(status_of(records[f"8.{task}"]).outcome, status_of(records[f"8.{task}"]).exit_code)
            for task in (1, 2, 3)] == [(Outcome.COMPLETED, 0), (Outcome.FAILED, 1), (Outcome.FAILED, 2)]
    assert status_of(SgeRecord("1", failed=0, exit_status=137)).detail == "killed by SIGKILL"


def test_messages_say_what_happened():
    limit = "Unable to run job: job rejected: only 2 jobs are allowed per user (current job count: 2)\nExiting.\n"
    assert message_of(limit) == "job rejected: only 2 jobs are allowed per user (current job count: 2)"
    assert is_submit_limit(message_of(limit))
    assert is_unknown_job(message_of("error: job id 99 not found\n"))
    assert is_unknown_job(message_of("error: job name dlcwatch-* not found\n"))
    assert is_unknown_job('denied: job "77" does not exist')
    # qacct on a fresh cell, before any job ended (stdout: "no jobs running since startup")
    assert is_no_accounting_yet(message_of("/tmp/sge/root/dlcwatch/common/accounting: No such file or directory\n"))
    refused = CommandResult(1, stderr="Unable to run job: error: no suitable queues.\nExiting.\n")
    assert not cannot_reach(refused) and message_of(refused.stderr) == "no suitable queues."
    assert cannot_reach(CommandResult(124, stderr="qstat timed out after 5 s", timed_out=True))
    down = CommandResult(1, stderr='error: commlib error: got select error (Connection refused)\n'
                                   'error: unable to send message to qmaster using port 16444 on host "localhost": '
                                   'got send error\n')  # qstat with sge_qmaster killed
    assert cannot_reach(down)
    assert message_of(down.stderr).startswith("commlib error: got select error (Connection refused); unable to send")


def test_the_global_configuration_gives_the_limits():
    config = parse_global_config("#global:\nexecd_spool_dir              /tmp/x\nmax_aj_tasks                 75000\n"
                                 "max_u_jobs                   0\n")
    assert config_limit(config, "max_aj_tasks") == 75000 and config_limit(config, "max_u_jobs") == 0
    assert config_limit(config, "max_jobs") == 0
