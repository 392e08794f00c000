"""The watch step, driven tick by tick with an injected clock, on real files and real ffprobe."""

import os
import shutil
import time

import pytest

from dlcwatch.intake import admission as intake_module
from dlcwatch.intake.admission import Intake
from dlcwatch.states import VideoState as S
from dlcwatch.store import Store
from dlcwatch.demo.synthetic import write_video
from dlcwatch.intake.events import FileEvents

AWKWARD_NAMES = ["with space.mp4", "souris_été_ü.mp4", "it's \"quoted\".mp4", "$(touch x).mp4", "a;b.mp4",
                 "Upper.MP4"]


@pytest.fixture
def setup(lab):
    store = Store(lab.state.database)
    intake = Intake(lab.watch, store, skip_dirs=(lab.output.root,))
    yield lab, store, intake
    store.close()


def tick(intake, now):
    """One tick, then wait for the reads it started (they run in threads) and collect them, as the
    next tick would: tests stay tick by tick with a fake clock."""
    intake.tick(now)
    assert intake.reads.wait(60), "reads did not finish"
    intake.settle(now)


def videos_dir(lab):
    from pathlib import Path

    return Path(lab.watch.roots[0].path)


def states(store):
    return {os.path.basename(v.path): v.state for v in store.videos()}


def test_awkward_names_are_queued_with_their_metadata(setup):
    lab, store, intake = setup
    for index, name in enumerate(AWKWARD_NAMES):
        write_video(videos_dir(lab) / name, frames=20 + index, size=64)
    tick(intake, 1000.0)
    assert set(states(store).values()) == {S.SETTLING}
    tick(intake, 1000.0 + lab.watch.settle_s)
    assert states(store) == {name: S.QUEUED for name in AWKWARD_NAMES}
    video = store.video_by_path(str(videos_dir(lab) / "souris_été_ü.mp4"))
    assert video.frames == 21 and video.codec == "h264" and len(video.sha256) == 64


def test_a_file_written_slowly_is_not_picked_up_until_it_holds_still(setup):
    lab, store, intake = setup
    source = write_video(lab.staging.dir + "/full.mp4", frames=60, size=64).read_bytes()
    target = videos_dir(lab) / "slow.mp4"
    now = 1000.0
    with open(target, "wb") as stream:
        for offset in range(0, len(source), len(source) // 5):
            stream.write(source[offset:offset + len(source) // 5])
            stream.flush()
            os.utime(target, ns=(int(now * 1e9), int(now * 1e9)))  # a real writer moves mtime on each write
            tick(intake, now)
            assert states(store)["slow.mp4"] is S.SETTLING
            last_write = now
            now += lab.watch.settle_s / 2  # the writer pauses for less than the settle time
    tick(intake, last_write + lab.watch.settle_s - 0.01)
    assert states(store)["slow.mp4"] is S.SETTLING
    tick(intake, last_write + lab.watch.settle_s + 0.01)
    assert states(store)["slow.mp4"] is S.QUEUED
    assert store.video_by_path(str(target)).frames == 60


@pytest.mark.parametrize("name,content,reason", [
    ("empty.mp4", b"", "empty file (0 bytes)"),
    ("text.mp4", b"not a video at all\n" * 10, "not a readable video"),
])
def test_bad_files_are_quarantined_once_with_the_reason(setup, name, content, reason):
    lab, store, intake = setup
    (videos_dir(lab) / name).write_bytes(content)
    for now in (0.0, 10.0, 20.0, 300.0, 900.0):
        tick(intake, now)
    video = store.video_by_path(str(videos_dir(lab) / name))
    assert video.state is S.QUARANTINED
    assert reason in video.reason and "dlcwatch retry" in video.reason
    # quarantined once, then left alone: no retry loop
    assert [e.new_state for e in store.events(video_id=video.id)] == ["settling", "quarantined"]


def test_a_corrupt_video_is_quarantined(setup):
    lab, store, intake = setup
    good = write_video(lab.staging.dir + "/good.mp4", frames=60, size=64)
    (videos_dir(lab) / "corrupt.mp4").write_bytes(good.read_bytes()[:2000])
    tick(intake, 0.0)
    tick(intake, 10.0)
    assert states(store)["corrupt.mp4"] is S.QUARANTINED


def test_the_same_content_twice_is_a_duplicate(setup):
    lab, store, intake = setup
    first = write_video(videos_dir(lab) / "first.mp4", frames=30, size=64)
    tick(intake, 0.0)
    shutil.copyfile(first, videos_dir(lab) / "renamed copy.mp4")
    tick(intake, 6.0)  # the next rescan sees the copy
    tick(intake, 20.0)
    assert states(store) == {"first.mp4": S.QUEUED, "renamed copy.mp4": S.DUPLICATE}
    copy = store.video_by_path(str(videos_dir(lab) / "renamed copy.mp4"))
    assert copy.duplicate_of == store.video_by_path(str(first)).id
    assert str(first) in copy.reason


def test_a_file_deleted_before_processing_is_missing_and_may_come_back(setup):
    lab, store, intake = setup
    path = write_video(videos_dir(lab) / "gone.mp4", frames=30, size=64)
    tick(intake, 0.0)
    tick(intake, 10.0)
    assert states(store)["gone.mp4"] is S.QUEUED
    backup = path.read_bytes()
    path.unlink()
    tick(intake, 100.0)  # the rescan is due
    video = store.video_by_path(str(path))
    assert video.state is S.MISSING and "deleted or moved away" in video.reason
    path.write_bytes(backup)
    tick(intake, 200.0)
    assert store.video(video.id).state is S.SETTLING
    tick(intake, 210.0)
    assert store.video(video.id).state is S.QUEUED


def test_a_partial_name_renamed_into_place_is_seen(setup):
    lab, store, intake = setup
    partial = write_video(lab.staging.dir + "/rec.mp4", frames=30, size=64).rename(videos_dir(lab) / "rec.mp4.part")
    partial = videos_dir(lab) / "rec.mp4.part"
    tick(intake, 0.0)
    assert store.videos() == []
    partial.rename(videos_dir(lab) / "rec.mp4")
    tick(intake, 10.0)
    tick(intake, 20.0)
    assert states(store) == {"rec.mp4": S.QUEUED}


def test_an_unreadable_file_fails_with_a_clear_reason(setup, monkeypatch):
    lab, store, intake = setup
    path = write_video(videos_dir(lab) / "locked.mp4", frames=30, size=64)
    if os.geteuid() == 0:
        # root reads any file whatever its mode, so the refusal is the one injected fault here
        def refuse(name):
            raise PermissionError(13, "Permission denied", name)
        monkeypatch.setattr(intake_module, "check_readable", refuse)
    else:
        path.chmod(0)
    tick(intake, 0.0)
    tick(intake, 10.0)
    video = store.video_by_path(str(path))
    assert video.state is S.FAILED
    assert "Permission denied" in video.reason and "dlcwatch retry" in video.reason


def test_an_unmounted_root_marks_nothing_missing(setup):
    lab, store, intake = setup
    write_video(videos_dir(lab) / "a.mp4", frames=30, size=64)
    tick(intake, 0.0)
    tick(intake, 10.0)
    hidden = videos_dir(lab).with_name("unmounted")
    videos_dir(lab).rename(hidden)
    tick(intake, 100.0)
    assert states(store) == {"a.mp4": S.QUEUED}
    assert "not available" in next(iter(intake.root_problems().values()))


def test_inotify_reports_a_file_open_for_writing(setup):
    lab, store, _ = setup
    events = FileEvents()
    events.start([(str(videos_dir(lab)), True)])
    try:
        path = videos_dir(lab) / "live.mp4"
        with open(path, "wb") as stream:
            stream.write(b"x" * 1000)
            stream.flush()
            assert _eventually(lambda: events.is_writing(str(path)))
        assert _eventually(lambda: not events.is_writing(str(path)))
        dirty, _ = events.take()
        assert str(path) in dirty
    finally:
        events.stop()


def test_a_file_held_open_for_writing_waits_longer_than_the_settle_time(setup):
    lab, store, _ = setup
    events = FileEvents()
    events.start([(str(videos_dir(lab)), True)])
    intake = Intake(lab.watch, store, events=events)
    try:
        source = write_video(lab.staging.dir + "/v.mp4", frames=30, size=64).read_bytes()
        path = videos_dir(lab) / "held.mp4"
        with open(path, "wb") as stream:
            stream.write(source)
            stream.flush()
            assert _eventually(lambda: events.is_writing(str(path)))
            tick(intake, 0.0)
            tick(intake, lab.watch.settle_s * 2)  # still, but open for writing
            assert states(store)["held.mp4"] is S.SETTLING
        assert _eventually(lambda: not events.is_writing(str(path)))
        tick(intake, lab.watch.settle_s * 2 + 0.1)
        assert states(store)["held.mp4"] is S.QUEUED
    finally:
        events.stop()


def _eventually(condition, timeout=5.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(0.02)
    return False
