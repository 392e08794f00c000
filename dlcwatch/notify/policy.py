"""What the daemon tells people, and when.

The daemon's tick only *queues* messages in the database's outbox (cheap, in its transaction
with the videos it covers). A sender thread with its own connection sends them; a channel that
fails is tried again later with backoff. So a slow or dead mail server never slows the pipeline,
and nothing queued is lost across restarts.

- alert: a video needs a person (quarantined, missing, or failed after its retries) — sent at once.
- alert, too: a problem that stops the pipeline (destination unreachable, scratch full, a watch
  root gone) has lasted `alert_after_s`.
- batch_done: everything that finished while work was in flight, once the pipeline is idle (or
  at the latest `batch_window_s` after the first of them finished).
"""

from __future__ import annotations

import logging
import threading
import time
from pathlib import Path

from dlcwatch.backoff import Backoff
from dlcwatch.config import parse_clock_time
from dlcwatch.notify import CHANNELS, Message, send_all
from dlcwatch.states import VIDEO_NEEDS_A_PERSON, VIDEO_PENDING, VIDEO_TERMINAL, VideoState
from dlcwatch.status import format_duration
from dlcwatch.store import Store, Video

log = logging.getLogger("dlcwatch.notify.policy")

S = VideoState
MAX_ATTACHMENTS = 5


def enabled_channels(settings) -> list[str]:
    return [channel for channel in CHANNELS if settings[channel]["enabled"]]


def queue_notifications(store: Store, settings, *, busy: bool, now: float) -> None:
    """Given the store and the notify settings, queue the alerts and batch messages now due."""
    channels = enabled_channels(settings)
    if not channels:
        return
    attention = store.unreported(VIDEO_NEEDS_A_PERSON, "alerted")
    if attention:
        store.queue_message(alert_message(attention).to_dict(), channels, mark="alerted",
                            video_ids=[video.id for video in attention], now=now)
    for condition in store.conditions():
        if condition["alerted"] is None and now - condition["since"] >= settings.alert_after_s:
            message = Message(kind="alert", title="dlcwatch needs attention",
                              summary=f"{condition['message']} (for {format_duration(now - condition['since'])}).",
                              fields={"problem": condition["name"]})
            store.queue_message(message.to_dict(), channels, mark="alerted", video_ids=[], now=now)
            store.mark_condition_alerted(condition["name"], now=now)
    due = digest_due(settings.daily_digest_at, store.last_message_at("digest"), now)
    if due:
        store.queue_message(digest_message(store, now).to_dict(), channels, mark="reported", video_ids=[], now=now)
    finished = store.unreported(VIDEO_TERMINAL, "reported")
    if finished and (not busy or now - min(video.updated for video in finished) >= settings.batch_window_s):
        store.queue_message(batch_message(finished).to_dict(), channels, mark="reported",
                            video_ids=[video.id for video in finished], now=now)


def digest_due(at: str, last: float | None, now: float) -> bool:
    """Given the configured HH:MM, when the last digest went out and now, return True if one is due."""
    clock = parse_clock_time(at) if at else None
    if clock is None:
        return False
    today = time.localtime(now)
    scheduled = time.mktime((today.tm_year, today.tm_mon, today.tm_mday, clock[0], clock[1], 0, 0, 0, -1))
    return now >= scheduled and (last is None or last < scheduled)


def digest_message(store: Store, now: float) -> Message:
    """Return the summary of the last 24 hours."""
    since = now - 86400
    finished = {state.value: store.count_events(state, since=since) for state in VIDEO_TERMINAL}
    counts = store.counts()
    pending = sum(counts.get(state.value, 0) for state in VIDEO_PENDING)
    problems = [f"{c['message']} (for {format_duration(now - c['since'])})" for c in store.conditions()]
    waiting = [f"{Path(video.path).name} ({video.state.value}): {video.reason}"
               for video in store.videos(VIDEO_NEEDS_A_PERSON, order="recent", limit=10)]
    summary = f"Last 24 hours: {finished['done']} video(s) delivered; {pending} pending now."
    if problems:
        summary += " Problems: " + "; ".join(problems) + "."
    fields = {state: str(n) for state, n in finished.items() if n}
    fields["pending"] = str(pending)
    return Message(kind="digest", title="daily summary", summary=summary, lines=waiting, fields=fields)


def alert_message(videos: list[Video]) -> Message:
    """Given videos that need a person, return one alert about all of them."""
    title = (f"{len(videos)} videos need attention" if len(videos) > 1
             else f"{Path(videos[0].path).name} needs attention")
    return Message(
        kind="alert", title=title,
        summary="These videos were not analyzed. Fix the cause, then run `dlcwatch retry VIDEO`.",
        lines=[f"{Path(video.path).name} ({video.state.value}): {video.reason}" for video in videos],
        fields={"videos": str(len(videos))})


def batch_message(videos: list[Video]) -> Message:
    """Given videos that finished, return the 'batch done' summary."""
    by_state: dict[str, list[Video]] = {}
    for video in videos:
        by_state.setdefault(video.state.value, []).append(video)
    done = by_state.get(S.DONE.value, [])
    frames = sum(video.frames or 0 for video in done)
    wall = max(video.updated for video in videos) - min(video.created for video in videos)
    folders = sorted({str(Path(video.output_dir).parent) for video in done if video.output_dir})
    summary = f"{len(done)} of {len(videos)} video(s) analyzed and delivered ({frames:,} frames)."
    if folders:
        summary += f" Results are in {folders[0]}" + (f" and {len(folders) - 1} other folder(s)." if len(folders) > 1
                                                       else ".")
    lines = [f"{Path(video.path).name} ({video.state.value}): {video.reason}"
             for video in videos if video.state is not S.DONE]
    lines += [f"{Path(video.path).name}: done{_delivery_note(video)}" for video in done]
    attachments = []
    for video in done:
        if video.output_dir and len(attachments) < MAX_ATTACHMENTS:
            attachments += sorted(Path(video.output_dir).glob("*_qc.png"))[:1]
    fields = {state: str(len(items)) for state, items in by_state.items()}
    fields.update({"frames": f"{frames:,}", "wall time": format_duration(wall)})
    failures = len(videos) - len(done)
    title = f"{len(done)} video(s) done" + (f", {failures} not analyzed" if failures else "")
    return Message(kind="batch_done", title=title, summary=summary, lines=lines, fields=fields,
                   attachments=attachments)


def _delivery_note(video: Video) -> str:
    """Given a done video, return what its delivery said beyond where the results went (e.g. that no
    animal was found, or that behavior labels failed), so a person reading the batch notices."""
    prefix = f"delivered to {video.output_dir}"
    return video.reason[len(prefix):] if video.output_dir and video.reason.startswith(prefix) else ""


class Sender:
    """A thread that sends what the outbox holds, with its own database connection."""

    def __init__(self, database: str | Path, settings, *, interval_s: float = 1.0):
        self.database = database
        self.settings = settings
        self.interval_s = interval_s
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        self._thread = threading.Thread(target=self._loop, name="dlcwatch-notify", daemon=True)
        self._thread.start()

    def stop(self, timeout_s: float = 2.0) -> None:
        """Stop after the message in hand; what is left stays in the outbox for the next start."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout_s)

    def _loop(self) -> None:
        store = Store(self.database)
        try:
            while not self._stop.is_set():
                try:
                    send_due(store, self.settings, now=time.time(), stop=self._stop)
                except Exception:  # noqa: BLE001 - the sender must outlive any bug in one message
                    log.exception("notification sender failed; trying again")
                self._stop.wait(self.interval_s)
        finally:
            store.close()


def send_due(store: Store, settings, *, now: float, stop: threading.Event | None = None) -> None:
    """Send every outbox message that is due, to the channels it still lacks."""
    for item in store.due_messages(now):
        if stop is not None and stop.is_set():
            return
        message = Message.from_dict(item.message)
        channel_settings = {channel: dict(settings[channel], enabled=channel in item.channels)
                            for channel in CHANNELS}
        results = send_all(message, channel_settings)
        failed = {channel: error for channel, error in results.items() if error}
        delay = Backoff(settings.retry_interval_s, settings.retry_max_s).delay(item.attempts + 1)
        store.record_sending(item.id, failed, now + delay, now=now)
        if failed:
            log.warning("notification %d (%s) not sent to %s; trying again in %.0f s", item.id, message.title,
                        ", ".join(sorted(failed)), delay)
        else:
            log.info("notification %d sent: %s", item.id, message.title)

