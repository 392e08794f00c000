"""End-to-end cases every cluster executor goes through the same way with the daemon (SLURM, Grid
Engine, PBS): each scheduler's test module sets the scene (its config, its scheduler) and calls
these for what must then happen, whatever the scheduler.

PYTEST_DONT_REWRITE: test modules import these, so they raise their own errors.
"""

from __future__ import annotations

import time
from pathlib import Path

from cluster_fixtures import poll_until, queue_videos, tick_until, wait_for
from conftest import cli
from dlcwatch.config import load_config
from dlcwatch.daemon import Daemon
from dlcwatch.demo.synthetic import write_video
from dlcwatch.states import JobState
from dlcwatch.states import VideoState as S


def _check(condition: bool, what: str) -> None:
    if not condition:
        raise AssertionError(what)


def three_videos_in_two_jobs(tmp_path: Path, config_path: Path, scheduler: str):
    """Given a config (two videos per job) for a lab in tmp_path, write three videos and start a daemon
    until it has handed two jobs to the scheduler; return (the daemon, those jobs)."""
    for index in range(3):
        write_video(tmp_path / "videos" / f"cage {index}.mp4", frames=30, phase=index)
    daemon = Daemon(load_config(config_path), watch_events=False)
    daemon.start()
    tick_until(daemon, lambda: len(daemon.store.active_jobs()) == 2, 60, f"two {scheduler} jobs")
    return daemon, daemon.store.active_jobs()


def every_video_delivered_once(daemon, count: int, timeout: float) -> None:
    """Given a started daemon (a second one, after the first was killed mid-run), tick until it is
    idle: all count videos done, each delivered once (one 'done' event, a manifest), none run twice."""
    tick_until(daemon, daemon.idle, timeout, "every video delivered")
    videos = daemon.store.videos()
    _check([video.state for video in videos] == [S.DONE] * count, str([(v.state, v.reason) for v in videos]))
    for video in videos:
        _check([e.new_state for e in daemon.store.events(video_id=video.id)].count("done") == 1,
               f"video {video.id} delivered more than once")
        _check((Path(video.output_dir) / "manifest.json").exists(), f"no manifest for video {video.id}")
        _check(video.attempts == 1, f"video {video.id} ran {video.attempts} times")  # nothing ran twice


def time_limit_kill_retried_then_cancel_left(daemon, config_path: Path, cancel_env: dict, *, script_name: str,
                                             retry_time_line: str, kill_timeout: float) -> None:
    """Given a started daemon whose one video (id 1, 'slow.mp4') goes to a job with a one-minute limit
    that its worker outlives, with max_time_limit_min 2: the scheduler kills it for its time; the
    retry asks for two minutes (retry_time_line in its script_name) and runs; `dlcwatch cancel`
    (run with cancel_env) ends it, and the video is left failed as cancelled, not tried again."""
    def messages():
        return [event.message for event in daemon.store.events(video_id=1)]

    tick_until(daemon, lambda: any("timeout" in m for m in messages()), kill_timeout, "a time-limit kill")
    retry = next(m for m in messages() if "timeout" in m)
    _check("trying again" in retry and "a 2 min time limit" in retry, retry)
    tick_until(daemon, lambda: len(daemon.store.jobs()) == 2 and daemon.store.active_jobs(), 60, "the retry")
    [job] = daemon.store.active_jobs()
    _check(job.resources["time_min"] == 2, f"the retry asked for {job.resources}")
    script = (Path(job.spec_path).parent / script_name).read_text()
    _check(retry_time_line in script, f"{retry_time_line!r} not in the retry's script:\n{script}")
    tick_until(daemon, lambda: daemon.store.job(job.id).state is JobState.RUNNING, 60, "the retry to run")

    completed = cli("cancel", "slow.mp4", "--config", str(config_path), env=cancel_env)
    _check(completed.returncode == 0, completed.stderr)
    tick_until(daemon, lambda: daemon.store.video(1).state is S.FAILED, 60, "the cancel")
    _check("cancelled" in daemon.store.video(1).reason, daemon.store.video(1).reason)
    for _ in range(5):  # a person's cancel is left so
        daemon.tick(time.time())
    _check(daemon.store.video(1).state is S.FAILED and not daemon.store.active_jobs(), "the cancelled video came back")


def one_status_call_per_cycle(daemon, runner, status_program: str, *, running: int, cycles: int = 3) -> list:
    """Given a daemon whose jobs were all just submitted (and pend), through a counting runner: a poll
    asks status_program once, while `running` of them start (the throttle lets no more) the
    daemon sees them, and each later poll cycle is again that one call. Return the first poll's argv."""
    runner.calls.clear()
    daemon.poll(time.time())
    first = list(runner.calls)
    asked = [argv[0] for argv in first]
    _check(asked == [status_program], f"one poll ran {asked}")
    wait_for(lambda: (daemon.poll(time.time()) or True) and len(daemon.store.jobs([JobState.RUNNING])) == running,
             60, f"{running} running tasks", interval=1.1)
    total = len(daemon.store.active_jobs())
    _check(len(daemon.store.jobs([JobState.SUBMITTED])) == total - running, "more ran than the throttle allows")
    runner.calls.clear()
    for cycle in range(1, cycles + 1):
        daemon.poll(time.time() + 10 * cycle)  # past the poll interval each time
    asked = [argv[0] for argv in runner.calls]
    _check(asked == [status_program] * cycles, f"{cycles} poll cycles ran {asked}")
    return first


def gpu_jobs_wait_and_the_next_goes_to_the_cpu_place(daemon, *, place: str, value: str, script_name: str,
                                                     script_lines: tuple[str, ...], absent: str):
    """Given a daemon (one video per job, no arrays, GPU jobs, a CPU fallback to `place` = value
    after 0.05 min) on a scheduler with two GPUs: three GPU jobs go in, two run and one waits; once
    it waited past after_pending_min, the next job goes to the CPU place without GPUs (script_lines
    in its script, `absent` not) and starts, while the GPU job still waits. Return the waiting one."""
    def queue_one():
        queue_videos(daemon, 1)
        daemon.submit(time.time())

    for _ in range(3):
        queue_one()
    gpu_jobs = daemon.store.active_jobs()
    _check(len(gpu_jobs) == 3 and all(job.resources == {} for job in gpu_jobs), f"GPU jobs: {gpu_jobs}")
    poll_until(daemon, lambda: len(daemon.store.jobs([JobState.RUNNING])) == 2, 60, "two GPU jobs running", ahead_s=2)
    [waiting] = daemon.store.jobs([JobState.SUBMITTED])
    time.sleep(max(0.0, waiting.created + 3.5 - time.time()))
    daemon.poll(time.time() + 4)  # sees it still pending, past after_pending_min

    queue_one()
    cpu_job = max(daemon.store.active_jobs(), key=lambda job: job.id)
    _check(cpu_job.resources[place] == value and cpu_job.resources["gpus"] == 0, f"CPU job: {cpu_job.resources}")
    script = (Path(cpu_job.spec_path).parent / script_name).read_text()
    _check(all(line in script for line in script_lines) and absent not in script, script)
    poll_until(daemon, lambda: daemon.store.job(cpu_job.id).state is JobState.RUNNING, 60, "the CPU job running",
               ahead_s=2)
    _check(daemon.store.job(waiting.id).state is JobState.SUBMITTED, "the GPU job stopped waiting")
    return waiting


def staged_within_the_quota_and_delivered(daemon, count: int, timeout: float) -> None:
    """Given a started daemon whose cluster has its own scratch with room for one video, tick until
    idle: every video done, never more than one copied into scratch at once, each copy deleted
    there once its video was analyzed."""
    most_staged = 0

    def step():
        nonlocal most_staged
        daemon.tick(time.time())
        most_staged = max(most_staged, len(daemon.store.staged_videos()))
        return daemon.idle()
    wait_for(step, timeout, "every video analyzed on the cluster and delivered", interval=0.3)
    videos = daemon.store.videos()
    _check([video.state for video in videos] == [S.DONE] * count, str([video.reason for video in videos]))
    _check(most_staged == 1, f"{most_staged} videos in scratch at once")  # the quota held the others back
    for video in videos:
        _check((Path(video.output_dir) / "manifest.json").exists(), f"no manifest for video {video.id}")
        messages = [event.message for event in daemon.store.events(video_id=video.id)]
        _check(any(m.startswith("copied to the cluster's scratch") for m in messages), str(messages))
        _check("copy in the cluster's scratch deleted" in messages, str(messages))
