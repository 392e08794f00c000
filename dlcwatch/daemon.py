"""The one long-lived loop: tick(now) = scan → poll → deliver → submit.

Every decision reads the database and writes it back through the store, so the daemon can be
stopped at any point and started again: jobs keep running, and the next tick picks up where
the last one left off. `now` is passed in, so tests drive the loop tick by tick.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import signal
import time
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO, Callable

from dlcwatch.delivery import results as delivery
from dlcwatch.backoff import Backoff
from dlcwatch.transport.job_files import cluster_settings
from dlcwatch.transport.scratch_sync import ClusterStaging
from dlcwatch.config import ConfigError, Node, load_config
from dlcwatch.errors import TransferError
from dlcwatch.executors import Executor, ExecutorError, JobStatus, Outcome, make_executor
from dlcwatch.executors.base import ARRAY_TASK_ID, Submission
from dlcwatch.executors.cluster_schema import CLUSTER_KINDS
from dlcwatch.files import Permissions, make_private_folder
from dlcwatch.intake.admission import Intake, open_for_reading
from dlcwatch.jobs.spec import (BAD_VIDEO, ERROR, MISSING, NO_ANIMAL, OK, ArrayFolder, Filtering, JobFolder, JobSpec,
                                LabeledVideo, ModelSpec, Tracking, VideoTask, read_result)
from dlcwatch.notify.policy import Sender, enabled_channels, queue_notifications
from dlcwatch.jobs.packing import pack_by_frames
from dlcwatch.reads import Read, ReadPool, ReadsBoard, ReadStalled
from dlcwatch.delivery.remote import RemoteDestination
from dlcwatch.schema import parse_remote
from dlcwatch.sdnotify import SystemdNotifier
from dlcwatch.transport.ssh import SshHost
from dlcwatch.states import VIDEO_PENDING, JobState, VideoState
from dlcwatch.store import Job, Store, Video
from dlcwatch.intake.events import FileEvents

log = logging.getLogger("dlcwatch.daemon")

S = VideoState
# Videos in these states still need the daemon; with none left, `run --until-idle` returns.


def _describe_resources(resources: dict) -> str:
    names = {"time_min": "a {} min time limit", "mem_mb": "{} MB memory", "cpus": "{} CPUs", "gpus": "{} GPUs"}
    return ", ".join(names.get(key, key + " {}").format(value) for key, value in sorted(resources.items()))


def remote_destination(config) -> RemoteDestination | None:
    """Given the config, return where results go over ssh, or None for a local output root."""
    remote = parse_remote(config.output.root)
    if remote is None:
        return None
    host, root = remote
    return RemoteDestination(SshHost.configured(host, config.output.ssh, Path(config.staging.dir) / "ssh"), root)


def _placement(asked: dict, chosen: dict) -> str:
    """Given what videos asked for and what their job got, say how it differs, for the events."""
    if chosen == asked:
        return ""
    if chosen.get("partition") and chosen.get("partition") != asked.get("partition"):
        return f", sent to partition {chosen['partition']} without GPUs: ours have waited too long"
    return f" with {_describe_resources(chosen)}"


class Daemon:
    """Given a validated config, own the store, the intake and the executor, and run the loop."""

    def __init__(self, config, *, store: Store | None = None, executor: Executor | None = None,
                 watch_events: bool = True, config_path: str | Path | None = None,
                 open_video: Callable[[str], BinaryIO] = open_for_reading):
        self.config = config
        self.open_video = open_video  # how intake opens a video for its one full read (tests slow it down)
        self.config_path = config_path
        self.store = store or Store(config.state.database)
        # Staging holds the lab's videos and results before delivery: the service's alone.
        self.jobs_dir = make_private_folder(Path(config.staging.dir)) / "jobs"
        self.jobs_dir.mkdir(exist_ok=True)
        self.watch_events = watch_events
        self.events: FileEvents | None = None
        self.intake = self._make_intake(config)
        self.executor = executor or make_executor(config)
        self.remote = remote_destination(config)
        self.output_permissions = delivery.output_permissions(config.output)
        self.reads_board = ReadsBoard(self.store)
        self._delivering: dict[int, _Delivery] = {}
        self.deliveries = ReadPool(lambda copy: self._delivering[copy.key].run(copy),
                                   per_filesystem=config.watch.reads_per_filesystem, stall_s=config.watch.read_stall_s)
        self.sender: Sender | None = None
        self.systemd = SystemdNotifier()
        self.staging = self._make_staging(config)
        self.stop_requested = False
        self.reload_requested = False
        self._delivery_failures = 0
        self._next_poll = 0.0

    def _make_staging(self, config) -> ClusterStaging:
        quota_gb = (cluster_settings(config) or config.executor.slurm).scratch_quota_gb  # the cluster executor's
        return ClusterStaging(self.store, self.executor.files, quota_gb,
                              per_filesystem=config.watch.reads_per_filesystem, stall_s=config.watch.read_stall_s,
                              quota_setting=f"executor.{config.executor.kind}.scratch_quota_gb")

    def _make_intake(self, config) -> Intake:
        self.events = FileEvents() if self.watch_events else None
        ours = [config.output.root, config.staging.dir, Path(config.state.database).parent]
        if config.output.move_to:
            ours.append(config.output.move_to)  # delivered sources moved there are not new videos
        skip = tuple(str(Path(p).absolute()) for p in ours)
        return Intake(config.watch, self.store, events=self.events, skip_dirs=skip, open_video=self.open_video)

    # ------------------------------------------------------------------ life cycle

    def start(self, now: float | None = None) -> None:
        """Begin watching and repair what an interrupted run left half done."""
        now = time.time() if now is None else now
        self._start_watching()
        self._start_sender()
        for video in self.store.videos([S.DELIVERING]):
            self.store.set_video_state(video.id, S.ANALYZED, "delivery was interrupted; delivering again",
                                       now=now)
        self._reconcile_created(now)

    def _reconcile_created(self, now: float) -> None:
        """Settle jobs recorded but never confirmed as submitted (the daemon stopped in between):
        the executor may have them after all, and then they must not run twice. While it cannot
        be asked, they wait for the next tick."""
        created = self.store.jobs([JobState.CREATED])
        if not created:
            return
        try:
            adopted = self.executor.adopt(created)
        except ExecutorError as error:
            log.info("cannot tell yet whether %d job(s) reached %s before the last stop (%s)", len(created),
                     self.executor.name, error)
            return
        for job in created:
            if job.id in adopted:
                self.store.set_job_state(job.id, JobState.SUBMITTED, f"found in {self.executor.name} as "
                                         f"{adopted[job.id]}: submitted just before the daemon stopped", now=now,
                                         executor_job_id=adopted[job.id])
                continue
            self.store.set_job_state(job.id, JobState.FAILED, "interrupted before submission", now=now)
            for video in self._job_videos(job, [S.SUBMITTED]):
                self._retry_or_fail(video, "interrupted before submission", now, count_attempt=False)

    def _start_watching(self) -> None:
        if self.events is not None:
            for problem in self.events.start(self.intake.watched_roots()):
                log.warning("%s", problem)

    def _start_sender(self) -> None:
        if enabled_channels(self.config.notify):
            self.sender = Sender(self.config.state.database, self.config.notify)
            self.sender.start()

    def close(self) -> None:
        self.intake.close()
        self.deliveries.stop()  # a copy cut short is completed in place by the next start
        self.staging.close()
        self.reads_board.clear()
        if self.events is not None:
            self.events.stop()
        if self.sender is not None:
            self.sender.stop()
        self.executor.close()
        self.systemd.close()
        self.store.close()

    def reload(self) -> bool:
        """Read the config file again; keep the running config if the new one is invalid."""
        self.reload_requested = False
        if self.config_path is None:
            return False
        self.systemd.reloading()
        try:
            new = load_config(self.config_path)
            fixed = {"state.database": (self.config.state.database, new.state.database),
                     "executor.kind": (self.config.executor.kind, new.executor.kind)}
            for kind in CLUSTER_KINDS:  # the cluster's connection and scratch are set up once, at start
                for key in ("host", "scratch"):
                    fixed[f"executor.{kind}.{key}"] = (self.config.executor[kind][key], new.executor[kind][key])
            changed = [f"{key}: cannot change while running; restart the service instead"
                       for key, (before, after) in fixed.items() if before != after]
            if changed:
                raise ConfigError(str(self.config_path), changed)
        except ConfigError as error:
            log.error("configuration not reloaded, keeping the running one: %s", error)
            self.systemd.ready(self._summary())
            return False
        self.intake.close()  # reads in flight start again under the new settings
        if self.events is not None:
            self.events.stop()
        if self.sender is not None:
            self.sender.stop()
        self.config = new
        self.remote = remote_destination(new)
        self.output_permissions = delivery.output_permissions(new.output)
        self.intake = self._make_intake(new)
        self.executor.reconfigure(new)
        self.executor.files.forget_model()
        self.staging.close()
        self.staging = self._make_staging(new)
        self._start_watching()
        self._start_sender()
        log.info("configuration reloaded from %s", self.config_path)
        self.systemd.ready(self._summary())
        return True

    def _summary(self) -> str:
        counts = self.store.counts()
        text = ", ".join(f"{counts[state.value]} {state.value}" for state in VideoState
                         if counts.get(state.value)) or "no videos yet"
        # What `systemctl status` shows: say so when a long read is why a video is still settling.
        reading = [read for pool in self._read_pools() for read in pool.in_progress()
                   if read.total_bytes and read.done_bytes]
        if reading:
            read = reading[0]
            text += f"; {read.step} {Path(read.path).name} ({100 * read.done_bytes // read.total_bytes}%)"
            text += f" and {len(reading) - 1} more" if len(reading) > 1 else ""
        return text

    def run(self, *, until_idle: bool = False, clock=time.time, sleep=time.sleep, on_tick=None) -> int:
        """Tick until asked to stop (SIGTERM, SIGINT) or, with until_idle, until nothing is pending.

        `on_tick(daemon)`, if given, runs after every tick (the demo draws its progress bar)."""
        self._install_signal_handlers()
        self.start(clock())
        self.systemd.ready(self._summary())
        while not self.stop_requested:
            started = time.monotonic()
            if self.reload_requested:
                self.reload()
            self.tick(clock())
            if on_tick is not None:
                on_tick(self)
            # Pinged from the loop itself, so systemd restarts a daemon whose loop hangs.
            self.systemd.watchdog()
            self.systemd.status(self._summary())
            if until_idle and self.idle() and not self._notifications_pending():
                log.info("nothing pending or in flight; exiting")
                break
            remaining = self.config.daemon.tick_s - (time.monotonic() - started)
            while remaining > 0 and not self.stop_requested and not self.reload_requested:
                sleep(min(remaining, 0.2))
                remaining -= 0.2
        self.systemd.stopping()
        if self.stop_requested:
            log.info("stopping; running jobs keep running and are picked up on the next start")
        return 0

    def _notifications_pending(self) -> bool:
        """True while a message queued in this run still waits for its first try."""
        return self.sender is not None and any(item.attempts == 0 for item in self.store.pending_messages())

    def _install_signal_handlers(self) -> None:
        def request_stop(signal_number, frame):  # only sets a flag: the loop finishes its transition
            self.stop_requested = True

        def request_reload(signal_number, frame):
            self.reload_requested = True

        signal.signal(signal.SIGTERM, request_stop)
        signal.signal(signal.SIGINT, request_stop)
        signal.signal(signal.SIGHUP, request_reload)

    def idle(self) -> bool:
        counts = self.store.counts()
        return not any(counts.get(state.value) for state in VIDEO_PENDING) and not self.store.active_jobs()

    def tick(self, now: float) -> None:
        self._reconcile_created(now)
        room = self._check_staging_space(now)
        if room:
            self.intake.tick(now)
        self._record_root_problems(now)
        self.poll(now)
        self.staging.release(now)
        self.deliver(now)
        if room:
            self.submit(now)
        self._record_executor_health(now)
        queue_notifications(self.store, self.config.notify, busy=not self.idle(), now=now)
        self.reads_board.publish(self._read_pools(), now)

    def _read_pools(self) -> list[ReadPool]:
        return [self.intake.reads, self.staging.copies, self.deliveries]

    def _record_executor_health(self, now: float) -> None:
        if self.executor.unreachable:
            self.store.set_condition("executor", f"{self.executor.name} does not answer: {self.executor.unreachable}; "
                                     "jobs keep running, state is kept", now=now)
        else:
            self.store.clear_condition("executor", now=now)

    def _check_staging_space(self, now: float) -> bool:
        """Return False (and say so) while scratch is too full to take more work."""
        limit_gb = self.config.staging.min_free_gb
        free_gb = shutil.disk_usage(self.jobs_dir).free / 1e9
        if free_gb < limit_gb:
            if self.store.set_condition("staging_space", f"intake paused: {self.config.staging.dir} has "
                                        f"{free_gb:.1f} GB free, below staging.min_free_gb = {limit_gb:g}", now=now):
                log.warning("intake paused: %.1f GB free in %s", free_gb, self.config.staging.dir)
            return False
        if self.store.clear_condition("staging_space", now=now):
            log.info("intake resumed: %.1f GB free in staging", free_gb)
        return True

    def _record_root_problems(self, now: float) -> None:
        problems = self.intake.root_problems()
        for root in self.config.watch.roots:
            name = f"watch_root:{root.path}"
            if root.path in problems:
                self.store.set_condition(name, problems[root.path], now=now)
            else:
                self.store.clear_condition(name, now=now)

    # ------------------------------------------------------------------ submit

    def submit(self, now: float) -> None:
        """Pack queued videos into jobs, as many as the executor has room for.

        Videos that need more than the defaults (a retry after a timeout) share jobs only with
        videos that need the same; within that, jobs get about the same number of frames. Jobs
        of one kind go to the executor as job arrays where it has them (one call per array)."""
        slots = self.executor.slots(len(self.store.active_jobs()))
        if slots <= 0:
            return
        ready = [video for video in self.store.videos([S.QUEUED]) if not video.not_before or video.not_before <= now]
        if self._gathering(ready, now):
            return
        groups: dict[str, list[Video]] = {}
        for video in ready:
            groups.setdefault(json.dumps(video.resources, sort_keys=True), []).append(video)
        if ready and not self.staging.model_ready(self.config.model.config, self.config.behavior.model, now):
            return
        size = self.config.executor.videos_per_job
        per_array = max(1, self.executor.max_array_tasks()) if ready else 1
        for group in groups.values():
            batches = pack_by_frames(group, size, frames=lambda video: video.frames or 0)[:slots]
            staged = []
            for batch in batches:
                if self.stop_requested or not self.staging.stage(batch, now):
                    break  # scratch is full or unreachable: the rest waits here
                staged.append(batch)
            for start in range(0, len(staged), per_array):
                if self.stop_requested:
                    return
                chunk = staged[start:start + per_array]
                accepted = self._submit_job(chunk[0], now) if len(chunk) == 1 else self._submit_array(chunk, now)
                if not accepted:
                    return  # refused (a limit, a bad partition…): the rest waits for the next round
            slots -= len(staged)
            if slots <= 0 or len(staged) < len(batches):
                return

    def _gathering(self, ready: list[Video], now: float) -> bool:
        """Return True to hold queued videos back a while: more are still being checked (read outside
        the loop, one by one) and none has waited executor.gather_s, so that videos that arrived
        together go together, in full jobs and one job array."""
        if not ready or not self.store.counts().get(S.SETTLING.value):
            return False
        return now - min(video.updated for video in ready) < self.config.executor.gather_s

    def _submit_job(self, videos: list[Video], now: float) -> bool:
        resources = self.executor.choose_resources(videos[0].resources)
        job = self.store.create_job(self.executor.name, [video.id for video in videos], resources=resources, now=now)
        folder = JobFolder.of(self.jobs_dir, job.id)
        submission = self._write_spec(job, videos, folder.spec, folder.log, now)
        try:
            executor_id = self.executor.submit(submission)
        except ExecutorError as error:
            self._refused(job, videos, error, now)
            return False
        self.store.set_job_state(job.id, JobState.SUBMITTED, f"accepted by {self.executor.name} as {executor_id}"
                                 f"{_placement(videos[0].resources, resources)}", now=now, executor_job_id=executor_id)
        return True

    def _submit_array(self, batches: list[list[Video]], now: float) -> bool:
        """Submit one job per batch as the tasks of one array: their specs and logs sit together in
        their ArrayFolder, one per task index; results stay in each job's own folder."""
        jobs, array = [], None
        resources = self.executor.choose_resources(batches[0][0].resources)
        for index, videos in enumerate(batches):
            job = self.store.create_job(self.executor.name, [video.id for video in videos], resources=resources,
                                        now=now)
            array = array or ArrayFolder.of(self.jobs_dir, job.id)
            self._write_spec(job, videos, array.spec(index), array.log(index), now)
            jobs.append(job)
        submission = Submission(jobs[0].id, array.spec(ARRAY_TASK_ID), array.log(ARRAY_TASK_ID), array.path,
                                resources)
        try:
            task_ids = self.executor.submit_array(submission, len(jobs))
        except ExecutorError as error:
            for job, videos in zip(jobs, batches):
                self._refused(job, videos, error, now)
            return False
        for index, (job, task_id) in enumerate(zip(jobs, task_ids)):
            self.store.set_job_state(job.id, JobState.SUBMITTED, f"accepted by {self.executor.name} as {task_id} "
                                     f"(task {index} of {len(jobs)} in one array)"
                                     f"{_placement(batches[0][0].resources, resources)}", now=now,
                                     executor_job_id=task_id)
        return True

    def _write_spec(self, job: Job, videos: list[Video], spec_path: Path, log_path: Path, now: float) -> Submission:
        """Write the spec of a job and record where its files are (its JobFolder)."""
        folder = JobFolder.of(self.jobs_dir, job.id)
        work_dir, result_path = folder.path, folder.result
        model, files = self.config.model, self.executor.files
        # Paths as the job sees them: the same on a shared file system, in scratch otherwise.
        JobSpec(
            job_id=job.id, work_dir=files.job_path(work_dir), result=files.job_path(result_path),
            model=ModelSpec(config=files.model_config(model.config), shuffle=model.shuffle,
                            trainingsetindex=model.trainingsetindex, batch_size=model.batch_size,
                            device="cpu" if job.resources.get("gpus") == 0 else model.device,
                            multi_animal=Tracking(**dict(model.multi_animal)),
                            labeled_video=LabeledVideo(model.labeled_video, model.labeled_clip_s)),
            filter=Filtering(**dict(model.filter)), copy_videos=self.config.staging.copy_videos and not files.staged,
            behavior_model=files.behavior_model(self.config.behavior.model) or None,
            videos=[VideoTask(video.id, self.store.video(video.id).staged_path or video.path, video.frames, video.fps)
                    for video in videos],
        ).write(spec_path)
        self.store.update_job(job.id, spec_path=str(spec_path), result_path=str(result_path),
                              log_path=str(log_path), now=now)
        return Submission(job.id, spec_path, log_path, work_dir, job.resources)

    def _refused(self, job: Job, videos: list[Video], error: ExecutorError, now: float) -> None:
        self.store.set_job_state(job.id, JobState.FAILED, f"submission refused: {error}", now=now)
        for video in videos:
            self._retry_or_fail(self.store.video(video.id), f"submission refused: {error}", now, count_attempt=False)

    # ------------------------------------------------------------------ poll

    def poll(self, now: float) -> None:
        """Ask the executor about every active job at once, then act on what ended."""
        active = [job for job in self.store.active_jobs() if job.executor_job_id]
        if not active or now < self._next_poll:
            return
        self._next_poll = now + self.executor.poll_interval_s
        if not self.staging.pull(active, now):
            return
        statuses = self.executor.poll(active)
        ended = [job for job in active if job.id in statuses and statuses[job.id].outcome.ended]
        # What a job wrote just before it ended may have missed the pull above.
        if ended and not self.staging.pull(ended, now):
            return
        for job in active:
            status = statuses.get(job.id)
            if status is None:
                continue
            if status.outcome.ended and job.cancel_requested and status.outcome is not Outcome.CANCELLED:
                # e.g. a pending array task: SLURM and Grid Engine drop it without a trace, which reads as lost.
                status = JobStatus(Outcome.CANCELLED, f"by a person ({self.executor.name} reported {status.outcome.value})",
                                   status.exit_code)
            if status.outcome is Outcome.RUNNING and job.state is JobState.SUBMITTED:
                job = self.store.set_job_state(job.id, JobState.RUNNING, "running", now=now)
                for video in self._job_videos(job, [S.SUBMITTED]):
                    self.store.set_video_state(video.id, S.RUNNING, f"job {job.id} is running", now=now)
            result = read_result(job.result_path)
            # Videos a job already finished are taken now, while the rest of it still runs.
            self._collect(job, result, status, now)
            if status.outcome.ended:
                self._end_job(job, result, status, now)
        if ended:
            self.staging.forget(ended)

    def _job_videos(self, job: Job, states) -> list[Video]:
        videos = [self.store.video(video_id) for video_id in self.store.job_video_ids(job.id)]
        return [video for video in videos if video.state in states and video.job_id == job.id]

    def _collect(self, job: Job, result: dict | None, status: JobStatus, now: float) -> None:
        entries = (result or {}).get("videos", {})
        for video in self._job_videos(job, [S.SUBMITTED, S.RUNNING]):
            entry = entries.get(str(video.id))
            outcome = entry.get("status") if entry else None
            if outcome in (OK, NO_ANIMAL):
                note = f"; no behavior labels: {entry['behavior_error']}" if entry.get("behavior_error") else ""
                note += f"; {entry['message']}" if outcome == NO_ANIMAL else ""
                self.store.set_video_state(video.id, S.ANALYZED, f"analyzed in job {job.id}: {entry['frames']} "
                                           f"frames in {entry.get('seconds', 0):.1f} s{note}", now=now,
                                           not_before=None)
            elif outcome == BAD_VIDEO:
                self.store.set_video_state(video.id, S.QUARANTINED, f"quarantined: {entry['message']}; fix or "
                                           "replace the file, then run `dlcwatch retry`", now=now)
            elif outcome == MISSING:
                self.store.set_video_state(video.id, S.MISSING, entry["message"], now=now)
            elif status.outcome.ended:
                if outcome == ERROR:
                    why = entry["message"]
                else:
                    why = f"job {job.id} ended ({status.outcome.value}: {status.detail or 'no detail'}) " \
                          "before analyzing it"
                if status.outcome is Outcome.CANCELLED:
                    # A person cancelled it: leave it so, until a person asks again.
                    self.store.set_video_state(video.id, S.FAILED, f"job {job.id} was cancelled; run "
                                               "`dlcwatch retry` to analyze it again", now=now)
                    continue
                resources = self.executor.next_resources(status.outcome, job.resources)
                if resources is None:
                    self.store.set_video_state(video.id, S.FAILED, f"{why}; it already had the most "
                                               f"{status.outcome.value.replace('_', ' ')} allows in the config "
                                               "(raise the cap, then run `dlcwatch retry`)", now=now)
                else:
                    self._retry_or_fail(video, why, now, resources=resources)

    def _end_job(self, job: Job, result: dict | None, status: JobStatus, now: float) -> None:
        detail = f"{status.outcome.value}" + (f" ({status.detail})" if status.detail else "")
        if status.outcome is Outcome.CANCELLED:
            self.store.set_job_state(job.id, JobState.CANCELLED, f"cancelled: {status.detail}", now=now)
        elif result and result.get("finished"):
            self.store.set_job_state(job.id, JobState.FINISHED, f"ended: {detail}", now=now)
        else:
            self.store.set_job_state(job.id, JobState.FAILED, f"ended without a complete result: {detail}",
                                     now=now, reason=detail)
        self._remove_project_view(job)

    def _retry_or_fail(self, video: Video, why: str, now: float, *, count_attempt: bool = True,
                       resources: dict | None = None) -> None:
        settings = self.config.executor
        attempts = video.attempts if count_attempt else max(0, video.attempts - 1)
        if attempts >= settings.max_attempts:
            self.store.set_video_state(video.id, S.FAILED, f"gave up after {attempts} attempt(s); last: {why}; "
                                       "run `dlcwatch retry` once the cause is fixed", now=now, attempts=attempts)
            return
        delay = Backoff(settings.retry_backoff_s, settings.retry_backoff_max_s).delay(max(1, attempts))
        more = f" with {_describe_resources(resources)}" if resources and resources != video.resources else ""
        self.store.set_video_state(video.id, S.QUEUED, f"attempt {attempts} failed ({why}); trying again in "
                                   f"{delay:.0f} s{more}", now=now, attempts=attempts, not_before=now + delay,
                                   resources=video.resources if resources is None else resources)

    def _remove_project_view(self, job: Job) -> None:
        shutil.rmtree(JobFolder(job.folder).project, ignore_errors=True)

    # ------------------------------------------------------------------ deliver

    def deliver(self, now: float) -> None:
        """Take in finished deliveries, then start one for every analyzed video that is due.

        Copies run outside the loop (a labeled full video or a far destination takes minutes),
        at most watch.reads_per_filesystem at once per file system; the loop only starts them
        and records how they ended."""
        ended = self.deliveries.collect()
        for copy in ended:
            self._delivered(copy, now)
        tried = {copy.key for copy in ended}  # one try per video and tick, even without a backoff
        for video in self.store.videos([S.ANALYZED]):
            if self.stop_requested:
                return
            if video.id in tried or (video.not_before and video.not_before > now):
                continue
            self._deliver_one(video, now)

    def _deliver_one(self, video: Video, now: float) -> None:
        job = self.store.job(video.job_id)
        result = read_result(job.result_path) or {}
        entry = self._outputs_here(job, result.get("videos", {}).get(str(video.id), {}))
        self.store.set_video_state(video.id, S.DELIVERING, "delivering", now=now)
        self._delivering[video.id] = _Delivery(video, job, entry, result, self.config, self.remote,
                                               self.output_permissions, now)
        self.deliveries.submit(video.id, str(JobFolder(job.folder).video(video.id)), sum(_sizes(entry)))

    def _outputs_here(self, job: Job, entry: dict) -> dict:
        """Given a video's result entry, return it with its outputs' paths in our jobs folder: a job
        on a cluster's own scratch names them as that cluster sees them, and the pull brought the
        job's folder here."""
        far = self.executor.files.job_path(Path(job.folder))
        outputs = {}
        for kind, path in entry.get("outputs", {}).items():
            relative = os.path.relpath(path, far)
            outputs[kind] = path if relative.startswith("..") else str(Path(job.folder) / relative)
        return {**entry, "outputs": outputs} if "outputs" in entry else entry

    def _delivered(self, copy: Read, now: float) -> None:
        """Record how one delivery ended: done, back to the queue, or waiting for the destination."""
        work = self._delivering.pop(copy.key)
        video, entry = work.video, work.entry
        if isinstance(copy.error, delivery.OutputsGone):
            self.store.set_video_state(video.id, S.QUEUED, f"{copy.error}; analyzing it again", now=now)
            return
        if copy.error is not None:
            # Back off while the destination stays unreachable or full; never drop the results.
            error = copy.error
            self._delivery_failures += 1
            delay = Backoff(self.config.executor.retry_backoff_s, self.config.output.retry_max_s).delay(self._delivery_failures)
            why = (error.strerror if isinstance(error, OSError) else None) or str(error) or type(error).__name__
            if not isinstance(error, (TransferError, OSError, ReadStalled)):
                log.error("video %d: delivery failed unexpectedly", video.id, exc_info=error)
            self.store.set_video_state(video.id, S.ANALYZED, f"delivery failed ({why}); results kept in "
                                       f"staging, trying again in {delay:.0f} s", now=now, not_before=now + delay)
            self.store.set_condition("destination", f"cannot deliver to {self.config.output.root}: {why}", now=now)
            return
        folder, source_note = copy.result
        self._delivery_failures = 0
        self.store.clear_condition("destination", now=now)
        note = f" (keypoints only; behavior labels failed: {entry['behavior_error']})" \
            if entry.get("behavior_error") else ""
        if entry.get("status") == NO_ANIMAL:
            note += f"; {entry['message']} (its raw detections are delivered)"
        self.store.set_video_state(video.id, S.DONE, f"delivered to {folder}{note}", now=now,
                                   output_dir=str(folder), not_before=None)
        shutil.rmtree(JobFolder(work.job.folder).video(video.id), ignore_errors=True)
        if source_note:
            self.store.add_event(source_note, video_id=video.id, now=now)


@dataclass(frozen=True)
class _Delivery:
    """What one delivery needs, taken in the loop so that the copying thread reads no shared state."""

    video: Video
    job: Job
    entry: dict
    job_result: dict
    config: Node
    remote: RemoteDestination | None
    permissions: Permissions
    now: float

    def run(self, copy: Read) -> tuple[str, str]:
        """Copy the results (reporting progress to `copy`), then see to the source; return (folder, what
        was done with the source, '' for nothing). Raise OutputsGone, TransferError, OSError."""
        copy.advance("delivering")
        folder = delivery.deliver(self.video, self.job, self.entry, self.job_result, self.config.output.root,
                                  dict(self.config.model), now=self.now, remote=self.remote,
                                  outgoing=Path(self.config.staging.dir) / "outgoing",
                                  permissions=self.permissions, progress=lambda done: copy.advance(done_bytes=done))
        return folder, handle_source(self.video, self.config.output.after_delivery, self.config.output.move_to)


def _sizes(entry: dict) -> list[int]:
    """Given a video's result entry, return the sizes of its outputs still in staging."""
    sizes = []
    for path in entry.get("outputs", {}).values():
        try:
            sizes.append(os.stat(path).st_size)
        except OSError:
            pass
    return sizes


def handle_source(video: Video, action: str, move_to: str) -> str:
    """Delete or move a delivered source video as output.after_delivery says, only if it is unchanged
    since it was analyzed; return what was done (or why not) for its events, '' when it is kept."""
    if action == "keep":
        return ""
    try:
        stat = os.stat(video.path)
    except OSError as error:
        return f"source not {action}d: {error.strerror or error}"
    if (stat.st_size, stat.st_mtime_ns) != (video.size, video.mtime_ns):
        return f"source not {action}d: it changed since it was analyzed"
    try:
        if action == "delete":
            os.unlink(video.path)
            return "source deleted after delivery (output.after_delivery: delete)"
        target = Path(move_to) / video.relpath
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.move(video.path, target)
        return f"source moved to {target} after delivery"
    except OSError as error:
        log.error("video %d: could not %s the source: %s", video.id, action, error)
        return f"source not {action}d: {error.strerror or error}"
