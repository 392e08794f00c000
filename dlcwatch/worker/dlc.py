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

from dlcwatch.files import atomic_path, atomic_write

# Folders of a DeepLabCut project that hold trained models; linked, never copied (they are large).
MODEL_FOLDERS = ("dlc-models-pytorch", "dlc-models")


# DeepLabCut's tracker names and the suffix its files of that tracker carry.
TRACKER_SUFFIXES = {"ellipse": "_el", "box": "_bx", "skeleton": "_sk"}
# DeepLabCut's side files beside the keypoint tables, by the kind they are delivered as.
SIDE_FILES = {"_meta.pickle": "dlc_meta", "_full.pickle": "dlc_detections", "_assemblies.pickle": "dlc_assemblies",
              **{suffix + ".pickle": "dlc_tracklets" for suffix in TRACKER_SUFFIXES.values()}}
LABELED_CLIP_FOLDER = "labeled-clip"


class NoAnimalFound(Exception):
    """DeepLabCut ran, but tracked no animal in the video: its raw detections are all there is."""


class BrokenTracker(RuntimeError):
    """The job environment's filterpy builds DeepLabCut's trackers wrongly: every tracked video would fail."""


@dataclass(frozen=True)
class Model:
    config: Path          # the job's private config.yaml
    shuffle: int
    trainingsetindex: int
    batch_size: int
    device: str
    engine: str
    multi_animal: bool = False
    auto_track: bool = True
    animals: int = 0      # n_tracks; 0: the project's individuals
    tracker: str = "ellipse"

    @property
    def tracker_suffix(self) -> str:
        return TRACKER_SUFFIXES[self.tracker]


def load_deeplabcut():
    """Import deeplabcut without its GUI and without any network access; return the module."""
    os.environ.setdefault("DLClight", "True")
    # Inference must never fetch weights: a cluster node usually has no internet, and a silent
    # download of a different model would be worse than an error.
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    import deeplabcut

    return deeplabcut


def prepare_project(project_config: Path, view: Path, overrides: dict | None = None) -> Path:
    """Given the lab's config.yaml, build a private project view in `view`; return its config.yaml.

    DeepLabCut rewrites config.yaml when project_path does not match the folder it is read from.
    A private copy lets a moved project or a read-only share work, and keeps concurrent jobs from
    writing the same file. Model folders are linked; training-dataset files are linked one by one
    so that anything DeepLabCut writes there lands in the view, not in the lab's project.
    `overrides` are config.yaml settings for this job (e.g. the tracker), written into the copy."""
    project = project_config.resolve().parent
    if view.exists():
        shutil.rmtree(view)
    view.mkdir(parents=True)
    config = yaml.safe_load(project_config.read_text(encoding="utf-8"))
    if not isinstance(config, dict):
        raise ValueError(f"{project_config} is not a DeepLabCut config (no mapping inside)")
    config["project_path"] = str(view)
    config.update(overrides or {})
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
                  device: str, multi_animal: dict | None = None) -> Model:
    """Given the private config and the model settings, return a Model with its engine known.

    `multi_animal` (auto_track, animals) applies only where the project is a multi-animal one."""
    engine = ""
    try:
        from deeplabcut.generate_training_dataset.metadata import get_shuffle_engine

        engine = str(getattr(get_shuffle_engine(str(config), trainingsetindex, shuffle), "aliases", [""])[0])
    except Exception:  # noqa: BLE001 - older projects: fall back to what config.yaml says
        engine = ""
    project = yaml.safe_load(config.read_text())
    if not engine:
        engine = str(project.get("engine") or "tensorflow")
    settings = multi_animal or {}
    tracker = str(project.get("default_track_method") or "ellipse")
    if tracker not in TRACKER_SUFFIXES:
        raise ValueError(f"{config}: default_track_method {tracker!r} is none of {', '.join(TRACKER_SUFFIXES)}")
    return Model(config, shuffle, trainingsetindex, batch_size, _device(device), engine.lower(),
                 multi_animal=bool(project.get("multianimalproject")), auto_track=bool(settings.get("auto_track", True)),
                 animals=int(settings.get("animals") or 0), tracker=tracker)


def check_tracker() -> None:
    """Return if filterpy builds the Kalman filter DeepLabCut's trackers need. Raise BrokenTracker.

    filterpy 2.0.0 gives kinematic_kf a measurement matrix whose every row reads all positions,
    so every tracker drifts after one update and every tracked video ends in "Tracklets are empty"."""
    import numpy as np
    from filterpy import __version__ as version
    from filterpy.common import kinematic_kf

    measured = kinematic_kf(5, 1, dim_z=5, order_by_dim=False).H
    if not np.array_equal(measured, np.hstack([np.eye(5), np.zeros((5, 5))])):
        raise BrokenTracker(f"filterpy {version} builds a wrong Kalman filter for DeepLabCut's multi-animal "
                            "trackers (every video would end in 'Tracklets are empty'); install filterpy 1.4.5 "
                            "in the job's environment: pip install filterpy==1.4.5")


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
    if model.multi_animal:
        # Without tracking DeepLabCut writes only pickles; save_as_df adds the untracked table.
        kwargs.update(auto_track=model.auto_track, save_as_df=not model.auto_track)
        if model.animals:
            kwargs["n_tracks"] = model.animals
    # An explicit list of files, never a folder: DeepLabCut would pick up anything else in it.
    try:
        return str(deeplabcut.analyze_videos(str(model.config), [str(video)], **kwargs))
    except OSError as error:
        if no_animal_found(model, error):
            raise NoAnimalFound(str(error)) from error
        raise


def no_animal_found(model: Model, error: OSError) -> bool:
    """Given an OSError from DeepLabCut's tracking, return whether it is the stitcher's words when no
    tracklet is long enough: nothing to track (the tracker was checked at job start, so a broken
    filterpy is not the cause)."""
    return model.multi_animal and "Tracklets are empty" in str(error)


def inference_seconds(meta_pickle: Path) -> float | None:
    """Given DeepLabCut's _meta.pickle, return how long its decode + inference loop took (None if unknown)."""
    import pickle

    try:
        with open(meta_pickle, "rb") as stream:
            return float(pickle.load(stream)["data"]["run_duration"])
    except (OSError, KeyError, TypeError, ValueError, pickle.UnpicklingError):
        return None


def filter_predictions(deeplabcut, model: Model, video: Path, destination: Path, filter_type: str,
                       window_length: int) -> None:
    """Given an analyzed video, write DeepLabCut's filtered keypoints beside the others."""
    deeplabcut.filterpredictions(str(model.config), [str(video)], shuffle=model.shuffle,
                                 trainingsetindex=model.trainingsetindex, filtertype=filter_type,
                                 windowlength=window_length, save_as_csv=True, destfolder=str(destination))


def find_outputs(destination: Path, stem: str) -> dict[str, Path]:
    """Given the analysis folder of one video, return its keypoint files and DeepLabCut's side files by kind."""
    outputs = {}
    for path in sorted(destination.iterdir()):
        name = path.name
        if not name.startswith(stem + "DLC") or not path.is_file():  # DeepLabCut's files carry the scorer
            continue
        filtered = name.endswith(("_filtered.h5", "_filtered.csv"))
        side = next((kind for suffix, kind in SIDE_FILES.items() if name.endswith(suffix)), None)
        if side:
            outputs[side] = path
        elif name.endswith("_labeled.mp4") or name.endswith("_labeled_clip.mp4"):
            outputs["labeled_video"] = path
        elif name.endswith(".h5"):
            outputs["keypoints_filtered_h5" if filtered else "keypoints_h5"] = path
        elif name.endswith(".csv"):
            outputs["keypoints_filtered_csv" if filtered else "keypoints_csv"] = path
    return outputs


def count_rows(h5_path: Path) -> int:
    """Given a DeepLabCut .h5, return how many frames it has rows for. Raise on an unreadable file."""
    import pandas as pd

    return len(pd.read_hdf(h5_path))


def frames_analyzed(detections: Path) -> int:
    """Given DeepLabCut's _full.pickle, return how many frames it holds detections for (one key each)."""
    import pickle

    with open(detections, "rb") as stream:
        content = pickle.load(stream)
    return sum(1 for key in content if str(key).startswith("frame"))


def read_table(h5_path: Path):
    """Given a DeepLabCut .h5, return its table, whatever its HDF key (the stitcher writes "tracks")."""
    import pandas as pd

    return pd.read_hdf(h5_path)


def write_table(table, h5_path: Path, csv_path: Path | None) -> None:
    """Write a keypoint table as DeepLabCut's other tools expect it: key df_with_missing, and a .csv.
    Each file appears whole or not at all (dlcwatch.files' writer)."""
    with atomic_path(h5_path) as temporary:
        table.to_hdf(temporary, key="df_with_missing", format="table", mode="w")
    if csv_path is not None:
        with atomic_write(csv_path, binary=False) as stream:
            table.to_csv(stream)


def complete_tracked_table(h5_path: Path, csv_path: Path | None, frames: int) -> dict:
    """Given a tracked table and the video's frame count, give it one row per frame; return the summary.

    DeepLabCut's stitcher cuts the table after the last tracked frame (animals that leave early
    give a short table) and stores it under the HDF key "tracks", which movement and pandas users
    do not expect. Frames nobody was tracked in stay empty (NaN). Raise ValueError for a table
    with more rows than the video has frames."""
    table = read_table(h5_path)
    if len(table) > frames:
        raise ValueError(f"{h5_path.name} has {len(table)} rows but the video has {frames} frames")
    table = table.reindex(range(frames))
    write_table(table, h5_path, csv_path)
    return tracking_summary(table)


def write_empty_tracked_table(config: Path, destination: Path, prefix: str, suffix: str, frames: int) -> Path:
    """Given the project config and a video's output prefix (stem + scorer), write the tracked table of a
    video where no animal was tracked: one empty row per frame; return the .h5 path."""
    import numpy as np
    import pandas as pd

    project = yaml.safe_load(config.read_text())
    points = [(individual, part) for individual in project.get("individuals") or []
              for part in project.get("multianimalbodyparts") or []]
    points += [("single", part) for part in project.get("uniquebodyparts") or []]
    scorer = prefix[prefix.index("DLC"):]
    columns = pd.MultiIndex.from_tuples([(scorer, individual, part, coord) for individual, part in points
                                         for coord in ("x", "y", "likelihood")],
                                        names=["scorer", "individuals", "bodyparts", "coords"])
    table = pd.DataFrame(np.full((frames, len(columns)), np.nan), columns=columns)
    h5_path = destination / f"{prefix}{suffix}.h5"
    write_table(table, h5_path, h5_path.with_suffix(".csv"))
    return h5_path


def tracking_summary(table) -> dict:
    """Given a multi-animal keypoint table, return the frames in all, those with any animal, and per animal."""
    import numpy as np

    values = table.to_numpy(dtype=float)
    individuals = table.columns.get_level_values("individuals")
    per_animal = {}
    for individual in dict.fromkeys(individuals):
        seen = np.isfinite(values[:, np.asarray(individuals == individual)]).any(axis=1)
        per_animal[str(individual)] = int(seen.sum())
    return {"frames": int(len(table)), "frames_tracked": int(np.isfinite(values).any(axis=1).sum()),
            "frames_tracked_per_animal": per_animal}


def frames_with_detections(assemblies: Path) -> int:
    """Given DeepLabCut's _assemblies.pickle, return how many frames hold at least one assembled animal."""
    import pickle

    with open(assemblies, "rb") as stream:
        content = pickle.load(stream)
    return sum(1 for key, value in content.items() if key != "single" and len(value))


def make_labeled_video(deeplabcut, model: Model, video: Path, destination: Path, keypoints_h5: Path, mode: str,
                       clip_seconds: float, fps: float | None) -> tuple[Path, dict]:
    """Given an analyzed video and the table to draw, make its labeled video with DeepLabCut's
    create_labeled_video; return its path and what it shows. Raise RuntimeError if none was written.

    mode "full" draws the whole video; "clip" about `clip_seconds` from its middle: the frames and
    their rows are cut out first, so the cost does not grow with the video's length."""
    filtered = keypoints_h5.stem.endswith("_filtered")
    if mode == "full":
        folder, drawn, shown = destination, video, {"mode": "full"}
    else:
        folder = destination / LABELED_CLIP_FOLDER
        if folder.exists():
            shutil.rmtree(folder)
        folder.mkdir()
    try:
        if mode != "full":
            drawn, shown = _cut_clip(video, destination, folder, keypoints_h5, clip_seconds, fps)
        before = set(folder.glob("*_labeled.mp4"))
        deeplabcut.create_labeled_video(str(model.config), [str(drawn)], shuffle=model.shuffle,
                                        trainingsetindex=model.trainingsetindex, filtered=filtered,
                                        destfolder=str(folder))
        made = sorted(set(folder.glob("*_labeled.mp4")) - before)
        if not made:
            raise RuntimeError("DeepLabCut's create_labeled_video wrote no video")
        if mode == "full":
            return made[0], shown
        target = destination / (made[0].stem + "_clip.mp4")
        made[0].replace(target)
        return target, shown
    finally:
        if mode != "full":
            shutil.rmtree(folder, ignore_errors=True)


def _cut_clip(video: Path, destination: Path, folder: Path, keypoints_h5: Path, seconds: float,
              fps: float | None) -> tuple[Path, dict]:
    """Write the middle `seconds` of the video and the matching rows of its table (and the meta
    pickle) into `folder` under the video's own names; return the clip and its frame range."""
    import cv2

    table = read_table(keypoints_h5)
    capture = cv2.VideoCapture(str(video))
    try:
        rate = fps or capture.get(cv2.CAP_PROP_FPS) or 30.0
        length = max(1, min(len(table), int(round(seconds * rate))))
        first = (len(table) - length) // 2
        capture.set(cv2.CAP_PROP_POS_FRAMES, first)
        clip = folder / f"{video.stem}.avi"
        writer = None
        written = 0
        while written < length:
            ok, frame = capture.read()
            if not ok:
                break
            if writer is None:
                height, width = frame.shape[:2]
                # Motion JPEG at high quality: the clip is drawn on and encoded once more by DeepLabCut.
                writer = cv2.VideoWriter(str(clip), cv2.VideoWriter_fourcc(*"MJPG"), rate, (width, height))
                writer.set(cv2.VIDEOWRITER_PROP_QUALITY, 95)
            writer.write(frame)
            written += 1
    finally:
        capture.release()
    if writer is None:
        raise RuntimeError(f"OpenCV could not read frames {first}.. of the video for the labeled clip")
    writer.release()
    part = table.iloc[first:first + written].reset_index(drop=True)
    write_table(part, folder / keypoints_h5.name, None)
    stem = keypoints_h5.name[:keypoints_h5.name.index("DLC")]
    for meta in destination.glob(f"{stem}DLC*_meta.pickle"):
        shutil.copyfile(meta, folder / meta.name)
    return clip, {"mode": "clip", "first_frame": first, "frames": written,
                  "start_s": round(first / rate, 3), "seconds": round(written / rate, 3)}


def dlc_version(deeplabcut) -> str:
    return str(getattr(deeplabcut, "__version__", "unknown"))


def elapsed(start: float) -> float:
    return round(time.monotonic() - start, 3)
