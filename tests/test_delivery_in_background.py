"""Deliveries run outside the main loop: a copy that is slow or hangs never holds the loop, a copy
without progress is given up and tried again, and a stop does not wait for one.

A slow or hung destination cannot be had here: the copy is held by the test (the one stand-in,
wrapping the real copy); the daemon, the store and the files are real."""

from __future__ import annotations

import threading
import time

import pytest

from conftest import write_config
from dlcwatch.delivery import results as delivery
from dlcwatch.config import load_config
from dlcwatch.daemon import Daemon
from dlcwatch.files import write_json_atomic
from dlcwatch.jobs.spec import JobFolder
from dlcwatch.states import VideoState as S
from dlcwatch.status import status_data


@pytest.fixture
def held_copies(monkeypatch):
    """Every delivered file's copy waits until `released` is set (at most 60 s)."""
    released = threading.Event()
    waiting = threading.Event()
    real_copy = delivery.copy_verified

    def held(source, destination, **options):
        waiting.set()
        released.wait(60)
        return real_copy(source, destination, **options)

    monkeypatch.setattr(delivery, "copy_verified", held)
    return released, waiting


def analyzed_video(daemon: Daemon, tmp_path, name="mouse.mp4"):
    """Record a video whose job finished and left its keypoints in staging; return it."""
    store = daemon.store
    source = tmp_path / "videos" / name
    source.write_bytes(b"video")
    video = store.add_video(str(source), str(tmp_path / "videos"), name, size=5,
                            mtime_ns=source.stat().st_mtime_ns)
    store.set_video_state(video.id, S.QUEUED, "probed", sha256="ab" * 32, frames=3, fps=30.0)
    job = store.create_job("local", [video.id])
    folder = JobFolder.of(daemon.jobs_dir, job.id)
    outputs = folder.video(video.id) / "output"
    outputs.mkdir(parents=True)
    keypoints = outputs / f"video{video.id}DLC_resnet50.h5"
    keypoints.write_bytes(b"k" * 3_000_000)
    write_json_atomic(folder.result, {"finished": time.time(), "exit_code": 0, "videos": {str(video.id): {
        "status": "ok", "frames": 3, "staged_stem": f"video{video.id}", "scorer": "DLC_resnet50",
        "outputs": {"keypoints_h5": str(keypoints)}}}})
    store.update_job(job.id, result_path=str(folder.result), spec_path=str(folder.spec))
    store.set_video_state(video.id, S.ANALYZED, "analyzed")
    return store.video(video.id)


def tick_until(daemon: Daemon, predicate, timeout=30.0, now=None):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        daemon.deliver(time.time() if now is None else now)
        if predicate():
            return
        time.sleep(0.05)
    raise AssertionError(f"not reached in {timeout} s: {[(v.id, v.state, v.reason) for v in daemon.store.videos()]}")


def test_the_loop_goes_on_while_a_copy_is_held(lab, tmp_path, held_copies):
    released, waiting = held_copies
    daemon = Daemon(lab, watch_events=False)
    try:
        video = analyzed_video(daemon, tmp_path)
        started = time.monotonic()
        daemon.deliver(time.time())
        assert waiting.wait(10)
        for _ in range(5):  # the copy is held: the loop is not
            daemon.tick(time.time())
        assert time.monotonic() - started < 10
        assert daemon.store.video(video.id).state is S.DELIVERING
        shown = status_data(daemon.store)["reads"]  # what `dlcwatch status` prints meanwhile
        assert [(read["step"], read["path"]) for read in shown] == [("delivering", video.path)]
        released.set()
        tick_until(daemon, lambda: daemon.store.video(video.id).state is S.DONE)
        daemon.tick(time.time())
        assert status_data(daemon.store)["reads"] == []
        manifest = tmp_path / "results" / "mouse" / "manifest.json"
        assert manifest.exists() and (tmp_path / "results" / "mouse" / "mouseDLC_resnet50.h5").stat().st_size == 3_000_000
    finally:
        released.set()
        daemon.close()


def test_a_copy_without_progress_is_given_up_and_tried_again(tmp_path, held_copies):
    released, waiting = held_copies
    model = tmp_path / "model" / "config.yaml"
    model.parent.mkdir()
    model.write_text("Task: none\n")
    config = load_config(write_config(tmp_path, model, watch={"read_stall_s": 1.0}))
    daemon = Daemon(config, watch_events=False)
    try:
        video = analyzed_video(daemon, tmp_path)
        daemon.deliver(time.time())
        assert waiting.wait(10)
        tick_until(daemon, lambda: daemon.store.video(video.id).state is S.ANALYZED, timeout=10,
                   now=time.time() - 3600)  # not due again yet: the given-up state stays visible
        given_up = daemon.store.video(video.id)
        assert "no progress" in given_up.reason and "results kept in staging" in given_up.reason
        assert [c["name"] for c in daemon.store.conditions()] == ["destination"]
        released.set()  # the held thread resumes, sees it was given up, and stops without writing
        tick_until(daemon, lambda: daemon.store.video(video.id).state is S.DONE, now=time.time() + 3600)
        assert daemon.store.conditions() == []
        folder = tmp_path / "results" / "mouse"
        assert sorted(p.name for p in folder.iterdir()) == ["manifest.json", "mouseDLC_resnet50.h5"]
    finally:
        released.set()
        daemon.close()


def test_a_stop_does_not_wait_for_a_copy_and_the_next_start_delivers(lab, tmp_path, held_copies):
    released, waiting = held_copies
    daemon = Daemon(lab, watch_events=False)
    try:
        video = analyzed_video(daemon, tmp_path)
        daemon.deliver(time.time())
        assert waiting.wait(10)
        started = time.monotonic()
    finally:
        daemon.close()
    assert time.monotonic() - started < 5
    released.set()
    again = Daemon(lab, watch_events=False)
    try:
        again.start()
        assert again.store.video(video.id).state is S.ANALYZED  # the cut-short delivery is done again
        tick_until(again, lambda: again.store.video(video.id).state is S.DONE)
        assert (tmp_path / "results" / "mouse" / "manifest.json").exists()
    finally:
        again.close()
