"""The worker builds the model once per job and writes exactly what deeplabcut.analyze_videos writes.

Real tiny PyTorch models (single- and two-animal), real videos; the reference is a plain
`analyze_videos` call on the same model and videos, in a process of its own."""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from conftest import needs_dlc
from dlc_outputs import (assert_same_outputs, assert_same_table, deeplabcut_files, job_project,
                         run_analyze_videos, run_spied_worker, spec_for, staged_copies)
from dlcwatch.demo import tinymadlc
from dlcwatch.demo.synthetic import write_video
from dlcwatch.jobs.spec import BAD_VIDEO, EXIT_BAD_INPUT, EXIT_OK, OK, read_json

pytestmark = needs_dlc

PYTORCH_RUNNER = "deeplabcut.pose_estimation_pytorch:get_pose_inference_runner"


def test_one_model_load_for_the_job_and_the_files_analyze_videos_writes(tiny_model, tmp_path):
    first = write_video(tmp_path / "in" / "first.mp4", frames=40)
    damaged = write_video(tmp_path / "in" / "damaged.mp4", frames=40, phase=0.5)
    damaged.write_bytes(damaged.read_bytes()[: damaged.stat().st_size // 2])  # the copy stopped half way
    last = write_video(tmp_path / "in" / "last.mp4", frames=50, phase=1.1)
    work = tmp_path / "job"
    work.mkdir()
    spec = spec_for(tiny_model, work, [{"id": 1, "path": str(first), "frames": 40},
                                       {"id": 2, "path": str(damaged), "frames": 40},
                                       {"id": 3, "path": str(last), "frames": 50}])

    ran = run_spied_worker(spec, work, PYTORCH_RUNNER)

    assert ran == {"exit_code": EXIT_BAD_INPUT, "builds": [None]}  # one pose runner, no analyze_videos
    result = read_json(work / "result.json")
    assert result["model_loads"] == "once per job" and result["engine"] == "pytorch"
    assert set(result["timings"]) == {"import_s", "prepare_s", "model_s"}
    assert result["load_seconds"] >= result["timings"]["model_s"] > 0
    videos = result["videos"]
    # The damaged video in the middle costs only itself; the model goes on to the next one.
    assert videos["2"]["status"] == BAD_VIDEO and "could not be opened" in videos["2"]["message"]
    assert [videos[key]["status"] for key in ("1", "3")] == [OK, OK]
    for key, frames in (("1", 40), ("3", 50)):
        entry = videos[key]
        assert entry["frames"] == frames
        assert {"stage_s", "inference_s", "write_s", "check_s", "qc_s"} <= set(entry["timings"])
        assert entry["timings"]["inference_s"] > 0 and entry["seconds"] >= entry["timings"]["inference_s"]
        assert Path(entry["outputs"]["qc_png"]).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"

    reference = tmp_path / "analyze_videos"
    scorer = run_analyze_videos(job_project(work), staged_copies({1: first, 3: last}, tmp_path / "staged"), reference,
                                save_as_csv=True, batch_size=4, device="cpu")
    for key in ("1", "3"):
        entry = videos[key]
        assert entry["scorer"] == scorer
        compared = assert_same_outputs(Path(entry["outputs"]["keypoints_h5"]).parent, reference,
                                       entry["staged_stem"])
        assert {name[len(entry["staged_stem"]) + len(scorer):] for name in compared} == {
            ".h5", ".csv", "_meta.pickle", "_full.pickle"}


def test_two_animals_tracked_with_one_model_load_as_analyze_videos_tracks_them(tiny_ma_model, tmp_path):
    videos = {1: tinymadlc.write_video(tmp_path / "in" / "pair.mp4", frames=60, phase=0.9),
              2: tinymadlc.write_video(tmp_path / "in" / "leaving.mp4", frames=60, phase=0.3, leave_at=45)}
    work = tmp_path / "job"
    work.mkdir()
    spec = spec_for(tiny_ma_model, work, [{"id": key, "path": str(path), "frames": 60} for key, path in videos.items()],
                    batch_size=8, multi_animal={"auto_track": True})
    spec["qc_picture"] = False

    ran = run_spied_worker(spec, work, PYTORCH_RUNNER)

    assert ran == {"exit_code": EXIT_OK, "builds": [None]}
    result = read_json(work / "result.json")
    reference = tmp_path / "analyze_videos"
    run_analyze_videos(job_project(work), staged_copies(videos, tmp_path / "staged"), reference, save_as_csv=True,
                       batch_size=8, device="cpu", auto_track=True)
    for key in ("1", "2"):
        entry = result["videos"][key]
        assert entry["status"] == OK and "track_s" in entry["timings"] and "qc_png" not in entry["outputs"]
        ours, stem = Path(entry["outputs"]["keypoints_h5"]).parent, entry["staged_stem"]
        tracked = {name for name in deeplabcut_files(reference, stem) if name.endswith(("_el.h5", "_el.csv"))}
        compared = assert_same_outputs(ours, reference, stem, rewritten=tracked)
        assert {name[len(stem) + len(entry["scorer"]):] for name in compared} == {
            "_full.pickle", "_assemblies.pickle", "_meta.pickle", "_el.pickle", "_el.h5", "_el.csv"}
        # The tracked table is the one DeepLabCut's stitcher wrote, given one row per frame under
        # the usual HDF key (worker/dlc.py: complete_tracked_table).
        table = next(name for name in tracked if name.endswith(".h5"))
        assert_same_table(pd.read_hdf(ours / table, key="df_with_missing"),
                          pd.read_hdf(reference / table).reindex(range(60)))
