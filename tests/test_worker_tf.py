"""The worker with a TensorFlow-engine model: DeepLabCut's session built once per job, with AutoGraph
off, and exactly the files deeplabcut.analyze_videos (AutoGraph on, DeepLabCut's default) writes.

Runs in the TensorFlow job environment (conftest's tf_python: scripts/install-dlc.sh --tf), with
a tiny TensorFlow model trained offline (conftest's tiny_tf_model)."""

from __future__ import annotations

import os
from pathlib import Path

from conftest import REPO
from dlc_outputs import assert_same_outputs, job_project, run_analyze_videos, run_spied_worker, spec_for, staged_copies
from dlcwatch.demo.synthetic import write_video
from dlcwatch.jobs.spec import BAD_VIDEO, EXIT_BAD_INPUT, OK, read_json

TENSORFLOW_SESSION = "deeplabcut.pose_estimation_tensorflow.core.predict:setup_GPUpose_prediction"


def tf_environment() -> dict:
    return {**os.environ, "PYTHONPATH": str(REPO), "TF_CPP_MIN_LOG_LEVEL": "3", "CUDA_VISIBLE_DEVICES": ""}


def test_tensorflow_model_built_once_with_autograph_off_writes_what_analyze_videos_writes(
        tf_python, tiny_tf_model, tmp_path):
    first = write_video(tmp_path / "in" / "first.mp4", frames=40)
    damaged = write_video(tmp_path / "in" / "damaged.mp4", frames=40, phase=0.5)
    damaged.write_bytes(damaged.read_bytes()[: damaged.stat().st_size // 2])
    last = write_video(tmp_path / "in" / "last.mp4", frames=50, phase=1.1)
    work = tmp_path / "job"
    work.mkdir()
    spec = spec_for(tiny_tf_model, work, [{"id": 1, "path": str(first), "frames": 40},
                                          {"id": 2, "path": str(damaged), "frames": 40},
                                          {"id": 3, "path": str(last), "frames": 50}])

    ran = run_spied_worker(spec, work, TENSORFLOW_SESSION, python=str(tf_python), env=tf_environment())

    # One session, built with AutoGraph off; analyze_videos never called.
    assert ran == {"exit_code": EXIT_BAD_INPUT, "builds": ["DISABLED"]}
    result = read_json(work / "result.json")
    assert result["engine"] == "tensorflow" and result["model_loads"] == "once per job"
    videos = result["videos"]
    assert videos["2"]["status"] == BAD_VIDEO
    reference = tmp_path / "analyze_videos"
    scorer = run_analyze_videos(job_project(work), staged_copies({1: first, 3: last}, tmp_path / "staged"), reference,
                                python=str(tf_python), env=tf_environment(), save_as_csv=True, batch_size=4)
    for key, frames in (("1", 40), ("3", 50)):
        entry = videos[key]
        assert entry["status"] == OK and entry["frames"] == frames and entry["scorer"] == scorer
        assert {"inference_s", "write_s", "check_s", "qc_s"} <= set(entry["timings"])
        assert Path(entry["outputs"]["qc_png"]).is_file()
        compared = assert_same_outputs(Path(entry["outputs"]["keypoints_h5"]).parent, reference,
                                       entry["staged_stem"])
        assert {name[len(entry["staged_stem"]) + len(scorer):] for name in compared} == {
            ".h5", ".csv", "_meta.pickle"}
