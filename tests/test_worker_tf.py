"""The worker with a TensorFlow-engine model: DeepLabCut's session built once per job, with AutoGraph
off, and exactly the files deeplabcut.analyze_videos (AutoGraph on, DeepLabCut's default) writes.

Runs in the TensorFlow job environment (conftest's tf_python: scripts/install-dlc.sh --tf), with
a tiny TensorFlow model trained offline (conftest's tiny_tf_model)."""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

from conftest import REPO
from dlc_outputs import assert_same_outputs, job_project, run_analyze_videos, spec_for, staged_copies
from dlcwatch.demo.synthetic import write_video
from dlcwatch.jobs.spec import BAD_VIDEO, EXIT_BAD_INPUT, OK, read_json, write_json_atomic

# The worker in the TensorFlow environment with two spies: DeepLabCut's session builder records
# AutoGraph's status each time it runs, and analyze_videos refuses to run.
RUN_WITH_SPIES = """
import json, sys
import deeplabcut
from deeplabcut.pose_estimation_tensorflow.core import predict
from tensorflow.python.autograph.core import ag_ctx
from dlcwatch.jobs.spec import read_json
from dlcwatch.worker.job import run_job

builds = []
build_session = predict.setup_GPUpose_prediction
def recording(*args, **kwargs):
    builds.append(ag_ctx.control_status_ctx().status.name)
    return build_session(*args, **kwargs)
def refuse(*args, **kwargs):
    raise AssertionError("the worker called analyze_videos")
predict.setup_GPUpose_prediction = recording
deeplabcut.analyze_videos = refuse
code = run_job(read_json(sys.argv[1]))
print(json.dumps({"exit_code": code, "autograph_at_each_build": builds}))
"""


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
    write_json_atomic(work / "spec.json", spec)

    completed = subprocess.run([str(tf_python), "-c", RUN_WITH_SPIES, str(work / "spec.json")],
                               capture_output=True, text=True, timeout=900, env=tf_environment())

    assert completed.returncode == 0, completed.stdout[-2000:] + completed.stderr[-4000:]
    ran = json.loads(completed.stdout.strip().splitlines()[-1])
    assert ran == {"exit_code": EXIT_BAD_INPUT, "autograph_at_each_build": ["DISABLED"]}
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
