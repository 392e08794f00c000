"""Build a tiny, real two-animal DeepLabCut project offline on the CPU (tests and trying things out).

A synthetic arena with two identical "mice" (a grey body with four coloured marks: nose, left,
right, tail) → create_new_project(multianimal=True) → labels written from the known truth →
training dataset (bottom-up backbone with part-affinity fields) → the backbone swapped for timm's
smallest ResNet and trained from random weights → a model that analyze_videos tracks with.

Like tinydlc.py, training starts from a random-initialised snapshot passed to train_network:
DeepLabCut 3.0.2 otherwise asks timm for ImageNet weights, a download that must never happen.

The four marks are not on one line on purpose: DeepLabCut's default "ellipse" tracker fits an
ellipse to each animal's keypoints, and collinear keypoints give a degenerate one.

Run as `python -m dlcwatch.demo.tinymadlc FOLDER`; prints the path of the project's config.yaml.
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

import numpy as np

from dlcwatch.demo.synthetic import encode_video
from dlcwatch.demo.tinydlc import create_offline_project, label_from_truth, train_from_random_weights

INDIVIDUALS = ("mouse1", "mouse2")
BODYPARTS = ("nose", "left", "right", "tail")
# Each mark's centre relative to the animal's centre, in pixels, and its colour (RGB).
MARKS = {"nose": ((-9, 0), (230, 30, 30)), "left": ((0, -6), (240, 220, 40)),
         "right": ((0, 6), (40, 80, 240)), "tail": ((9, 0), (40, 200, 60))}
BODY_HALF = (12, 8)   # half width and half height of the grey body
MARK_HALF = 3         # marks are 7 x 7 pixels
FPS = 30


def centres(frame: int, size: int, phase: float = 0.0) -> list[tuple[float, float]]:
    """Given a frame index and the frame size, return each animal's true centre (x, y)."""
    t = frame / FPS + phase
    half = size / 2
    return [(half + 0.30 * size * np.cos(2 * np.pi * t / 4), 0.27 * size + 0.08 * size * np.sin(2 * np.pi * t / 2)),
            (half + 0.30 * size * np.sin(2 * np.pi * t / 3), 0.73 * size + 0.08 * size * np.cos(2 * np.pi * t / 2.5))]


def truth(frame: int, size: int, phase: float = 0.0) -> dict[str, dict[str, tuple[int, int]]]:
    """Given a frame index, return {individual: {body part: (x, y)}} as drawn (whole pixels)."""
    out = {}
    for individual, (x, y) in zip(INDIVIDUALS, centres(frame, size, phase)):
        cx, cy = int(round(x)), int(round(y))
        out[individual] = {part: (cx + dx, cy + dy) for part, ((dx, dy), _) in MARKS.items()}
    return out


def draw_frame(frame: int, size: int, phase: float = 0.0, animals: int = 2) -> np.ndarray:
    """Given a frame index, return the arena with `animals` animals in it as an RGB uint8 array."""
    image = np.full((size, size, 3), 20, np.uint8)
    for individual in INDIVIDUALS[:animals]:
        parts = truth(frame, size, phase)[individual]
        cx = (parts["nose"][0] + parts["tail"][0]) // 2
        cy = parts["nose"][1]
        _fill(image, cx, cy, *BODY_HALF, (128, 128, 128))
        for part, (x, y) in parts.items():
            _fill(image, x, y, MARK_HALF, MARK_HALF, MARKS[part][1])
    return image


def _fill(image: np.ndarray, x: int, y: int, half_width: int, half_height: int, colour) -> None:
    size = image.shape[0]
    image[max(0, y - half_height):min(size, y + half_height + 1),
          max(0, x - half_width):min(size, x + half_width + 1)] = colour


def write_video(path: str | Path, frames: int = 120, size: int = 128, phase: float = 0.0, animals: int = 2,
                leave_at: int | None = None) -> Path:
    """Given a path, write a two-animal arena video there and return the path.

    `animals` 0 gives an empty arena; `leave_at` a frame index from which the arena is empty."""
    path = Path(path).absolute()
    path.parent.mkdir(parents=True, exist_ok=True)
    return encode_video(path, (draw_frame(index, size, phase, 0 if leave_at is not None and index >= leave_at
                                          else animals) for index in range(frames)), size, FPS)


def build_tiny_multi_animal_project(folder: str | Path, *, epochs: int = 25, frames: int = 300, size: int = 128,
                                    labeled: int = 30) -> Path:
    """Given an empty or missing folder, build and train a two-animal project there; return its config.yaml."""
    folder = Path(folder).absolute()
    video = write_video(folder / "training-video.mp4", frames=frames, size=size)
    config, scorer = create_offline_project(folder, "tinyma", video, {
        "individuals": list(INDIVIDUALS), "uniquebodyparts": [], "multianimalbodyparts": list(BODYPARTS),
        "bodyparts": "MULTI!", "skeleton": [["nose", "left"], ["nose", "right"], ["left", "tail"], ["right", "tail"]],
        "numframes2pick": labeled, "TrainingFraction": [0.9], "engine": "pytorch",
        "default_track_method": "ellipse", "dotsize": 3,
    }, multianimal=True)
    label_from_truth(config, scorer, video, np.linspace(0, frames - 1, labeled).astype(int),
                     image=lambda frame: draw_frame(frame, size),
                     points=lambda frame: [c for individual in INDIVIDUALS for part in BODYPARTS
                                           for c in truth(frame, size)[individual][part]],
                     levels={"individuals": list(INDIVIDUALS), "bodyparts": list(BODYPARTS)})
    train_from_random_weights(config, config.parent, epochs=epochs, size=size)
    return config


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m dlcwatch.demo.tinymadlc",
                                     description="Build and train a tiny two-animal DeepLabCut project offline.")
    parser.add_argument("folder", help="where to create the project")
    parser.add_argument("--epochs", type=int, default=25, help="training epochs (default 25)")
    parser.add_argument("--threads", type=int, default=1,
                        help="torch threads (default 1: on a busy 2-core machine 2 threads trained 16x slower)")
    parser.add_argument("--seed", type=int, default=0, help="random seed of the initial weights and training")
    args = parser.parse_args(argv)
    import random

    import torch

    torch.set_num_threads(args.threads)
    # The same model from one run to the next on one machine: tests compare tracking results.
    random.seed(args.seed)
    np.random.seed(args.seed)
    torch.manual_seed(args.seed)
    config = build_tiny_multi_animal_project(args.folder, epochs=args.epochs)
    print(config)
    return 0


if __name__ == "__main__":
    sys.exit(main())
