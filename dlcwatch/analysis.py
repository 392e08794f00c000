"""Everything that talks to DeepLabCut, inside a job.

Imported only by the worker; deeplabcut itself is imported lazily, inside load_deeplabcut(),
so the daemon never needs it.
"""

from __future__ import annotations

import os
import shutil
import time
from dataclasses import dataclass
from pathlib import Path

import yaml

# Folders of a DeepLabCut project that hold trained models; linked, never copied (they are large).
MODEL_FOLDERS = ("dlc-models-pytorch", "dlc-models")


@dataclass(frozen=True)
class Model:
    config: Path          # the job's private config.yaml
    shuffle: int
    trainingsetindex: int
    batch_size: int
    device: str
    engine: str


def load_deeplabcut():
    """Import deeplabcut without its GUI and without any network access; return the module."""
    os.environ.setdefault("DLClight", "True")
    # Inference must never fetch weights: a cluster node usually has no internet, and a silent
    # download of a different model would be worse than an error.
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    import deeplabcut

    return deeplabcut


def prepare_project(project_config: Path, view: Path) -> Path:
    """Given the lab's config.yaml, build a private project view in `view`; return its config.yaml.

    DeepLabCut rewrites config.yaml when project_path does not match the folder it is read from.
    A private copy lets a moved project or a read-only share work, and keeps concurrent jobs from
    writing the same file. Model folders are linked; training-dataset files are linked one by one
    so that anything DeepLabCut writes there lands in the view, not in the lab's project."""
    project = project_config.resolve().parent
    if view.exists():
        shutil.rmtree(view)
    view.mkdir(parents=True)
    config = yaml.safe_load(project_config.read_text(encoding="utf-8"))
    if not isinstance(config, dict):
        raise ValueError(f"{project_config} is not a DeepLabCut config (no mapping inside)")
    config["project_path"] = str(view)
    (view / "config.yaml").write_text(yaml.safe_dump(config, sort_keys=False, allow_unicode=True), encoding="utf-8")
    found_model = False
    for name in MODEL_FOLDERS:
        if (project / name).is_dir():
            (view / name).symlink_to(project / name, target_is_directory=True)
            found_model = True
    if not found_model:
        raise FileNotFoundError(f"{project} has no trained model folder ({' or '.join(MODEL_FOLDERS)})")
    datasets = project / "training-datasets"
    if datasets.is_dir():
        for source in datasets.rglob("*"):
            target = view / "training-datasets" / source.relative_to(datasets)
            if source.is_dir():
                target.mkdir(parents=True, exist_ok=True)
            else:
                target.parent.mkdir(parents=True, exist_ok=True)
                target.symlink_to(source)
    else:
        (view / "training-datasets").mkdir()
    return view / "config.yaml"


def resolve_model(deeplabcut, config: Path, shuffle: int, trainingsetindex: int, batch_size: int,
                  device: str) -> Model:
    """Given the private config and the model settings, return a Model with its engine known."""
    engine = ""
    try:
        from deeplabcut.generate_training_dataset.metadata import get_shuffle_engine

        engine = str(getattr(get_shuffle_engine(str(config), trainingsetindex, shuffle), "aliases", [""])[0])
    except Exception:  # noqa: BLE001 - older projects: fall back to what config.yaml says
        engine = ""
    if not engine:
        engine = str(yaml.safe_load(config.read_text()).get("engine") or "tensorflow")
    return Model(config, shuffle, trainingsetindex, batch_size, _device(device), engine.lower())


def _device(device: str) -> str:
    if device != "auto":
        return device
    try:
        import torch

        return "cuda" if torch.cuda.is_available() else "cpu"
    except ImportError:
        return "cpu"


def analyze(deeplabcut, model: Model, video: Path, destination: Path) -> str:
    """Given a staged video, write DeepLabCut's keypoints for it into `destination`; return the scorer."""
    kwargs = dict(shuffle=model.shuffle, trainingsetindex=model.trainingsetindex, save_as_csv=True,
                  destfolder=str(destination), batch_size=model.batch_size)
    if "pytorch" in model.engine:
        kwargs["device"] = model.device
    elif model.device.startswith("cuda"):
        kwargs["gputouse"] = int(model.device.partition(":")[2] or 0)
    # An explicit list of files, never a folder: DeepLabCut would pick up anything else in it.
    return str(deeplabcut.analyze_videos(str(model.config), [str(video)], **kwargs))


def filter_predictions(deeplabcut, model: Model, video: Path, destination: Path, filter_type: str,
                       window_length: int) -> None:
    deeplabcut.filterpredictions(str(model.config), [str(video)], shuffle=model.shuffle,
                                 trainingsetindex=model.trainingsetindex, filtertype=filter_type,
                                 windowlength=window_length, save_as_csv=True, destfolder=str(destination))


def find_outputs(destination: Path, stem: str) -> dict[str, Path]:
    """Given the analysis folder of one video, return its keypoint files by kind."""
    outputs = {}
    for path in sorted(destination.iterdir()):
        name = path.name
        if not name.startswith(stem + "DLC"):  # keypoint files carry the scorer, "DLC_…"
            continue
        filtered = name.endswith(("_filtered.h5", "_filtered.csv"))
        if name.endswith(".h5"):
            outputs["keypoints_filtered_h5" if filtered else "keypoints_h5"] = path
        elif name.endswith(".csv"):
            outputs["keypoints_filtered_csv" if filtered else "keypoints_csv"] = path
    return outputs


def count_rows(h5_path: Path) -> int:
    """Given a DeepLabCut .h5, return how many frames it has rows for. Raise on an unreadable file."""
    import pandas as pd

    return len(pd.read_hdf(h5_path))


def dlc_version(deeplabcut) -> str:
    return str(getattr(deeplabcut, "__version__", "unknown"))


def elapsed(start: float) -> float:
    return round(time.monotonic() - start, 3)
