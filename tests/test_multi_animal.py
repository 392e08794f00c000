"""Multi-animal projects end to end: a real two-animal model through the real daemon, local executor
and worker; what is delivered opens with movement, pandas and DeepLabCut's own tools.

Three videos of one arena: two mice all along, two mice that leave after 3 s, and an empty arena.
The daemon runs once for the module; each test looks at one side of what it delivered.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from conftest import cli, needs_dlc, write_config
from dlcwatch.demo import tinymadlc
from dlcwatch.jobs.spec import read_json
from dlcwatch.states import VideoState as S
from dlcwatch.store import Store
from test_pipeline import run_until_idle

pytestmark = needs_dlc

FRAMES = {"two mice.mp4": 120, "they leave.mp4": 120, "empty arena.mp4": 60}
LEAVE_AT = 90
CLIP_S = 2.0


@pytest.fixture(scope="module")
def run(tiny_ma_model, tmp_path_factory):
    """The lab folder after the daemon analyzed and delivered the three videos."""
    lab = tmp_path_factory.mktemp("ma-lab")
    config = write_config(lab, tiny_ma_model, watch={"settle_s": 0.3, "rescan_interval_s": 0.5},
                          model={"device": "cpu", "filter": {"enabled": True}, "labeled_clip_s": CLIP_S},
                          executor={"videos_per_job": 3, "retry_backoff_s": 0.0})
    videos = lab / "videos"
    tinymadlc.write_video(videos / "two mice.mp4", frames=120, phase=1.3)
    tinymadlc.write_video(videos / "they leave.mp4", frames=120, phase=0.7, leave_at=LEAVE_AT)
    tinymadlc.write_video(videos / "empty arena.mp4", frames=60, animals=0)
    run_until_idle(config, timeout=540)
    return lab


def delivered(run: Path, name: str) -> tuple[Path, dict]:
    folder = run / "results" / Path(name).stem
    return folder, read_json(folder / "manifest.json")


def output(folder: Path, manifest: dict, kind: str) -> Path:
    return folder / manifest["outputs"][kind]["file"]


def test_each_video_ends_done_and_says_what_was_tracked(run):
    store = Store(run / "state" / "dlcwatch.db")
    videos = {Path(video.relpath).name: video for video in store.videos()}
    assert {name: video.state for name, video in videos.items()} == {name: S.DONE for name in FRAMES}
    # Analyzed once each: an empty arena is not a failed attempt.
    assert all(video.attempts == 1 for video in videos.values())
    assert "no animal found" in videos["empty arena.mp4"].reason
    assert "its raw detections are delivered" in videos["empty arena.mp4"].reason
    tracked = {}
    for name, frames in FRAMES.items():
        folder, manifest = delivered(run, name)
        tracking = manifest["analysis"]["tracking"]
        assert tracking["frames"] == frames
        tracked[name] = tracking["frames_tracked"]
        # One row per frame of the video in every table, untracked frames present and empty.
        for kind in ("keypoints_h5", "keypoints_filtered_h5"):
            if kind in manifest["outputs"]:
                assert len(pd.read_hdf(output(folder, manifest, kind), key="df_with_missing")) == frames
        # Counted by line: pandas takes an empty first frame for a row of index names.
        lines = output(folder, manifest, "keypoints_csv").read_text().splitlines()
        assert len(lines) == 4 + frames and lines[-1].startswith(f"{frames - 1},")
    # A tiny model: a few frames at the ends of a track may go untracked, never frames without animals.
    assert tracked["two mice.mp4"] >= 110 and LEAVE_AT - 10 <= tracked["they leave.mp4"] <= LEAVE_AT
    assert tracked["empty arena.mp4"] == 0
    _, empty = delivered(run, "empty arena.mp4")
    assert empty["analysis"]["status"] == "no_animal"
    assert empty["analysis"]["message"].startswith("no animal found")
    folder, leave = delivered(run, "they leave.mp4")
    table = pd.read_hdf(output(folder, leave, "keypoints_h5"))
    assert table.iloc[LEAVE_AT:].isna().all().all()
    assert table.iloc[:LEAVE_AT].notna().any(axis=1).sum() == leave["analysis"]["tracking"]["frames_tracked"]


def test_tables_open_with_movement(run):
    load_poses = pytest.importorskip("movement.io.load_poses")
    for name, frames in FRAMES.items():
        folder, manifest = delivered(run, name)
        for kind in ("keypoints_h5", "keypoints_csv", "keypoints_filtered_h5"):
            if kind not in manifest["outputs"]:
                continue
            poses = load_poses.from_dlc_file(output(folder, manifest, kind), fps=manifest["source"]["fps"])
            assert dict(poses.sizes)["time"] == frames
            assert list(poses.individuals.values) == list(tinymadlc.INDIVIDUALS)
            assert list(poses.keypoints.values) == list(tinymadlc.BODYPARTS)
    folder, manifest = delivered(run, "two mice.mp4")
    poses = load_poses.from_dlc_file(output(folder, manifest, "keypoints_h5"), fps=30)
    # The model tracks: each track's nose within a few pixels of one drawn animal's, all along (the
    # tracker names tracks in its own order: without identity training, mouse1 may be the other one).
    nose = poses.position.sel(keypoints="nose").values  # time, space, individuals
    truth = np.array([[tinymadlc.truth(frame, 128, 1.3)[individual]["nose"] for individual in tinymadlc.INDIVIDUALS]
                      for frame in range(120)]).transpose(0, 2, 1)
    error = min((np.abs(nose - truth[:, :, order]).max(axis=1) for order in ([0, 1], [1, 0])), key=np.median)
    assert np.median(error) < 4 and np.percentile(error, 95) < 8


def test_deeplabcut_pickles_are_delivered_with_checksums(run):
    import hashlib

    for name in FRAMES:
        folder, manifest = delivered(run, name)
        for kind in ("dlc_meta", "dlc_detections", "dlc_assemblies", "dlc_tracklets"):
            entry = manifest["outputs"][kind]
            path = folder / entry["file"]
            assert path.name.startswith(Path(name).stem + "DLC_") and path.name.endswith(".pickle")
            assert hashlib.sha256(path.read_bytes()).hexdigest() == entry["sha256"]
        with open(output(folder, manifest, "dlc_meta"), "rb") as stream:
            import pickle

            assert pickle.load(stream)["data"]["fps"] == pytest.approx(30)


def test_every_delivered_video_has_a_labeled_clip(run):
    import cv2

    for name, frames in FRAMES.items():
        folder, manifest = delivered(run, name)
        clip = output(folder, manifest, "labeled_video")
        assert clip.name.endswith("_labeled_clip.mp4")
        shown = manifest["analysis"]["labeled_video"]
        length = min(frames, int(CLIP_S * 30))
        assert shown.pop("made_in_s") < 60
        assert shown == {"mode": "clip", "first_frame": (frames - length) // 2, "frames": length,
                         "start_s": pytest.approx((frames - length) // 2 / 30, abs=1e-3), "seconds": CLIP_S}
        capture = cv2.VideoCapture(str(clip))
        assert int(capture.get(cv2.CAP_PROP_FRAME_COUNT)) == length
        ok, image = capture.read()
        capture.release()
        assert ok and image.shape[:2] == (128, 128)


def test_deeplabcut_tools_work_on_the_delivered_folder(run, tiny_ma_model, tmp_path):
    """create_labeled_video (and extract_outlier_frames' reader) find what they need in a delivered
    folder; refine_tracklets' loader reads the delivered tracked table. refine_tracklets itself opens
    a window, so its TrackletManager (what it loads files with) stands in for it. It is given the
    .h5: DeepLabCut 3.0.2's TrackletManager cannot read the _el.pickle its own analyze_videos writes
    (rows of (body parts, 4) where it expects flat rows: IndexError), delivered or not."""
    folder, manifest = delivered(run, "two mice.mp4")
    copy = tmp_path / "two mice"
    shutil.copytree(folder, copy)
    source = run / "videos" / "two mice.mp4"
    script = textwrap.dedent(f"""
        import json, os
        os.environ["DLClight"] = "True"
        import deeplabcut
        from deeplabcut.refine_training_dataset.tracklets import TrackletManager
        from deeplabcut.utils import auxiliaryfunctions
        config, video, folder = {str(tiny_ma_model)!r}, {str(source)!r}, {str(copy)!r}
        made = deeplabcut.create_labeled_video(config, [video], destfolder=folder)
        data, path, scorer, suffix = auxiliaryfunctions.load_analyzed_data(folder, "two mice", {manifest["model"]["scorer"]!r},
                                                                          False, "ellipse")
        import pickle
        with open({str(copy / manifest["outputs"]["dlc_tracklets"]["file"])!r}, "rb") as stream:
            tracklets = pickle.load(stream)
        from_pickle = max(int(frame[5:]) for key, tracklet in tracklets.items() if key != "header"
                          for frame in tracklet) + 1
        manager = TrackletManager(config, 2, 2)
        manager.load_tracklets_from_hdf({str(copy / manifest["outputs"]["keypoints_h5"]["file"])!r})
        print(json.dumps({{"made": made, "rows": len(data), "from_pickle": int(from_pickle),
                          "from_hdf": int(manager.nframes), "individuals": manager.nindividuals}}))
    """)
    completed = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=300)
    assert completed.returncode == 0, completed.stderr[-3000:]
    facts = json.loads(completed.stdout.strip().splitlines()[-1])
    assert facts["made"] == [True] and facts["rows"] == 120
    assert facts["from_pickle"] == 120 and facts["from_hdf"] == 120 and facts["individuals"] == 2
    assert list(copy.glob("two miceDLC_*_el_bp_p60_labeled.mp4"))


def test_behavior_train_reads_each_delivered_video_once_with_no_fps(run, tmp_path):
    completed = cli("behavior", "train", str(run / "results"), "--out", str(tmp_path / "mice.joblib"),
                    "--min-cluster-size", "5", "20")  # 156 bins: the default 0.5-1 % would be 1-2 bins
    said = " ".join((completed.stderr + completed.stdout).split())  # rich wraps long lines
    assert "reading 3 keypoint file(s)" in said, said[-3000:]
    assert said.count("using the filtered table") == 2  # the empty arena has no filtered table
    assert "at 30 fps" in said
    assert completed.returncode == 0, said[-3000:]
    sidecar = json.loads((tmp_path / "mice.json").read_text())
    assert sorted(Path(p).parent.name for p in sidecar["training_files"]) == sorted(Path(n).stem for n in FRAMES)

    # Labels per animal, again with no --fps: one block of rows per animal, a band per animal.
    folder, manifest = delivered(run, "they leave.mp4")
    table = output(folder, manifest, "keypoints_filtered_h5")
    completed = cli("behavior", "predict", str(table), "--model", str(tmp_path / "mice.joblib"), "--out", str(tmp_path))
    assert completed.returncode == 0, completed.stderr[-3000:]
    labels = pd.read_csv(tmp_path / f"{table.stem}_behavior.csv")
    assert list(labels.columns[:2]) == ["individual", "frame"]
    assert labels.groupby("individual").size().to_dict() == {"mouse1": 120, "mouse2": 120}
    assert labels["time"].iloc[30] == pytest.approx(1.0)  # 30 fps, from the manifest
    assert (tmp_path / f"{table.stem}_ethogram.png").is_file()


def test_a_job_environment_with_the_broken_filterpy_is_refused_before_any_analysis(tiny_ma_model, tmp_path):
    """filterpy 2.0.0 cannot be installed here (no internet at test time): a copy of the installed
    filterpy with 2.0.0's measurement matrix put back stands in for it."""
    import filterpy

    fake = tmp_path / "site"
    shutil.copytree(Path(filterpy.__file__).parent, fake / "filterpy")
    init = fake / "filterpy" / "__init__.py"
    init.write_text(init.read_text().replace(f'__version__ = "{filterpy.__version__}"', '__version__ = "2.0.0"'))
    with open(fake / "filterpy" / "common" / "kinematic.py", "a") as stream:
        stream.write(textwrap.dedent("""
            _kinematic_kf = kinematic_kf
            def kinematic_kf(dim, order, dt=1., dim_z=1, order_by_dim=True):
                kf = _kinematic_kf(dim, order, dt=dt, dim_z=dim_z, order_by_dim=order_by_dim)
                if not order_by_dim:
                    kf.H[:, :dim] = 1.  # filterpy 2.0.0: every row reads every position
                return kf
        """))
    video = tinymadlc.write_video(tmp_path / "mice.mp4", frames=30)
    work = tmp_path / "job"
    spec = {"version": 1, "job_id": 1, "work_dir": str(work), "result": str(work / "result.json"),
            "model": {"config": str(tiny_ma_model), "shuffle": 1, "trainingsetindex": 0, "batch_size": 8,
                      "device": "cpu", "multi_animal": {"auto_track": True}},
            "videos": [{"id": 1, "path": str(video), "frames": 30, "fps": 30.0}]}
    (tmp_path / "spec.json").write_text(json.dumps(spec))
    env = {"PYTHONPATH": f"{fake}:{Path(__file__).resolve().parents[1]}"}
    import os

    completed = subprocess.run([sys.executable, "-m", "dlcwatch.worker", str(tmp_path / "spec.json")],
                               capture_output=True, text=True, timeout=300, env={**os.environ, **env})
    assert completed.returncode == 75, completed.stderr[-3000:]
    message = read_json(work / "result.json")["videos"]["1"]["message"]
    assert "filterpy 2.0.0" in message and "pip install filterpy==1.4.5" in message
    assert "analyzing" not in completed.stderr  # refused up front, no analysis wasted


def test_tracker_and_untracked_settings_reach_deeplabcut(tiny_ma_model, tmp_path):
    """model.multi_animal: the box tracker for two animals gives box-tracker files; auto_track off gives
    DeepLabCut's untracked detections table (one row per frame) and nothing filtered or drawn."""
    video = tinymadlc.write_video(tmp_path / "mice.mp4", frames=60, phase=0.4)
    results = {}
    for name, settings in (("box", {"auto_track": True, "tracker": "box", "animals": 2}),
                           ("untracked", {"auto_track": False, "tracker": "project", "animals": 0})):
        work = tmp_path / name
        spec = {"version": 1, "job_id": 1, "work_dir": str(work), "result": str(work / "result.json"),
                "model": {"config": str(tiny_ma_model), "shuffle": 1, "trainingsetindex": 0, "batch_size": 8,
                          "device": "cpu", "multi_animal": settings, "labeled_video": {"mode": "clip", "clip_s": 1}},
                "filter": {"enabled": True, "type": "median", "window_length": 5},
                "videos": [{"id": 1, "path": str(video), "frames": 60, "fps": 30.0}]}
        (tmp_path / f"{name}.json").write_text(json.dumps(spec))
        completed = subprocess.run([sys.executable, "-m", "dlcwatch.worker", str(tmp_path / f"{name}.json")],
                                   capture_output=True, text=True, timeout=300)
        assert completed.returncode == 0, completed.stderr[-3000:]
        results[name] = read_json(work / "result.json")["videos"]["1"]
    box = results["box"]
    assert box["status"] == "ok" and box["tracking"]["frames"] == 60 and box["tracking"]["frames_tracked"] >= 20
    assert box["outputs"]["keypoints_h5"].endswith("_bx.h5") and box["outputs"]["dlc_tracklets"].endswith("_bx.pickle")
    assert box["outputs"]["keypoints_filtered_h5"].endswith("_bx_filtered.h5") and "labeled_video" in box["outputs"]
    untracked = results["untracked"]
    assert untracked["status"] == "ok" and untracked["tracking"] == {"frames": 60, "auto_track": False}
    table = pd.read_hdf(untracked["outputs"]["keypoints_h5"], key="df_with_missing")
    assert len(table) == 60 and "individuals" in table.columns.names
    assert not {"keypoints_filtered_h5", "labeled_video", "dlc_tracklets"} & set(untracked["outputs"])
