"""Synthetic mouse trajectories with known behaviors, written as real DeepLabCut tables.

A top-down "mouse" of 8 body parts moves through bouts of four behaviors:

- ``rest``: still, only detection noise;
- ``walk``: straight ahead at about 5 body lengths a second, hips swinging with the gait;
- ``turn``: spinning in place, counter-clockwise on screen, about half a turn a second;
- ``rear``: standing up: seen from above the body shortens and the ears spread, head bobbing.

Bouts last 1.5–3 s. Positions get Gaussian detection noise, and about 2 % of detections are
"lost": a wrong position with a low likelihood, as DeepLabCut reports an occluded body part.
Everything is vectorised and seeded, so a file is the same on every run.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

BODYPARTS = ("nose", "left_ear", "right_ear", "neck", "left_hip", "right_hip", "tail_base", "tail_tip")
BEHAVIORS = ("rest", "walk", "turn", "rear")

# Body-frame templates (pixels, heading along +x): lying / walking shape and reared shape.
_FLAT = np.array([[40, 0], [28, 9], [28, -9], [20, 0], [-12, 11], [-12, -11], [-28, 0], [-70, 0]], float)
_REARED = np.array([[14, 0], [8, 14], [8, -14], [4, 0], [-12, 13], [-12, -13], [-28, 0], [-66, 0]], float)

SCORER = "DLC_resnet50_synthOct1shuffle1_100000"


@dataclass(frozen=True)
class Trajectory:
    """Positions (frames × 8 × 2), likelihoods (frames × 8) and the true behavior of each frame."""

    xy: np.ndarray
    likelihood: np.ndarray
    truth: np.ndarray  # index into BEHAVIORS
    fps: float


def make_trajectory(seconds: float, fps: float = 30.0, seed: int = 0, lost_fraction: float = 0.02) -> Trajectory:
    """Given a duration, frame rate and seed, return a Trajectory of random behavior bouts."""
    rng = np.random.default_rng(seed)
    n_frames = int(round(seconds * fps))
    truth = _bout_sequence(n_frames, fps, rng)

    is_walk = truth == BEHAVIORS.index("walk")
    is_turn = truth == BEHAVIORS.index("turn")
    is_rear = (truth == BEHAVIORS.index("rear")).astype(float)

    # Heading: turning rotates at −180°/s in (x, y), which is counter-clockwise on screen (y points down).
    heading_rate = np.where(is_turn, -np.pi, 0.0) + np.where(is_walk, rng.normal(0, 0.3, n_frames), 0.0)
    heading = rng.uniform(0, 2 * np.pi) + np.cumsum(heading_rate) / fps
    speed = np.where(is_walk, 150.0, 0.0)  # pixels per second
    step = np.stack([np.cos(heading), np.sin(heading)], axis=1) * speed[:, None] / fps
    centre = np.array([320.0, 240.0]) + np.cumsum(step, axis=0)

    # Blend between flat and reared shapes over about 0.2 s so the animal does not teleport.
    kernel = np.ones(max(1, int(round(0.2 * fps)))) / max(1, int(round(0.2 * fps)))
    rear_weight = np.convolve(is_rear, kernel, mode="same")
    shape = _FLAT[None] * (1 - rear_weight)[:, None, None] + _REARED[None] * rear_weight[:, None, None]

    # Gait: hips swing at about 4 Hz while walking; the head bobs at about 6 Hz while rearing. The
    # rhythms wander (as real ones do): a fixed frequency would hit the same few phases in every
    # 100 ms bin and split one behavior into several artificial clusters.
    gait = np.where(is_walk, 3.0 * np.sin(_wandering_phase(4.0, n_frames, fps, rng)), 0.0)
    shape[:, 4, 0] += gait
    shape[:, 5, 0] -= gait
    bob = rear_weight * 3.0 * np.sin(_wandering_phase(6.0, n_frames, fps, rng))
    shape[:, :4, 0] += bob[:, None]

    cos, sin = np.cos(heading)[:, None], np.sin(heading)[:, None]
    xy = np.stack(
        [shape[..., 0] * cos - shape[..., 1] * sin, shape[..., 0] * sin + shape[..., 1] * cos], axis=-1
    ) + centre[:, None, :]
    xy += rng.normal(0.0, 0.7, xy.shape)

    likelihood = rng.uniform(0.9, 1.0, xy.shape[:2])
    lost = rng.random(xy.shape[:2]) < lost_fraction
    likelihood[lost] = rng.uniform(0.0, 0.3, lost.sum())
    xy[lost] += rng.normal(0.0, 60.0, (lost.sum(), 2))
    return Trajectory(xy=xy, likelihood=likelihood, truth=truth, fps=fps)


def _wandering_phase(hertz: float, n_frames: int, fps: float, rng: np.random.Generator) -> np.ndarray:
    """Return the phase (radians) of a rhythm of about ``hertz`` whose frequency jitters frame to frame."""
    frequency = hertz * (1.0 + rng.normal(0.0, 0.5, n_frames))
    return rng.uniform(0, 2 * np.pi) + np.cumsum(2 * np.pi * frequency / fps)


def _bout_sequence(n_frames: int, fps: float, rng: np.random.Generator) -> np.ndarray:
    """Return the behavior index of every frame: bouts of 1.5–3 s, never the same behavior twice in a row."""
    labels = []
    previous = -1
    while sum(len(bout) for bout in labels) < n_frames:
        choice = int(rng.choice([b for b in range(len(BEHAVIORS)) if b != previous]))
        labels.append(np.full(int(rng.uniform(1.5, 3.0) * fps), choice))
        previous = choice
    return np.concatenate(labels)[:n_frames]


def to_dlc_table(
    xy: np.ndarray,
    likelihood: np.ndarray,
    bodyparts: tuple[str, ...] = BODYPARTS,
    individuals: tuple[str, ...] | None = None,
) -> pd.DataFrame:
    """Given positions and likelihoods, return a DataFrame laid out as DeepLabCut writes it.

    With ``individuals``, ``xy`` is individuals × frames × body parts × 2 and ``likelihood``
    individuals × frames × body parts, and the table has DeepLabCut's 4-level multi-animal header.
    """
    if individuals is None:
        xy, likelihood, owners = xy[None], likelihood[None], [None]
    else:
        owners = list(individuals)
    blocks, keys = [], []
    for index, owner in enumerate(owners):
        for part, name in enumerate(bodyparts):
            for coord, values in (("x", xy[index, :, part, 0]), ("y", xy[index, :, part, 1]),
                                  ("likelihood", likelihood[index, :, part])):
                blocks.append(values)
                keys.append((SCORER, name, coord) if owner is None else (SCORER, owner, name, coord))
    names = ["scorer", "bodyparts", "coords"] if individuals is None else ["scorer", "individuals", "bodyparts", "coords"]
    columns = pd.MultiIndex.from_tuples(keys, names=names)
    return pd.DataFrame(np.stack(blocks, axis=1), columns=columns)


def write_dlc(table: pd.DataFrame, path: Path) -> Path:
    """Given a DeepLabCut-style table, write it as .h5 (DeepLabCut's key and format) or .csv by suffix."""
    path = Path(path)
    if path.suffix == ".h5":
        table.to_hdf(path, key="df_with_missing", format="table", mode="w")
    else:
        table.to_csv(path)
    return path


def write_trajectory(trajectory: Trajectory, path: Path) -> Path:
    """Given a Trajectory, write it as a single-animal DeepLabCut file and return the path."""
    return write_dlc(to_dlc_table(trajectory.xy, trajectory.likelihood), path)
