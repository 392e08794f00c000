"""Rescans that cost what changed: real folders, a real store, counted stats (intake.scan.TreeScanner)."""

import os
from pathlib import Path

import pytest

from dlcwatch.intake.admission import Intake
from dlcwatch.states import VideoState as S
from dlcwatch.store import Store
from dlcwatch.demo.synthetic import write_video


OLD = 1_700_000_000  # November 2023


def age(*folders: Path) -> None:
    """Set folder mtimes to one fixed old time: past the window in which a folder is listed again
    anyway, and the same each time, as if nothing had been added or removed."""
    for folder in folders:
        os.utime(folder, (OLD, OLD))


@pytest.fixture
def tree(lab):
    """Three sessions of two videos each, admitted; the folders' mtimes an hour old."""
    root = Path(lab.watch.roots[0].path)
    store = Store(lab.state.database)
    intake = Intake(lab.watch, store)
    sessions = [root / f"session{index}" for index in range(3)]
    for index, session in enumerate(sessions):
        session.mkdir()
        for number in range(2):
            write_video(session / f"mouse{number}.mp4", frames=10 + index * 2 + number, size=32)
    age(root, *sessions)
    intake.tick(0.0)
    intake.tick(10.0)
    assert intake.reads.wait(60)
    intake.tick(10.0)
    assert {video.state for video in store.videos()} == {S.QUEUED} and len(store.videos()) == 6
    yield intake, store, root, sessions
    intake.close()
    store.close()


def counted(intake, function):
    before = dict(intake.scan_counts())
    function()
    return {key: intake.scan_counts().get(key, 0) - before.get(key, 0) for key in intake.scan_counts()}


def test_a_poll_where_nothing_changed_stats_the_folders_and_no_file(tree):
    intake, store, root, sessions = tree
    counts = counted(intake, lambda: intake.tick(20.0))
    assert counts == {"folder_stats": 4, "listings": 0, "file_stats": 0}
    # A full rescan (watch.full_rescan_interval_s) lists and stats everything.
    counts = counted(intake, lambda: intake.scan_root(intake.roots[0], 30.0, full=True))
    assert counts == {"folder_stats": 4, "listings": 4, "file_stats": 6}


def test_a_new_file_deep_in_the_tree_is_found_by_listing_only_its_folder(tree):
    intake, store, root, sessions = tree
    write_video(sessions[1] / "new.mp4", frames=5, size=32)
    counts = counted(intake, lambda: intake.tick(20.0))
    assert counts == {"folder_stats": 4, "listings": 1, "file_stats": 3}
    assert store.video_by_path(str(sessions[1] / "new.mp4")).state is S.SETTLING


def test_deleted_files_and_folders_are_missing_after_a_cheap_scan(tree):
    intake, store, root, sessions = tree
    (sessions[0] / "mouse0.mp4").unlink()
    for video in sessions[2].iterdir():
        video.unlink()
    sessions[2].rmdir()
    intake.tick(20.0)
    missing = sorted(Path(video.path).relative_to(root).as_posix() for video in store.videos([S.MISSING]))
    assert missing == ["session0/mouse0.mp4", "session2/mouse0.mp4", "session2/mouse1.mp4"]


def test_a_file_rewritten_in_place_is_caught_by_the_full_rescan(tree):
    intake, store, root, sessions = tree
    target = sessions[0] / "mouse1.mp4"
    target.write_bytes(write_video(root.parent / "other.mp4", frames=40, size=32).read_bytes())
    age(sessions[0])  # rewriting in place does not change the folder: only the file's own mtime
    intake.tick(20.0)
    assert store.video_by_path(str(target)).state is S.QUEUED  # the cheap scan cannot know
    intake.scan_root(intake.roots[0], 30.0, full=True)
    video = store.video_by_path(str(target))
    assert video.state is S.SETTLING and "changed after it was queued" in video.reason
