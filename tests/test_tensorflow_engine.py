"""A TensorFlow-engine model (what most labs' DeepLabCut 2.x projects are) through the real daemon.

The daemon runs here, in an environment that must not import TensorFlow or DeepLabCut; its jobs run
in the TensorFlow environment (`executor.local.python`, fixture tf_python: scripts/install-dlc.sh
--tf, which CI builds). The model is a real one, trained once per session offline (tiny_tf_model).
"""

import importlib.util
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml

from conftest import REPO, cli, write_config
from dlcwatch.demo.synthetic import positions, write_video
from dlcwatch.jobs.spec import read_json
from dlcwatch.states import VideoState as S
from dlcwatch.store import Store
from test_pipeline import assert_delivered

# `dlcwatch ARGS...` with TensorFlow, DeepLabCut and PyTorch made unimportable: the daemon's own
# environment must do without them (only its jobs need them).
DAEMON_WITHOUT_DLC = """
import sys

class Refuse:
    def find_spec(self, name, path=None, target=None):
        if name.partition(".")[0] in ("tensorflow", "deeplabcut", "torch"):
            print(f"the daemon imported {name}", file=sys.stderr, flush=True)
            raise ImportError(f"{name} must not be needed by the daemon")
        return None

sys.meta_path.insert(0, Refuse())
from dlcwatch.cli import main
sys.exit(main(sys.argv[1:]))
"""


def daemon_until_idle(config_path: Path, timeout: float = 600) -> subprocess.CompletedProcess:
    """Run `dlcwatch run --until-idle` where TensorFlow, DeepLabCut and PyTorch cannot be imported."""
    completed = subprocess.run([sys.executable, "-c", DAEMON_WITHOUT_DLC, "run", "--until-idle", "--config",
                                str(config_path)], capture_output=True, text=True, timeout=timeout)
    assert "the daemon imported" not in completed.stderr, completed.stderr[-3000:]
    assert completed.returncode == 0, completed.stdout[-3000:] + completed.stderr[-3000:]
    return completed


def tf_lab(folder: Path, model: Path, python: Path | str, **executor) -> Path:
    """A lab config whose jobs run `python`, with filtering on; its path."""
    return write_config(folder, model, watch={"settle_s": 0.3, "rescan_interval_s": 0.5},
                        model={"filter": {"enabled": True}}, executor={"local": {"python": str(python)}, **executor})


def test_no_module_outside_the_job_side_imports_tensorflow_deeplabcut_or_torch():
    # Where there is no TensorFlow environment this still runs: every module the daemon, the command
    # line, the web page and the executors are made of, imported; none brings in what only jobs need.
    code = ("import importlib, pkgutil, sys, dlcwatch\n"
            "for found in pkgutil.walk_packages(dlcwatch.__path__, 'dlcwatch.'):\n"
            "    if not found.name.startswith(('dlcwatch.worker', 'dlcwatch.demo')) and not found.name.endswith('__main__'):\n"
            "        importlib.import_module(found.name)\n"
            "print(' '.join(sorted(name for name in sys.modules if name.partition('.')[0] in "
            "('tensorflow', 'deeplabcut', 'torch'))))\n")
    completed = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert completed.returncode == 0, completed.stderr[-3000:]
    assert completed.stdout.strip() == ""


def test_a_tensorflow_model_goes_through_the_daemon_end_to_end(tiny_tf_model, tf_python, tmp_path):
    config_path = tf_lab(tmp_path, tiny_tf_model, tf_python)
    videos = {"plain.mp4": (60, 0.0), "souris été/it's ü.avi": (45, 1.3)}
    sources = {name: write_video(tmp_path / "videos" / name, frames=frames, phase=phase)
               for name, (frames, phase) in videos.items()}

    daemon_until_idle(config_path)

    store = Store(tmp_path / "state" / "dlcwatch.db")
    assert store.counts() == {"done": 2}
    assert len(store.jobs()) == 1  # both videos in one job
    for video in store.videos():
        frames, phase = videos[video.relpath]
        manifest = assert_delivered(Path(video.output_dir), tmp_path / "results", sources[video.relpath],
                                    video.relpath, engine="tensorflow")
        tables = {kind: pd.read_hdf(Path(video.output_dir) / manifest["outputs"][kind]["file"])
                  for kind in ("keypoints_h5", "keypoints_filtered_h5")}
        for kind, table in tables.items():
            assert len(table) == frames, kind
            assert list(table.columns.names) == ["scorer", "bodyparts", "coords"]
            assert list(table.columns.get_level_values("bodyparts").unique()) == ["head", "tail"]
            assert list(table.columns.get_level_values("coords").unique()) == ["x", "y", "likelihood"]
            # DeepLabCut's scorer for a TF MobileNetV2-0.35 shuffle: DLC_mobnet_35_<task><date>shuffle1_<iterations>
            [scorer] = table.columns.get_level_values("scorer").unique()
            assert scorer.startswith("DLC_mobnet_35_tinytf") and scorer.endswith("shuffle1_300"), scorer
        pd.testing.assert_index_equal(tables["keypoints_h5"].columns, tables["keypoints_filtered_h5"].columns)
        # The keypoints follow the dots: a model fed the wrong frames, or a wrong order, would not.
        truth = np.array([positions(index, frames, 128, phase)["head"] for index in range(frames)])
        head = tables["keypoints_h5"].xs("head", axis=1, level="bodyparts")
        for axis, coordinate in enumerate(("x", "y")):
            found = head.xs(coordinate, axis=1, level="coords").to_numpy().ravel()
            assert np.corrcoef(found, truth[:, axis])[0, 1] > 0.7, (video.relpath, coordinate)


def test_without_tensorflow_in_the_job_environment_the_video_fails_saying_so_and_a_retry_delivers_it(
        tiny_tf_model, tf_python, tmp_path):
    # The daemon's own environment: DeepLabCut (PyTorch engine) without TensorFlow, as a lab gets it
    # from `pip install deeplabcut`.
    if importlib.util.find_spec("deeplabcut") is None or importlib.util.find_spec("tensorflow") is not None:
        pytest.skip("needs this environment to have DeepLabCut without TensorFlow (scripts/install-dlc.sh)")
    config_path = tf_lab(tmp_path, tiny_tf_model, sys.executable, max_attempts=1)
    source = write_video(tmp_path / "videos" / "m.mp4", frames=30)

    daemon_until_idle(config_path)

    store = Store(tmp_path / "state" / "dlcwatch.db")
    [video] = store.videos()
    assert video.state is S.FAILED
    # One line that names what is missing, not a traceback.
    assert "No module named 'tensorflow'" in video.reason, video.reason
    assert "scripts/install-dlc.sh --tf" in video.reason and sys.executable in video.reason, video.reason
    assert "Traceback" not in video.reason and "\n" not in video.reason and len(video.reason) < 800, video.reason
    assert source.exists() and not (tmp_path / "results" / "m").exists()

    # The fix the message names: the job environment with TensorFlow, then `dlcwatch retry`.
    tf_lab(tmp_path, tiny_tf_model, tf_python)
    retried = cli("retry", "--failed", "--config", str(config_path))
    assert retried.returncode == 0, retried.stdout + retried.stderr
    daemon_until_idle(config_path)
    [video] = store.videos()
    assert video.state is S.DONE
    assert_delivered(Path(video.output_dir), tmp_path / "results", source, "m.mp4", engine="tensorflow")


def test_a_tensorflow_model_without_its_snapshot_fails_the_video_saying_so(tiny_tf_model, tf_python, tmp_path):
    # A real fault: the project's trained weights are gone (a moved or half-copied model folder).
    project = tmp_path / "project"
    shutil.copytree(tiny_tf_model.parent, project, symlinks=True)
    snapshots = list(project.glob("dlc-models/**/train/snapshot-*"))
    assert snapshots
    for snapshot in snapshots:
        snapshot.unlink()
    config_path = tf_lab(tmp_path, project / "config.yaml", tf_python, max_attempts=1)
    source = write_video(tmp_path / "videos" / "m.mp4", frames=30)

    daemon_until_idle(config_path)

    [video] = Store(tmp_path / "state" / "dlcwatch.db").videos()
    assert video.state is S.FAILED
    assert "snapshot" in video.reason.lower() and "Traceback" not in video.reason, video.reason
    assert source.exists()


def test_the_tiny_tensorflow_model_is_made_offline_from_random_weights(tiny_tf_model, tf_python, tmp_path):
    folder = tiny_tf_model.parents[2]  # <session folder>/model/<project>/config.yaml
    assert not (folder / "network-attempts.log").exists(), (folder / "network-attempts.log").read_text()
    [metadata] = tiny_tf_model.parent.glob("training-datasets/*/*/metadata.yaml")
    assert yaml.safe_load(metadata.read_text())["shuffles"]
    assert "engine: tensorflow" in metadata.read_text()
    # Training started from the random backbone the builder wrote, not from downloaded ImageNet weights.
    [train_pose_cfg] = tiny_tf_model.parent.glob("dlc-models/**/train/pose_cfg.yaml")
    start = Path(yaml.safe_load(train_pose_cfg.read_text())["init_weights"])
    assert start.parent == folder / "model" / "random-weights" and start.with_suffix(".ckpt.index").exists()

    # The control: DeepLabCut's own route to those weights does try the network, and the guard that
    # watched the training above sees it and stops it before anything leaves the machine.
    log = tmp_path / "attempts.log"
    code = ("from deeplabcut.utils import auxfun_models, auxiliaryfunctions\n"
            "auxfun_models.check_for_weights('mobilenet_v2_0.35', auxiliaryfunctions.get_deeplabcut_path())\n")
    completed = subprocess.run([str(tf_python), str(REPO / "tests" / "no_network.py"), str(log), "-c", code],
                               capture_output=True, text=True, timeout=300,
                               env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3", "CUDA_VISIBLE_DEVICES": ""})
    assert completed.returncode != 0 and "NetworkRefused" in completed.stderr, completed.stderr[-2000:]
    assert log.read_text().startswith("urllib.Request"), log.read_text()
