"""Build a tiny, real DeepLabCut project offline on the CPU in seconds (demo and tests).

synthetic video → create_new_project → labels written from the known truth → training dataset
→ train a 0.5 M-parameter network from random weights → a model DeepLabCut analyzes with.

Training starts from a random-initialised snapshot passed to train_network: DeepLabCut 3.0.2
otherwise asks timm for ImageNet weights, a download that must never happen here.

Run as `python -m dlcwatch.demo.tinydlc FOLDER`; prints the path of the project's config.yaml.
"""

from __future__ import annotations

import argparse
import copy
import os
import sys
from pathlib import Path

import numpy as np

from dlcwatch.demo.synthetic import BODYPARTS, draw_frame, positions, write_video

BACKBONE = "test_resnet"  # timm's smallest ResNet: 96 output channels
BACKBONE_CHANNELS = 96


def build_tiny_project(folder: str | Path, *, epochs: int = 30, frames: int = 150, size: int = 128,
                       labeled: int = 20) -> Path:
    """Given an empty or missing folder, build and train a tiny project there; return its config.yaml."""
    config = labelled_project(folder, "tiny", {"engine": "pytorch"}, frames=frames, size=size, labeled=labeled)
    train_from_random_weights(config, config.parent, epochs=epochs, size=size)
    return config


def labelled_project(folder: str | Path, task: str, settings: dict, *, frames: int, size: int, labeled: int) -> Path:
    """Given a folder, a task name and config.yaml settings (the engine at least), create a project of one
    synthetic video there with `labeled` of its frames labelled from the known truth; return its config.yaml."""
    folder = Path(folder).absolute()
    video = write_video(folder / "training-video.mp4", frames=frames, size=size)
    config, scorer = create_offline_project(folder, task, video, {
        "bodyparts": list(BODYPARTS), "skeleton": [list(BODYPARTS)], "numframes2pick": labeled,
        "TrainingFraction": [0.8], "dotsize": 3, **settings,
    })
    label_from_truth(config, scorer, video, np.linspace(0, frames - 1, labeled).astype(int),
                     image=lambda frame: draw_frame(frame, frames, size),
                     points=lambda frame: [c for part in BODYPARTS for c in positions(frame, frames, size)[part]],
                     levels={"bodyparts": list(BODYPARTS)})
    return config


def create_offline_project(folder: Path, task: str, video: Path, settings: dict, **options) -> tuple[Path, str]:
    """Given a folder, a task name, a training video and config.yaml settings, create the DeepLabCut
    project there without touching the network; return its config.yaml and scorer."""
    os.environ.setdefault("DLClight", "True")
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    import deeplabcut
    from deeplabcut.utils import auxiliaryfunctions

    config = Path(deeplabcut.create_new_project(task, "dlcwatch", [str(video)], working_directory=str(folder),
                                                copy_videos=True, **options))
    auxiliaryfunctions.edit_config(str(config), settings)
    return config, auxiliaryfunctions.read_config(str(config))["scorer"]


def label_from_truth(config: Path, scorer: str, video: Path, frame_numbers, *, image, points, levels: dict) -> None:
    """Label frames of the training video as a person would in DeepLabCut's labelling GUI, from the
    known positions: image(frame) is the frame, points(frame) its x, y values in column order, and
    levels the column levels between scorer and coords ({"bodyparts": [...]}, or individuals first)."""
    import pandas as pd
    from PIL import Image

    labels = config.parent / "labeled-data" / video.stem
    labels.mkdir(parents=True, exist_ok=True)
    rows, index = [], []
    for frame in frame_numbers:
        name = f"img{frame:04d}.png"
        Image.fromarray(image(frame)).save(labels / name)
        rows.append(points(frame))
        index.append(("labeled-data", video.stem, name))
    columns = pd.MultiIndex.from_product([[scorer], *levels.values(), ["x", "y"]],
                                         names=["scorer", *levels, "coords"])
    save_labels(labels, scorer, rows, index, columns)


def save_labels(labels: Path, scorer: str, rows: list, index: list, columns) -> None:
    """Given the labels folder of a video and the labelled points, write them as the labelling GUI does."""
    import pandas as pd

    table = pd.DataFrame(np.array(rows, float), columns=columns, index=pd.MultiIndex.from_tuples(index))
    table.to_hdf(labels / f"CollectedData_{scorer}.h5", key="df_with_missing", mode="w")
    table.to_csv(labels / f"CollectedData_{scorer}.csv")


def train_from_random_weights(config: Path, project: Path, *, epochs: int, size: int) -> None:
    """Given a labelled project, make its training set and train the tiny backbone from random weights.

    The random-initialised snapshot handed to train_network is what keeps DeepLabCut from asking
    timm for ImageNet weights (a download that must never happen here)."""
    import torch
    import yaml

    import deeplabcut
    from deeplabcut.pose_estimation_pytorch.models import PoseModel

    deeplabcut.create_training_dataset(str(config), num_shuffles=1, net_type="resnet_50", userfeedback=False)
    pytorch_config_path = next(project.glob("dlc-models-pytorch/**/train/pytorch_config.yaml"))
    pytorch_config = yaml.safe_load(pytorch_config_path.read_text())
    model = pytorch_config["model"]
    model["backbone"]["model_name"] = BACKBONE
    model["backbone_output_channels"] = BACKBONE_CHANNELS
    for head in model["heads"].values():
        # A multi-animal head also predicts part-affinity fields, which read the backbone too.
        for part in ("heatmap_config", "locref_config", "paf_config"):
            if part in head:
                head[part]["channels"][0] = BACKBONE_CHANNELS
    crop = pytorch_config["data"]["train"].get("crop_sampling")
    if crop:
        crop.update({"width": size, "height": size})
    pytorch_config["train_settings"].update({"epochs": epochs, "batch_size": 4, "display_iters": 1000})
    pytorch_config["runner"]["snapshots"].update({"save_epochs": epochs, "max_snapshots": 1})
    pytorch_config["runner"]["eval_interval"] = epochs
    pytorch_config["device"] = "cpu"
    pytorch_config_path.write_text(yaml.safe_dump(pytorch_config, sort_keys=False))

    initial = pytorch_config_path.parent / "random-initial-weights.pt"
    network = PoseModel.build(copy.deepcopy(model), pretrained_backbone=False)
    torch.save({"model": network.state_dict(), "metadata": {"epoch": 0}}, initial)
    deeplabcut.train_network(str(config), shuffle=1, device="cpu", snapshot_path=str(initial))
    initial.unlink()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m dlcwatch.demo.tinydlc",
                                     description="Build and train a tiny DeepLabCut project offline.")
    parser.add_argument("folder", help="where to create the project")
    parser.add_argument("--epochs", type=int, default=30, help="training epochs (default 30)")
    args = parser.parse_args(argv)
    config = build_tiny_project(args.folder, epochs=args.epochs)
    print(config)
    return 0


if __name__ == "__main__":
    sys.exit(main())
