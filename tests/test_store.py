import sqlite3

import pytest

from dlcwatch.states import JobState, TransitionError, VideoState
from dlcwatch.store import Store, StoreError


@pytest.fixture
def store(tmp_path):
    store = Store(tmp_path / "state" / "db.sqlite")
    yield store
    store.close()


def add(store, name="a.mp4", now=100.0):
    return store.add_video(f"/videos/{name}", "/videos", name, size=10, mtime_ns=1, now=now)


def test_database_is_wal_with_named_migrations(store, tmp_path):
    raw = sqlite3.connect(tmp_path / "state" / "db.sqlite")
    assert raw.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    assert store.migrations() == ["0001_initial", "0002_notifications", "0003_conditions", "0004_video_resources",
                                  "0005_cancel_requested", "0006_staged_path", "0007_reads", "0008_status_indexes"]
    Store(tmp_path / "state" / "db.sqlite").close()  # reopening applies nothing twice
    assert store.migrations() == ["0001_initial", "0002_notifications", "0003_conditions", "0004_video_resources",
                                  "0005_cancel_requested", "0006_staged_path", "0007_reads", "0008_status_indexes"]


def test_a_transition_and_its_event_are_written_together(store):
    video = add(store)
    store.set_video_state(video.id, VideoState.QUEUED, "complete", now=105.0, frames=90)
    video = store.video(video.id)
    assert (video.state, video.frames, video.reason, video.updated) == (VideoState.QUEUED, 90, "complete", 105.0)
    events = store.events(video_id=video.id)
    assert [(e.old_state, e.new_state, e.message) for e in events] == [
        (None, "settling", "seen for the first time"), ("settling", "queued", "complete")]


def test_a_forbidden_transition_changes_nothing(store):
    video = add(store)
    with pytest.raises(TransitionError):
        store.set_video_state(video.id, VideoState.DONE, "skip everything")
    assert store.video(video.id).state is VideoState.SETTLING
    assert len(store.events(video_id=video.id)) == 1


def test_expect_guards_against_a_concurrent_change(store):
    video = add(store)
    with pytest.raises(TransitionError, match="expected one of"):
        store.set_video_state(video.id, VideoState.SUBMITTED, "x", expect=[VideoState.QUEUED])


def test_create_job_moves_its_videos_in_one_transaction(store):
    first, second = add(store, "a.mp4"), add(store, "b.mp4")
    store.set_video_state(first.id, VideoState.QUEUED, "ok")
    # The second video is not queued: the whole job must be refused and the first left alone.
    with pytest.raises(TransitionError):
        store.create_job("local", [first.id, second.id])
    assert store.jobs() == []
    assert store.video(first.id).state is VideoState.QUEUED
    store.set_video_state(second.id, VideoState.QUEUED, "ok")
    job = store.create_job("local", [first.id, second.id], now=200.0)
    assert job.state is JobState.CREATED
    assert store.job_video_ids(job.id) == [first.id, second.id]
    assert {store.video(i).attempts for i in (first.id, second.id)} == {1}
    assert store.video(first.id).job_id == job.id


def test_find_videos_by_id_path_or_name_fragment(store):
    video = add(store, "souris_été 100%_x.mp4")
    add(store, "other.mp4")
    assert [v.id for v in store.find_videos(str(video.id))] == [video.id]
    assert [v.id for v in store.find_videos("100%_")] == [video.id]  # no LIKE wildcards
    assert [v.id for v in store.find_videos("/videos/souris_été 100%_x.mp4")] == [video.id]
    assert len(store.find_videos(".mp4")) == 2


def test_read_only_store_needs_an_existing_database(tmp_path):
    with pytest.raises(StoreError, match="has the daemon run yet"):
        Store(tmp_path / "none.db", read_only=True)


def test_a_newer_schema_is_refused(tmp_path):
    store = Store(tmp_path / "db")
    with store.transaction() as db:
        db.execute("INSERT INTO migrations VALUES ('9999_future', 0)")
    store.close()
    with pytest.raises(StoreError, match="newer dlcwatch"):
        Store(tmp_path / "db")


def test_a_state_cannot_be_written_around_the_state_machine(tmp_path):
    store = Store(tmp_path / "s.db")
    video = store.add_video("/v/a.mp4", "/v", "a.mp4", size=1, mtime_ns=1, now=1.0)
    job = store.create_job("local", [])
    with pytest.raises(ValueError, match="state machine"):
        store.update_video(video.id, state="done")
    with pytest.raises(ValueError, match="state machine"):
        store.set_video_state(video.id, VideoState.QUEUED, "ok", state="done")
    with pytest.raises(ValueError, match="state machine"):
        store.update_job(job.id, state="finished")
    assert store.video(video.id).state is VideoState.SETTLING and store.job(job.id).state is JobState.CREATED
