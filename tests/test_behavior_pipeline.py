"""Behavior labels inside the pipeline: real DeepLabCut keypoints, then a trained behavior model."""

import hashlib
from pathlib import Path

import pandas as pd
import pytest

from behavior_synth import make_trajectory, to_dlc_table, write_dlc
from conftest import needs_dlc, write_config
from dlcwatch.behavior.train import train_and_save
from dlcwatch.jobs.spec import read_json
from dlcwatch.states import VideoState as S
from dlcwatch.store import Store
from dlcwatch.demo.synthetic import write_video
from test_pipeline import run_until_idle

pytestmark = needs_dlc


@pytest.fixture(scope="module")
def behavior_models(tmp_path_factory):
    """Two behavior models from synthetic trajectories: one on the tiny model's body parts
    (head, tail), one on eight other body parts (a mismatch)."""
    folder = tmp_path_factory.mktemp("behavior")
    trajectory = make_trajectory(240, fps=30.0, seed=3)
    # Eight named points; the matching model uses two of them under the tiny model's names.
    names = ("head", "left_ear", "right_ear", "neck", "left_hip", "right_hip", "tail", "tail_tip")
    keypoints = write_dlc(to_dlc_table(trajectory.xy, trajectory.likelihood, names), folder / "train.h5")
    matching = train_and_save([keypoints], folder / "head-tail.joblib", 30.0, bodyparts=["head", "tail"])
    eight = train_and_save([keypoints], folder / "eight.joblib", 30.0)
    return Path(matching["model"]), Path(eight["model"])


def test_every_frame_gets_a_label_delivered_with_the_keypoints(tiny_model, behavior_models, tmp_path):
    matching, _ = behavior_models
    config = write_config(tmp_path, tiny_model, watch={"settle_s": 0.2}, behavior={"model": str(matching)})
    source = write_video(tmp_path / "videos" / "rat é.mp4", frames=60)
    run_until_idle(config)
    [video] = Store(tmp_path / "state" / "dlcwatch.db").videos()
    assert video.state is S.DONE, video.reason
    folder = Path(video.output_dir)
    labels = pd.read_csv(folder / "rat é_behavior.csv")
    assert list(labels.columns[:5]) == ["frame", "time", "label_id", "label_name", "probability"]
    assert len(labels) == 60 and labels["frame"].tolist() == list(range(60))
    manifest = read_json(folder / "manifest.json")
    for kind in ("behavior_csv", "ethogram_png", "qc_png"):
        entry = manifest["outputs"][kind]
        assert hashlib.sha256((folder / entry["file"]).read_bytes()).hexdigest() == entry["sha256"]
    assert manifest["source"]["sha256"] == hashlib.sha256(source.read_bytes()).hexdigest()


def test_a_body_part_mismatch_still_delivers_the_keypoints(tiny_model, behavior_models, tmp_path):
    _, eight = behavior_models
    config = write_config(tmp_path, tiny_model, watch={"settle_s": 0.2}, behavior={"model": str(eight)})
    write_video(tmp_path / "videos" / "m.mp4", frames=40)
    run_until_idle(config)
    [video] = Store(tmp_path / "state" / "dlcwatch.db").videos()
    assert video.state is S.DONE
    assert "behavior labels failed" in video.reason
    assert "head" in video.reason and "left_ear" in video.reason  # both body-part lists are named
    manifest = read_json(Path(video.output_dir) / "manifest.json")
    assert "keypoints_h5" in manifest["outputs"] and "behavior_csv" not in manifest["outputs"]
