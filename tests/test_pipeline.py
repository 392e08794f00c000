"""End to end: videos dropped into a watched folder come out as delivered, verified keypoints.

Real SQLite, real ffmpeg, a real tiny DeepLabCut model, the real local executor and worker."""

import hashlib
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd

from conftest import cli, needs_dlc, write_config
from dlcwatch.config import load_config
from dlcwatch.daemon import Daemon
from dlcwatch.delivery.results import delivered_name
from dlcwatch.jobs.spec import read_json
from dlcwatch.states import VideoState as S
from dlcwatch.store import Store
from dlcwatch.demo.synthetic import write_video

pytestmark = needs_dlc

NAMES = ["plain.mp4", "souris_été_ü.mp4", "with space/it's \"q\".avi", "$(touch x); rm.mp4"]


def run_until_idle(config_path, timeout=300):
    daemon = Daemon(load_config(config_path), watch_events=False)
    deadline = time.monotonic() + timeout
    daemon.start()
    try:
        while time.monotonic() < deadline:
            daemon.tick(time.time())
            if daemon.idle():
                return
            time.sleep(0.2)
        raise AssertionError(f"not idle after {timeout} s: {daemon.store.counts()}")
    finally:
        daemon.close()


def assert_delivered(folder: Path, results: Path, source: Path, relpath: str, engine: str = "pytorch"):
    """Check a video's delivered folder against its source; return its manifest."""
    manifest = read_json(folder / "manifest.json")
    assert manifest["source"]["path"] == str(source)
    assert manifest["source"]["sha256"] == hashlib.sha256(source.read_bytes()).hexdigest()
    stem = Path(relpath).stem
    assert folder == results / Path(relpath).parent / stem
    for kind, entry in manifest["outputs"].items():
        delivered = folder / entry["file"]
        assert entry["file"].startswith(stem), entry["file"]
        assert hashlib.sha256(delivered.read_bytes()).hexdigest() == entry["sha256"]
    keypoints = pd.read_hdf(folder / manifest["outputs"]["keypoints_h5"]["file"])
    assert len(keypoints) == manifest["source"]["frames"]
    assert manifest["model"]["engine"] == engine and manifest["model"]["deeplabcut_version"] == "3.0.2"
    # What DeepLabCut's own tools need beside the table, and a labeled clip (model.labeled_video: clip).
    assert manifest["outputs"]["dlc_meta"]["file"].endswith("_meta.pickle")
    assert manifest["outputs"]["labeled_video"]["file"].endswith("_labeled_clip.mp4")
    return manifest


def test_videos_in_keypoints_out_bad_ones_quarantined(tiny_model, tmp_path):
    config_path = write_config(tmp_path, tiny_model, watch={"settle_s": 0.5, "rescan_interval_s": 0.5},
                               executor={"videos_per_job": 3})
    videos = tmp_path / "videos"
    sources = {name: write_video(videos / name, frames=30 + 5 * index) for index, name in enumerate(NAMES)}
    shutil.copyfile(sources["plain.mp4"], videos / "plain again.mp4")  # same content, new name
    (videos / "notes.mp4").write_text("this is a text file\n")
    (videos / "empty.MP4").write_bytes(b"")

    run_until_idle(config_path)

    store = Store(tmp_path / "state" / "dlcwatch.db")
    by_name = {Path(v.relpath).name: v for v in store.videos()}
    assert {name: v.state for name, v in by_name.items()} == {
        **{Path(name).name: S.DONE for name in NAMES},
        "plain again.mp4": S.DUPLICATE, "notes.mp4": S.QUARANTINED, "empty.MP4": S.QUARANTINED}
    for name, source in sources.items():
        video = by_name[Path(name).name]
        manifest = assert_delivered(Path(video.output_dir), tmp_path / "results", source, name)
        assert manifest["job"]["attempts"] == 1
        # Where the time went, from the job's result file: the model built once, this video's steps.
        assert manifest["model"]["loaded"] == "once per job"
        assert manifest["timings"]["model_load_steps_s"]["model_s"] > 0
        steps = manifest["timings"]["analysis_steps_s"]
        assert steps["inference_s"] > 0 and {"write_s", "check_s", "qc_s", "labeled_video_s"} <= set(steps)
    # several videos per job: the model loaded once for each of them
    assert len(store.jobs()) == 2
    assert "not a readable video" in by_name["notes.mp4"].reason
    # staging keeps job records, not analysis outputs
    assert not list((tmp_path / "staging").glob("jobs/*/video*"))
    assert not list((tmp_path / "staging").glob("jobs/*/project"))
    # DeepLabCut's own tools work on a delivered folder: it holds the table and the meta pickle they read.
    folder = Path(by_name["plain.mp4"].output_dir)
    script = ("import os, sys; os.environ['DLClight'] = 'True'; import deeplabcut; "
              "print(deeplabcut.create_labeled_video(sys.argv[1], [sys.argv[2]], destfolder=sys.argv[3]))")
    completed = subprocess.run([sys.executable, "-c", script, str(tiny_model), str(sources["plain.mp4"]), str(folder)],
                               capture_output=True, text=True, timeout=300)
    assert completed.returncode == 0 and completed.stdout.strip().splitlines()[-1] == "[True]", completed.stderr[-2000:]
    assert list(folder.glob("plainDLC_*_labeled.mp4"))


def test_an_attempt_that_keeps_failing_ends_failed_after_max_attempts(tiny_model, tmp_path):
    # A real fault: the model's snapshot disappears from the lab's project after the daemon started.
    project = tmp_path / "project"
    shutil.copytree(tiny_model.parent, project)
    for snapshot in project.glob("dlc-models-pytorch/**/snapshot-*.pt"):
        snapshot.unlink()
    config_path = write_config(tmp_path, project / "config.yaml", watch={"settle_s": 0.2},
                               executor={"max_attempts": 2, "retry_backoff_s": 0.0})
    write_video(tmp_path / "videos" / "v.mp4", frames=20)
    run_until_idle(config_path)
    store = Store(tmp_path / "state" / "dlcwatch.db")
    [video] = store.videos()
    assert video.state is S.FAILED and video.attempts == 2
    assert "gave up after 2 attempt(s)" in video.reason
    assert [e.new_state for e in store.events(video_id=video.id)].count("submitted") == 2


def test_stopped_and_killed_at_any_point_every_video_is_delivered_once(tiny_model, tmp_path):
    config_path = write_config(tmp_path, tiny_model, watch={"settle_s": 0.3, "rescan_interval_s": 0.5},
                               executor={"videos_per_job": 1, "local": {"max_parallel": 2}})
    sources = [write_video(tmp_path / "videos" / f"m{index}.mp4", frames=30, phase=index) for index in range(4)]

    def start():
        return subprocess.Popen([sys.executable, "-m", "dlcwatch", "run", "--config", str(config_path)],
                                stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)

    def wait_for(condition, timeout=120):
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if condition():
                return
            time.sleep(0.1)
        raise AssertionError("timed out")

    def counts():
        try:
            store = Store(tmp_path / "state" / "dlcwatch.db", read_only=True)
        except Exception:  # noqa: BLE001 - not created yet
            return {}
        try:
            return store.counts()
        finally:
            store.close()

    daemon = start()
    try:
        wait_for(lambda: counts().get("submitted", 0) + counts().get("running", 0) >= 1)
        daemon.send_signal(signal.SIGTERM)  # jobs are in flight
        assert daemon.wait(timeout=30) == 0

        daemon = start()
        wait_for(lambda: counts().get("done", 0) >= 1)
        daemon.kill()  # no chance to clean up
        daemon.wait(timeout=30)
    finally:
        if daemon.poll() is None:  # a failed wait must not leave a daemon running after the test
            daemon.kill()
            daemon.wait(timeout=30)

    completed = cli("run", "--until-idle", "--config", str(config_path), timeout=300)
    assert completed.returncode == 0, completed.stdout[-3000:] + completed.stderr[-3000:]

    store = Store(tmp_path / "state" / "dlcwatch.db")
    assert store.counts() == {"done": 4}
    for video in store.videos():
        done_events = [e for e in store.events(video_id=video.id) if e.new_state == "done"]
        assert len(done_events) == 1, f"video {video.id} delivered {len(done_events)} times"
    results = tmp_path / "results"
    assert sorted(p.name for p in results.iterdir()) == ["m0", "m1", "m2", "m3"]  # nothing set aside
    for source in sources:
        assert_delivered(results / source.stem, results, source, source.name)

    status = cli("status", "--config", str(config_path))
    assert status.returncode == 0 and "4 video(s): 4 done" in status.stdout


def test_an_unreachable_destination_keeps_results_until_it_is_back(tiny_model, tmp_path):
    config_path = write_config(tmp_path, tiny_model, watch={"settle_s": 0.2},
                               output={"after_delivery": "move", "move_to": str(tmp_path / "analyzed")})
    source = write_video(tmp_path / "videos" / "day1" / "m.mp4", frames=30)
    (tmp_path / "results").write_text("a file where the output folder should be")  # mkdir fails for real
    daemon = Daemon(load_config(config_path), watch_events=False)
    daemon.start()
    try:
        deadline = time.monotonic() + 300
        while not daemon.store.conditions() and time.monotonic() < deadline:
            daemon.tick(time.time())
            time.sleep(0.2)
        [problem] = daemon.store.conditions()
        assert problem["name"] == "destination" and "cannot deliver to" in problem["message"]
        [video] = daemon.store.videos()
        assert video.state is S.ANALYZED and "results kept in staging" in video.reason
        assert source.exists()

        (tmp_path / "results").unlink()  # the share is back
        while daemon.store.video(video.id).state is not S.DONE and time.monotonic() < deadline:
            daemon.tick(time.time() + 3600)  # past any backoff
            time.sleep(0.1)
        assert daemon.store.conditions() == []
        assert (tmp_path / "results" / "day1" / "m" / "manifest.json").exists()
        assert not source.exists() and (tmp_path / "analyzed" / "day1" / "m.mp4").exists()
        assert "source moved to" in daemon.store.events(video_id=video.id)[-1].message
    finally:
        daemon.close()


def test_an_interrupted_delivery_is_completed_in_place_and_foreign_results_are_kept(tiny_model, tmp_path):
    config_path = write_config(tmp_path, tiny_model, watch={"settle_s": 0.2})
    write_video(tmp_path / "videos" / "a.mp4", frames=30)
    write_video(tmp_path / "videos" / "b.mp4", frames=30, phase=1)
    daemon = Daemon(load_config(config_path), watch_events=False)
    daemon.start()
    original_deliver = daemon._deliver_one
    daemon._deliver_one = lambda video, now: None  # hold delivery back: both stay analyzed
    try:
        deadline = time.monotonic() + 300
        while daemon.store.counts().get("analyzed", 0) < 2 and time.monotonic() < deadline:
            daemon.tick(time.time())
            time.sleep(0.2)
        results = tmp_path / "results"
        # a: what a daemon killed in the middle of copying leaves: one output, a temp file, no manifest
        (results / "a").mkdir(parents=True)
        [first] = [v for v in daemon.store.videos() if v.relpath == "a.mp4"]
        entry = read_json(daemon.store.job(first.job_id).result_path)["videos"][str(first.id)]
        partial_name = delivered_name("a", entry["staged_stem"], Path(entry["outputs"]["keypoints_h5"]))
        (results / "a" / partial_name).write_bytes(b"half")
        (results / "a" / f".{partial_name}.x1y2.part").write_bytes(b"ha")
        # b: somebody else's files where b's results go
        (results / "b").mkdir()
        (results / "b" / "notes from a person.txt").write_text("keep me")
        daemon._deliver_one = original_deliver
        while not daemon.idle() and time.monotonic() < deadline:
            daemon.tick(time.time())
        assert sorted(p.name for p in results.iterdir() if not p.name.startswith("b.replaced-")) == ["a", "b"]
        assert (results / "a" / "manifest.json").exists() and not list((results / "a").glob(".*.part"))
        assert (results / "a" / partial_name).read_bytes() != b"half"
        [aside] = list(results.glob("b.replaced-*"))
        assert (aside / "notes from a person.txt").read_text() == "keep me"
    finally:
        daemon.close()
