"""The worker with a real tiny DeepLabCut model, in a real subprocess."""

import shutil
import subprocess
import sys

import cv2
import pandas as pd
import pytest

from conftest import needs_dlc
from dlcwatch.jobs.spec import (BAD_VIDEO, EXIT_BAD_INPUT, MISSING, OK, SPEC_VERSION, LabeledVideo, VideoTask, read_json,
                                write_json_atomic)
from dlcwatch.demo.synthetic import write_video

pytestmark = needs_dlc


def run_worker(spec_path):
    return subprocess.run([sys.executable, "-m", "dlcwatch.worker", str(spec_path)], capture_output=True,
                          text=True, timeout=600)


def test_worker_analyzes_checks_frames_and_reports_each_video(tiny_model, tmp_path):
    # The lab's project, moved after training: the worker must not care, nor touch its config.
    project = tmp_path / "moved project"
    shutil.copytree(tiny_model.parent, project, symlinks=True)
    config_before = (project / "config.yaml").read_bytes()
    good = write_video(tmp_path / "in" / "souris_été $(x).mp4", frames=40)
    lying = write_video(tmp_path / "in" / "short.mp4", frames=30)
    work = tmp_path / "job"
    # A partial output of an earlier attempt: DeepLabCut would skip the video because of it.
    stale = work / "video1" / "output" / "video1DLC_stale_full.pickle"
    stale.parent.mkdir(parents=True)
    stale.write_bytes(b"partial")
    spec = {
        "version": SPEC_VERSION, "job_id": 9, "work_dir": str(work), "result": str(work / "result.json"),
        "model": {"config": str(project / "config.yaml"), "shuffle": 1, "trainingsetindex": 0, "batch_size": 4,
                  "device": "cpu", "labeled_video": {"mode": "full"}},
        "filter": {"enabled": True, "type": "median", "window_length": 5},
        "videos": [{"id": 1, "path": str(good), "frames": 40},
                   {"id": 2, "path": str(lying), "frames": 31},  # ffprobe "said" 31: a mismatch
                   {"id": 3, "path": str(tmp_path / "in" / "deleted.mp4"), "frames": 10}],
    }
    write_json_atomic(work / "spec.json", spec)
    completed = run_worker(work / "spec.json")
    assert completed.returncode == EXIT_BAD_INPUT, completed.stderr[-3000:]
    result = read_json(work / "result.json")
    assert result["finished"] and result["exit_code"] == EXIT_BAD_INPUT
    assert result["engine"] == "pytorch" and result["dlc_version"] == "3.0.2"
    first, second, third = (result["videos"][key] for key in ("1", "2", "3"))
    assert first["status"] == OK and first["frames"] == 40
    # DeepLabCut's meta pickle (its tools need it beside the table), not its full pickle (the table holds that).
    assert set(first["outputs"]) == {"keypoints_h5", "keypoints_csv", "keypoints_filtered_h5",
                                     "keypoints_filtered_csv", "qc_png", "dlc_meta", "labeled_video"}
    assert first["outputs"]["dlc_meta"].endswith("_meta.pickle")
    assert first["labeled_video"]["mode"] == "full" and first["outputs"]["labeled_video"].endswith("_labeled.mp4")
    capture = cv2.VideoCapture(first["outputs"]["labeled_video"])
    assert int(capture.get(cv2.CAP_PROP_FRAME_COUNT)) == 40
    capture.release()
    with open(first["outputs"]["qc_png"], "rb") as picture:
        assert picture.read(8) == b"\x89PNG\r\n\x1a\n"
    assert len(pd.read_hdf(first["outputs"]["keypoints_h5"])) == 40
    assert not stale.exists()
    assert second["status"] == BAD_VIDEO and "30 rows but ffprobe counted 31" in second["message"]
    assert third["status"] == MISSING
    assert (project / "config.yaml").read_bytes() == config_before


def test_a_model_that_cannot_load_fails_the_attempt_not_the_video(tmp_path):
    video = write_video(tmp_path / "v.mp4", frames=10)
    broken = tmp_path / "broken" / "config.yaml"
    broken.parent.mkdir()
    broken.write_text("Task: broken\nproject_path: /nowhere\n")
    spec = {"version": SPEC_VERSION, "job_id": 1, "work_dir": str(tmp_path / "job"),
            "result": str(tmp_path / "job" / "result.json"),
            "model": {"config": str(broken), "shuffle": 1, "trainingsetindex": 0, "batch_size": 1, "device": "cpu"},
            "videos": [{"id": 5, "path": str(video), "frames": 10}]}
    write_json_atomic(tmp_path / "spec.json", spec)
    completed = run_worker(tmp_path / "spec.json")
    assert completed.returncode == 75
    entry = read_json(tmp_path / "job" / "result.json")["videos"]["5"]
    assert entry["status"] == "error" and "no trained model folder" in entry["message"]


@pytest.mark.parametrize("content, said", [("{not json", "not JSON"),
                                           ('{"version": 99}', "run the same dlcwatch version on both sides")])
def test_an_unreadable_spec_is_a_usage_error(tmp_path, content, said):
    (tmp_path / "spec.json").write_text(content)
    completed = run_worker(tmp_path / "spec.json")
    assert completed.returncode == 64 and "cannot read the job spec" in completed.stderr and said in completed.stderr


def test_a_labeled_video_that_fails_costs_only_itself(tmp_path):
    """The clip cannot be cut from a file OpenCV cannot read: the entry says why, nothing is raised."""
    import numpy as np

    from dlcwatch.worker import dlc as analysis, job as worker

    columns = pd.MultiIndex.from_product([["DLC_x"], ["head"], ["x", "y", "likelihood"]],
                                         names=["scorer", "bodyparts", "coords"])
    table = tmp_path / "video1DLC_x.h5"
    pd.DataFrame(np.ones((30, 3)), columns=columns).to_hdf(table, key="df_with_missing")
    staged = tmp_path / "video1.mp4"
    staged.write_text("not a video\n")
    model = analysis.Model(tmp_path / "config.yaml", 1, 0, 4, "cpu", "pytorch")
    entry = {"status": OK}
    made = worker._labeled_video(None, model, staged, tmp_path, {"keypoints_h5": table},
                                 VideoTask(1, str(staged), 30, 30.0), LabeledVideo("clip", 1), entry)
    assert made == {} and "OpenCV could not read" in entry["labeled_video_error"]
    assert "labeled_video" not in entry and entry["status"] == OK
    assert not (tmp_path / analysis.LABELED_CLIP_FOLDER).exists()  # its working folder is gone too
