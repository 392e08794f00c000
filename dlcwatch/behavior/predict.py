"""Label every frame of a keypoint file with a behavior model (B-SOiD's frame-shift prediction).

The analysis worker calls :func:`label_keypoints_file`. This module runs inside DeepLabCut's
environment, so it imports only numpy, pandas, scikit-learn (through the pickled model), joblib,
matplotlib and the standard library.

Output ``<stem>_behavior.csv`` has one row per frame of the keypoint table with columns
``frame, time, label_id, label_name, probability``: ``time`` is ``frame / fps`` in seconds,
``probability`` the random forest's vote share for the label. Frames that cannot be labelled (a
video shorter than one 100 ms bin, or a window touching a body part that is never confident) get
``label_id`` −1, ``label_name`` "unlabeled" and an empty probability.

Multi-animal tables: each individual with the model's body parts is labelled and the CSV gets a
first column ``individual`` (rows grouped by individual, then frame); maDLC's pseudo-individual of
unique body parts (usually "single") is skipped when it lacks them. The ethogram draws one band
per individual.

Body parts are matched by name: the table must hold every body part of the model (order does not
matter; extra body parts are ignored), otherwise :class:`BodypartMismatchError`.
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from dlcwatch.errors import BehaviorError
from dlcwatch.files import atomic_write
from dlcwatch.behavior.features import (
    clean_positions,
    frame_features,
    frame_shift_windows,
    frames_per_bin,
    window_of_each_frame,
)
from dlcwatch.behavior.keypoints import AnimalKeypoints, read_keypoints
from dlcwatch.behavior.model_io import UNLABELED_ID, BehaviorModel, load_model
from dlcwatch.behavior.plots import save_ethogram_png

__all__ = ["BodypartMismatchError", "FrameLabels", "label_animal", "label_keypoints_file"]

log = logging.getLogger(__name__)


class BodypartMismatchError(BehaviorError, ValueError):
    """The keypoint table lacks body parts the model was trained on; the message names both lists."""

    def __init__(self, table_bodyparts: list[str], model_bodyparts: list[str], source: str = "") -> None:
        self.table_bodyparts = list(table_bodyparts)
        self.model_bodyparts = list(model_bodyparts)
        missing = [name for name in self.model_bodyparts if name not in self.table_bodyparts]
        where = f"{source}: " if source else ""
        super().__init__(
            f"{where}body parts do not match the behavior model: the keypoint table has {self.table_bodyparts}, "
            f"the model needs {self.model_bodyparts} (missing {missing})"
        )


@dataclass(frozen=True)
class FrameLabels:
    """The label id of every frame (−1: unlabeled) and its probability (NaN when unlabeled)."""

    label_ids: np.ndarray
    probabilities: np.ndarray


def label_animal(animal: AnimalKeypoints, model: BehaviorModel, fps: float) -> FrameLabels:
    """Given one animal's keypoints (with the model's body parts), the model and the frame rate,
    return the label of every frame by B-SOiD's frame-shift method.

    The 10 Hz binning is run ``round(fps/10)`` times, each shifted by one frame, and the bins are
    interleaved, so there is a bin starting at every frame; each frame takes the bin centred on it.
    Raise BodypartMismatchError when a model body part is missing.
    """
    if not set(model.bodyparts) <= set(animal.bodyparts):
        raise BodypartMismatchError(list(animal.bodyparts), list(model.bodyparts))
    animal = animal.select(model.bodyparts)
    cleaned = clean_positions(animal.xy, animal.likelihood)
    for part in cleaned.never_confident:
        who = f"individual {animal.individual!r}: " if animal.individual else ""
        log.warning("%sbody part %r is never confident; frames that need it are unlabeled", who, model.bodyparts[part])

    n_parts = len(model.bodyparts)
    bin_rows = frames_per_bin(fps)
    windows = frame_shift_windows(frame_features(cleaned.xy, fps), n_parts * (n_parts - 1) // 2, bin_rows)
    window_ids = np.full(windows.shape[0], UNLABELED_ID, dtype=np.int64)
    window_probability = np.full(windows.shape[0], np.nan)
    usable = np.isfinite(windows).all(axis=1)
    if usable.any():
        # One predict call for all shifts at once: the same labels as predicting each shift, faster.
        votes = model.classifier.predict_proba(windows[usable])
        best = votes.argmax(axis=1)
        window_ids[usable] = np.asarray(model.classifier.classes_)[best].astype(np.int64)
        window_probability[usable] = votes[np.arange(len(best)), best]

    owner = window_of_each_frame(animal.n_frames, bin_rows)
    labelled = owner >= 0
    label_ids = np.full(animal.n_frames, UNLABELED_ID, dtype=np.int64)
    probabilities = np.full(animal.n_frames, np.nan)
    label_ids[labelled] = window_ids[owner[labelled]]
    probabilities[labelled] = window_probability[owner[labelled]]
    return FrameLabels(label_ids, probabilities)


def _labels_table(model: BehaviorModel, labels: FrameLabels, fps: float) -> pd.DataFrame:
    """Return the CSV rows of one animal."""
    frames = np.arange(len(labels.label_ids))
    names = np.array([model.label_name(label) for label in (*model.label_ids, UNLABELED_ID)], dtype=object)
    # Position of each frame's id in the names array, without a Python loop over frames.
    order = np.array([*model.label_ids, UNLABELED_ID])
    sorter = np.argsort(order)
    name_index = sorter[np.searchsorted(order, labels.label_ids, sorter=sorter)]
    return pd.DataFrame(
        {
            "frame": frames,
            "time": np.round(frames / fps, 6),
            "label_id": labels.label_ids,
            "label_name": names[name_index],
            "probability": np.round(labels.probabilities, 4),
        }
    )


def label_keypoints_file(keypoints_path: Path, model_path: Path, fps: float, out_dir: Path, stem: str,
                         title: str | None = None) -> dict[str, Path]:
    """Write <out_dir>/<stem>_behavior.csv (columns: frame, time, label_id, label_name, probability;
    one row per frame of the keypoint table) and <out_dir>/<stem>_ethogram.png (labels over time,
    one colour per behavior). Return {"behavior_csv": path, "ethogram_png": path}.

    Both files are written atomically. Multi-animal tables add an ``individual`` column (see the
    module docstring). Raise BodypartMismatchError when the table's body parts don't match the
    model's; BehaviorError for an unreadable table or model or a bad frame rate.
    """
    keypoints_path, out_dir = Path(keypoints_path), Path(out_dir)
    try:
        fps = float(fps)
    except (TypeError, ValueError):
        fps = float("nan")
    if not (math.isfinite(fps) and fps > 0):
        raise BehaviorError(f"frame rate must be a positive number, not {fps!r}")
    model = load_model(Path(model_path))
    animals = read_keypoints(keypoints_path)
    if frames_per_bin(fps) != frames_per_bin(model.fps):
        log.warning(
            "%s: %g fps, model trained at %g fps: bins of %d instead of %d frames (both about 100 ms)",
            keypoints_path, fps, model.fps, frames_per_bin(fps), frames_per_bin(model.fps),
        )

    usable = [animal for animal in animals if set(model.bodyparts) <= set(animal.bodyparts)]
    if not usable:
        table_parts = list(dict.fromkeys(name for animal in animals for name in animal.bodyparts))
        raise BodypartMismatchError(table_parts, list(model.bodyparts), str(keypoints_path))
    for animal in animals:
        if not any(animal is chosen for chosen in usable):
            log.info("%s: individual %r lacks the model's body parts; not labelled", keypoints_path, animal.individual)

    multi_animal = usable[0].individual is not None
    tables, rows = [], []
    for animal in usable:
        labels = label_animal(animal, model, fps)
        table = _labels_table(model, labels, fps)
        if multi_animal:
            table.insert(0, "individual", animal.individual)
        tables.append(table)
        rows.append((animal.individual or "", labels.label_ids))

    out_dir.mkdir(parents=True, exist_ok=True)
    csv_path = out_dir / f"{stem}_behavior.csv"
    png_path = out_dir / f"{stem}_ethogram.png"
    with atomic_write(csv_path, binary=False) as handle:
        pd.concat(tables, ignore_index=True).to_csv(handle, index=False)
    save_ethogram_png(rows, fps, model.label_ids, model.label_name, png_path, title=f"{title or stem}: behavior labels")
    return {"behavior_csv": csv_path, "ethogram_png": png_path}
