"""The daemon with `executor: pbs` against a stand-in PBS server (tests/pbs_standin.py): real workers
with the tiny model in a job array and a restarted daemon, a walltime kill retried with more time,
a memory kill retried with more memory, a failed host, `dlcwatch cancel`, 200 videos polled with one
qstat per cycle, the CPU fallback, and the remote mode (commands over ssh to a login node, videos
staged into the cluster's scratch within a quota).

NOT A REAL PBS SERVER: none can be installed here. The stand-in replays the formats OpenPBS
documents and prints (tests/pbs_recorded/README.md) and really runs the job scripts, so the worker,
the daemon and delivery are real; what PBS itself would do is the stand-in's reading of its
documentation and source. The stand-in's walltime runs 20 times faster than the clock where a test
says so (walltime_speed), so a one-minute limit ends in three seconds.
"""

import sys
import time
from pathlib import Path

import pytest

import sshd
from cluster_fixtures import (
    CountingRunner,
    placeholder_model,
    poll_until,
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
    staged_within_the_quota_and_delivered,
    time_limit_kill_retried_then_cancel_left,
)
from conftest import cli, needs_dlc
from dlcwatch.config import load_config
from dlcwatch.daemon import Daemon
from dlcwatch.demo.synthetic import write_video
from dlcwatch.executors.pbs.executor import PbsExecutor
from dlcwatch.states import JobState
from dlcwatch.states import VideoState as S
from pbs_fixtures import importable_setup

pytest_plugins = ["pbs_fixtures"]


def pbs_config(tmp_path, model, videos_per_job=2, **pbs):
    return write_cluster_config(tmp_path, model, "pbs", videos_per_job, setup=[importable_setup()], **pbs)


@pytest.fixture
def pbs_env(pbs_server, monkeypatch):
    """The stand-in's commands on PATH, as on a login node (the daemon's executor and `dlcwatch cancel` find them)."""
    monkeypatch.setenv("PATH", pbs_server.env["PATH"])
    return pbs_server


def holding_python(folder: Path, megabytes: int) -> Path:
    """A stand-in worker that holds megabytes of memory for a second, then reports its first video analyzed."""
    path = folder / "holding-python"
    path.write_text(f"""#!{sys.executable}
import json, os, sys, time
held = bytearray({megabytes} * 1024 * 1024)
for offset in range(0, len(held), 4096):
    held[offset] = 1
time.sleep(1.5)
spec = json.load(open(sys.argv[3]))
video = spec["videos"][0]
os.makedirs(os.path.dirname(spec["result"]), exist_ok=True)
entry = {{"status": "ok", "frames": video["frames"], "seconds": 0.1, "scorer": "fake", "path": video["path"]}}
json.dump({{"finished": time.time(), "exit_code": 0, "videos": {{str(video["id"]): entry}}}}, open(spec["result"], "w"))
""")
    path.chmod(0o755)
    return path


@needs_dlc
def test_real_workers_in_an_array_and_a_restarted_daemon_deliver_each_video_once(pbs_env, tiny_model, tmp_path):
    config_path = pbs_config(tmp_path, tiny_model, mem_gb=4.0)  # DeepLabCut's worker peaks at about 1.3 GB
    first, jobs = three_videos_in_two_jobs(tmp_path, config_path, "PBS")
    # Both jobs went to PBS as the two subjobs of one array (one qsub call), numbered from 0.
    [array] = {job.executor_job_id.split("[")[0] for job in jobs}
    assert sorted(job.executor_job_id for job in jobs) == [f"{array}[0].pbsserver", f"{array}[1].pbsserver"]
    assert all(job.executor == "pbs" for job in jobs)
    script = (Path(jobs[0].spec_path).parent / "job.pbs").read_text()
    assert "#PBS -l select=1:ncpus=1:ngpus=1:mem=4gb\n" in script and "#PBS -J 0-1\n" in script
    first.close()  # the daemon dies; PBS keeps the jobs

    second = Daemon(load_config(config_path), watch_events=False)
    second.start()
    try:
        every_video_delivered_once(second, 3, 300)
        logs = [Path(job.log_path).read_text() for job in jobs]
        assert all("DeepLabCut 3.0.2" in text for text in logs), logs[0][-2000:]  # the real worker's own log
        ended = [e.message for e in second.store.events() if e.job_id and e.new_state == "finished"]
        assert len(ended) == 2 and all("no longer lists" not in message for message in ended), ended  # qstat -x knew
    finally:
        second.close()


def test_a_walltime_kill_is_retried_with_more_time_and_a_cancel_is_left_cancelled(pbs_env, tmp_path):
    pbs_env.configure(walltime_speed=20.0)  # the one-minute limit ends in three seconds
    config_path = pbs_config(tmp_path, placeholder_model(tmp_path), videos_per_job=1, time_limit_min=1,
                             max_time_limit_min=2, gpus=0, python=str(sleeping_python(tmp_path)))
    write_video(tmp_path / "videos" / "slow.mp4", frames=20)
    daemon = Daemon(load_config(config_path), watch_events=False)
    daemon.start()
    try:
        time_limit_kill_retried_then_cancel_left(daemon, config_path, {"PATH": pbs_env.env["PATH"]},
                                                 script_name="job.pbs", retry_time_line="#PBS -l walltime=00:02:00\n",
                                                 kill_timeout=60)
        [first, retry] = sorted(daemon.store.jobs(), key=lambda job: job.id)
        assert "PBS exit status -29: it used up its walltime" in first.reason
        assert pbs_env.jobs(retry.executor_job_id)[retry.executor_job_id]["substate"] == 91  # qdel: terminated
    finally:
        daemon.close()


def test_a_memory_kill_is_retried_with_more_memory_and_a_failed_host_costs_no_attempt(pbs_env, tmp_path):
    # 150 MB in a job that asks for 102 MB: PBS (MoM with $enforce mem) kills it, Exit_status -27.
    config = load_config(pbs_config(tmp_path, placeholder_model(tmp_path), videos_per_job=1, gpus=0, mem_gb=0.1,
                                    max_mem_gb=0.5, python=str(holding_python(tmp_path, 150))))
    daemon = Daemon(config, watch_events=False)
    try:
        queue_videos(daemon, 1)
        daemon.submit(time.time())

        def messages():
            return [event.message for event in daemon.store.events(video_id=1)]
        poll_until(daemon, lambda: any("out_of_memory" in m for m in messages()), 60, "a memory kill", ahead_s=2)
        retry = next(m for m in messages() if "out_of_memory" in m)
        assert "PBS exit status -27" in retry and "trying again" in retry
        daemon.submit(time.time() + 2)  # as far ahead as the polls went; the retry backoff is 0 here
        [job] = daemon.store.active_jobs()
        assert job.resources["mem_mb"] == 204
        assert "mem=204mb" in (Path(job.spec_path).parent / "job.pbs").read_text()
        poll_until(daemon, lambda: daemon.store.job(job.id).state is JobState.RUNNING, 60, "the retry to run",
                   ahead_s=2)
        pbs_env.fail_node()  # its host fails: PBS requeues it under the same id and runs it again
        poll_until(daemon, lambda: daemon.store.video(1).state is S.ANALYZED, 60, "the video analyzed", ahead_s=2)
        assert pbs_env.jobs(job.executor_job_id)[job.executor_job_id]["run_count"] == 2
        assert daemon.store.video(1).attempts == 2  # the memory kill counted; the failed host did not
    finally:
        daemon.close()


def test_a_queued_subjob_cancelled_leaves_no_exit_status_and_is_still_left_cancelled(pbs_env, tmp_path):
    # Held (qsub -h): they stay queued. A subjob deleted while queued gets no exit status, no
    # matter the history; the daemon knows a person asked.
    config_path = pbs_config(tmp_path, placeholder_model(tmp_path), videos_per_job=1, gpus=0, extra_qsub=["-h"],
                             python=str(sleeping_python(tmp_path)))
    for phase, name in enumerate(("held 1.mp4", "held 2.mp4")):
        write_video(tmp_path / "videos" / name, frames=20, phase=phase)
    daemon = Daemon(load_config(config_path), watch_events=False)
    daemon.start()
    try:
        tick_until(daemon, lambda: len(daemon.store.active_jobs()) == 2, 60, "two PBS subjobs")
        job = next(job for job in daemon.store.active_jobs() if daemon.store.job_video_ids(job.id) == [1])
        assert "[" in job.executor_job_id
        completed = cli("cancel", "held 1.mp4", "--config", str(config_path), env={"PATH": pbs_env.env["PATH"]})
        assert completed.returncode == 0, completed.stderr
        tick_until(daemon, lambda: daemon.store.video(1).state is S.FAILED, 30, "the cancel")
        assert daemon.store.job(job.id).state is JobState.CANCELLED and "cancelled" in daemon.store.video(1).reason
        assert "Exit_status" not in pbs_env.jobs(job.executor_job_id)[job.executor_job_id]
        assert daemon.store.video(2).state is S.SUBMITTED  # the other subjob waits on
    finally:
        pbs_env.command("qdel", *{j.executor_job_id.split("[")[0] + "[].pbsserver"
                                  for j in daemon.store.active_jobs()}, check=False)
        daemon.close()


def test_200_videos_go_as_arrays_within_max_array_size_and_one_poll_asks_qstat_once(pbs_server, tmp_path):
    # The stand-in's max_array_size is 100: the 150 asked for become arrays of 100.
    config = load_config(pbs_config(tmp_path, placeholder_model(tmp_path), videos_per_job=1, gpus=0,
                                    max_jobs_in_flight=250, array_tasks=150, array_throttle=2,
                                    python=str(sleeping_python(tmp_path))))
    runner = CountingRunner(pbs_server.runner)
    daemon = Daemon(config, executor=PbsExecutor(config.executor.pbs, runner=runner), watch_events=False)
    try:
        queue_videos(daemon, 200)
        daemon.submit(time.time())
        assert runner.count("qsub") == 2
        jobs = daemon.store.active_jobs()
        assert len(jobs) == 200 and all(job.state is JobState.SUBMITTED for job in jobs)
        by_array: dict[str, list[int]] = {}
        for job in jobs:
            array, _, index = job.executor_job_id.partition("[")
            by_array.setdefault(array, []).append(int(index.split("]")[0]))
        assert sorted(sorted(indexes) for indexes in by_array.values()) == [list(range(100))] * 2
        scripts = sorted(tmp_path.glob("staging/jobs/array*/job.pbs"))
        assert len(scripts) == 2 and all("#PBS -J 0-99%2\n" in path.read_text() for path in scripts)
        # All 200 are queued; two subjobs run at a time per array (max_run_subjobs).
        first_poll = one_status_call_per_cycle(daemon, runner, "qstat", running=4)
        [qstat] = first_poll
        assert len([word for word in qstat if "[]" in word]) == 2 and len(qstat) == 6 + 2  # the arrays, not 200 ids
    finally:
        arrays = {job.executor_job_id.split("[")[0] + "[].pbsserver" for job in daemon.store.active_jobs()}
        if arrays:
            pbs_server.command("qdel", *sorted(arrays), check=False)
        daemon.close()


def test_jobs_go_to_the_cpu_queue_while_gpu_jobs_wait(pbs_server, tmp_path):
    # Two GPUs: two GPU jobs run, the third waits ("Insufficient amount of resource: ngpus"); once it
    # has waited past after_pending_min, the next job goes to the CPU queue without GPUs and starts.
    config = load_config(pbs_config(tmp_path, placeholder_model(tmp_path), videos_per_job=1, gpus=1, array_tasks=1,
                                    python=str(sleeping_python(tmp_path)),
                                    cpu_fallback={"queue": "cpuq", "after_pending_min": 0.05, "cpus": 1,
                                                  "time_limit_min": 5}))
    daemon = Daemon(config, executor=PbsExecutor(config.executor.pbs, runner=pbs_server.runner), watch_events=False)

    try:
        waiting = gpu_jobs_wait_and_the_next_goes_to_the_cpu_place(
            daemon, place="queue", value="cpuq", script_name="job.pbs",
            script_lines=("#PBS -q cpuq\n", "#PBS -l walltime=00:05:00\n", "#PBS -l select=1:ncpus=1:mem=512mb\n"),
            absent="ngpus")
        assert "ngpus" in pbs_server.jobs(waiting.executor_job_id)[waiting.executor_job_id]["comment"]
    finally:
        ours = [job.executor_job_id for job in daemon.store.active_jobs() if job.executor_job_id]
        if ours:
            pbs_server.command("qdel", *ours, check=False)
        daemon.close()


@needs_dlc
def test_over_ssh_videos_are_staged_to_scratch_within_its_quota_and_analyzed_there(pbs_server, tiny_model, tmp_path):
    # The "login node" is a real sshd on 127.0.0.1; PBS's commands are there in commands_dir (as
    # /opt/pbs/bin often is), not on this side's PATH, so every command that works went over ssh.
    with sshd.serving(tmp_path / "sshd") as login:
        sizes = []
        for index in range(2):
            path = tmp_path / "videos" / f"cage {index} 'a'.mp4"
            write_video(path, frames=30, phase=index)
            sizes.append(path.stat().st_size)
        config_path = pbs_config(tmp_path, tiny_model, videos_per_job=1, gpus=0, mem_gb=4.0,
                                 host=f"{login.user}@127.0.0.1",
                                 ssh={"identity_file": str(login.client_key), "port": login.port},
                                 commands_dir=str(pbs_server.bin), scratch=str(tmp_path / "cluster scratch"),
                                 scratch_quota_gb=1.5 * max(sizes) / 1e9)  # room for one video at a time
        scratch = tmp_path / "cluster scratch"
        daemon = Daemon(load_config(config_path), watch_events=False)
        daemon.start()
        try:
            staged_within_the_quota_and_delivered(daemon, 2, 300)
            videos = daemon.store.videos()
            job = daemon.store.job(videos[0].job_id)
            assert job.executor_job_id.endswith(".pbsserver") and Path(job.spec_path).read_text()
            assert str(scratch) in pbs_server.jobs(job.executor_job_id)[job.executor_job_id]["Submit_arguments"]
            assert [p.name for p in (scratch / "videos").iterdir() if not p.name.startswith(".")] == []
        finally:
            daemon.close()
