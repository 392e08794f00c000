"""Read DeepLabCut keypoint tables (.h5 or .csv, single or multi animal) into numpy arrays.

DeepLabCut writes a pandas DataFrame whose columns are a MultiIndex:
``(scorer, bodyparts, coords)`` for single-animal projects and
``(scorer, individuals, bodyparts, coords)`` for multi-animal ones, with coords ``x``, ``y`` and
``likelihood``. Each individual becomes one :class:`AnimalKeypoints`; a single-animal table gives a
list of one whose ``individual`` is ``None``.
"""

from __future__ import annotations

import csv
import logging
import pickle
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from dlcwatch.errors import BehaviorError

__all__ = [
    "AnimalKeypoints",
    "KEYPOINT_SUFFIXES",
    "animals_from_table",
    "find_keypoint_files",
    "read_dlc_fps",
    "read_frame_rate",
    "read_keypoint_table",
    "read_keypoints",
]

log = logging.getLogger(__name__)

KEYPOINT_SUFFIXES = (".h5", ".csv")

# DeepLabCut's own key; tables written by other tools usually hold a single key instead.
_DLC_HDF_KEY = "df_with_missing"


@dataclass(frozen=True)
class AnimalKeypoints:
    """The keypoints of one animal: positions ``xy`` (frames × body parts × 2) and ``likelihood``
    (frames × body parts), both float64, NaN where the table has no value."""

    individual: str | None
    bodyparts: tuple[str, ...]
    xy: np.ndarray
    likelihood: np.ndarray

    @property
    def n_frames(self) -> int:
        return int(self.xy.shape[0])

    def select(self, bodyparts: tuple[str, ...] | list[str]) -> "AnimalKeypoints":
        """Given body-part names (all present), return this animal restricted to them in that order.

        Raise KeyError naming the first missing body part.
        """
        index = [self.bodyparts.index(name) for name in bodyparts]
        return AnimalKeypoints(self.individual, tuple(bodyparts), self.xy[:, index], self.likelihood[:, index])


def read_keypoint_table(path: Path) -> pd.DataFrame:
    """Given a DeepLabCut .h5 or .csv keypoint file, return its DataFrame.

    Raise BehaviorError when the file is missing, has another suffix or is not a keypoint table.
    """
    path = Path(path)
    if not path.is_file():
        raise BehaviorError(f"keypoint file not found: {path}")
    suffix = path.suffix.lower()
    try:
        if suffix == ".h5":
            table = _read_hdf(path)
        elif suffix == ".csv":
            table = pd.read_csv(path, header=list(range(_csv_header_rows(path))), index_col=0)
        else:
            raise BehaviorError(f"{path}: expected a DeepLabCut .h5 or .csv keypoint file")
    except BehaviorError:
        raise
    except Exception as error:  # pandas/PyTables raise many types for a damaged or foreign file
        raise BehaviorError(f"{path}: cannot read it as a DeepLabCut keypoint table ({error})") from error
    if not isinstance(table, pd.DataFrame) or table.columns.nlevels not in (3, 4):
        raise BehaviorError(
            f"{path}: not a DeepLabCut keypoint table (expected 3 or 4 column header levels: "
            "scorer, [individuals,] bodyparts, coords)"
        )
    return table


def _read_hdf(path: Path) -> pd.DataFrame:
    """Return the DeepLabCut table stored in an HDF5 file, preferring DeepLabCut's own key."""
    with pd.HDFStore(path, mode="r") as store:
        keys = store.keys()
        if f"/{_DLC_HDF_KEY}" in keys:
            return store[_DLC_HDF_KEY]
        if len(keys) == 1:
            return store[keys[0]]
    raise BehaviorError(f"{path}: HDF5 file has keys {keys}, none of them {_DLC_HDF_KEY!r}")


def _csv_header_rows(path: Path) -> int:
    """Return 4 for a multi-animal DeepLabCut csv (second row starts with ``individuals``), else 3."""
    with open(path, newline="", encoding="utf-8") as handle:
        rows = [row for _, row in zip(range(2), csv.reader(handle))]
    if len(rows) == 2 and rows[1] and rows[1][0].strip().lower() == "individuals":
        return 4
    return 3


def animals_from_table(table: pd.DataFrame) -> list[AnimalKeypoints]:
    """Given a DeepLabCut keypoint DataFrame, return one AnimalKeypoints per individual.

    Body parts keep the table's column order. A table without ``likelihood`` columns counts every
    position as confident. Raise BehaviorError when the header is not DeepLabCut's.
    """
    columns = table.columns
    levels = {name: position for position, name in enumerate(columns.names) if name}
    coords_level = levels.get("coords", columns.nlevels - 1)
    bodyparts_level = levels.get("bodyparts", columns.nlevels - 2)
    individuals_level = levels.get("individuals", 1 if columns.nlevels == 4 else None)
    scorers = list(dict.fromkeys(columns.get_level_values(0)))
    if len(scorers) > 1:
        log.warning("keypoint table has several scorers %s; using the first", scorers)
        table = table.loc[:, columns.get_level_values(0) == scorers[0]]
        columns = table.columns

    values = table.apply(pd.to_numeric, errors="coerce").to_numpy(dtype=np.float64)
    coords = columns.get_level_values(coords_level)
    parts = columns.get_level_values(bodyparts_level)
    owners = columns.get_level_values(individuals_level) if individuals_level is not None else [None] * len(parts)
    if not {"x", "y"} <= set(coords):
        raise BehaviorError("keypoint table has no x / y coordinate columns")

    # One pass over the columns (not the frames) to find where each (individual, body part, coord) lives.
    position: dict[tuple[str | None, str, str], int] = {}
    for index, key in enumerate(zip(owners, parts, coords)):
        position.setdefault(key, index)
    animals = []
    for individual in dict.fromkeys(owners):
        names = tuple(dict.fromkeys(p for o, p, c in zip(owners, parts, coords) if o == individual and c == "x"))
        names = tuple(name for name in names if (individual, name, "y") in position)
        if not names:
            continue
        x = values[:, [position[(individual, name, "x")] for name in names]]
        y = values[:, [position[(individual, name, "y")] for name in names]]
        likelihood = np.ones_like(x)
        for column, name in enumerate(names):
            if (individual, name, "likelihood") in position:
                likelihood[:, column] = values[:, position[(individual, name, "likelihood")]]
        animals.append(
            AnimalKeypoints(
                individual=None if individual is None else str(individual),
                bodyparts=tuple(str(name) for name in names),
                xy=np.stack([x, y], axis=-1),
                likelihood=likelihood,
            )
        )
    if not animals:
        raise BehaviorError("keypoint table has no body part with both x and y columns")
    return animals


def read_keypoints(path: Path) -> list[AnimalKeypoints]:
    """Given a DeepLabCut .h5 or .csv keypoint file, return one AnimalKeypoints per individual.

    Raise BehaviorError when the file cannot be read as a keypoint table.
    """
    table = read_keypoint_table(path)
    try:
        return animals_from_table(table)
    except BehaviorError as error:
        raise BehaviorError(f"{path}: {error}") from error


# Files beside the tables that are not keypoint tables: DeepLabCut's side files and dlcwatch's labels.
_SIDE_STEMS = ("_meta", "_full", "_skeleton", "_assemblies", "_behavior")
_FILTERED = "_filtered"
# DeepLabCut's multi-animal tables end in their tracker's suffix; the meta pickle does not.
_TRACKER_SUFFIXES = ("_el", "_bx", "_sk")
MANIFEST = "manifest.json"


def find_keypoint_files(paths: list[Path], *, unfiltered: bool = False,
                        report: Callable[[str], None] | None = None) -> list[Path]:
    """Given files and folders, return the keypoint files they name, folders searched recursively.

    In a folder each video counts once: of its tables (DeepLabCut writes .h5 and .csv, filtered
    and not) the filtered one is taken, or the unfiltered one with ``unfiltered``, and .h5 before
    .csv; ``report`` is told which, when there was a choice. DeepLabCut's side files (``*_meta``,
    ``*_full``, ``*_assemblies``, ``*_skeleton``) and behavior labels are skipped. Raise
    BehaviorError for a missing path or when nothing is found.
    """
    found: list[Path] = []
    for path in map(Path, paths):
        if path.is_dir():
            tables = sorted(p for p in path.rglob("*") if p.is_file() and p.suffix.lower() in KEYPOINT_SUFFIXES
                            and not p.stem.endswith(_SIDE_STEMS)
                            and not any(part.startswith(".") for part in p.relative_to(path).parts))
            videos: dict[tuple[Path, str], list[Path]] = {}
            for table in tables:
                stem = table.stem[: -len(_FILTERED)] if table.stem.endswith(_FILTERED) else table.stem
                videos.setdefault((table.parent, stem), []).append(table)
            for (_, stem), choices in videos.items():
                chosen = _choose_table(choices, unfiltered)
                found.append(chosen)
                if report is not None and len({p.stem for p in choices}) > 1:
                    kind = "unfiltered" if unfiltered else "filtered"
                    other = "" if unfiltered else "; --unfiltered for the other"
                    report(f"  {stem}: using the {kind} table {chosen.name}{other}")
        elif path.is_file():
            found.append(path)
        else:
            raise BehaviorError(f"no such file or folder: {path}")
    if not found:
        raise BehaviorError("no .h5 or .csv keypoint files found in " + ", ".join(map(str, paths)))
    return list(dict.fromkeys(found))


def _choose_table(choices: list[Path], unfiltered: bool) -> Path:
    """Given the tables of one video, return the filtered (or unfiltered) one, .h5 before .csv."""
    def rank(path: Path) -> tuple[bool, bool]:
        return (path.stem.endswith(_FILTERED) == unfiltered, path.suffix.lower() != ".h5")

    return min(choices, key=rank)


def read_frame_rate(path: Path) -> float | None:
    """Given a keypoint file, return the frame rate recorded beside it, or None.

    First dlcwatch's ``manifest.json`` in the same folder, if it lists this file (its source
    video's fps); then DeepLabCut's ``<video><scorer>_meta.pickle``, which ``analyze_videos`` writes
    (``{"data": {"fps": …}}``) and which filtered and tracked tables (``…_el_filtered.h5``) share.
    """
    path = Path(path)
    fps = _manifest_fps(path)
    return fps if fps is not None else read_dlc_fps(path)


def _manifest_fps(path: Path) -> float | None:
    import json

    manifest = path.with_name(MANIFEST)
    if not manifest.is_file():
        return None
    try:
        content = json.loads(manifest.read_text(encoding="utf-8"))
        listed = {entry.get("file") for entry in content.get("outputs", {}).values()}
        fps = float(content["source"]["fps"]) if path.name in listed else float("nan")
    except (OSError, ValueError, KeyError, TypeError, AttributeError) as error:
        log.warning("%s: cannot read the frame rate (%s)", manifest, error)
        return None
    return fps if np.isfinite(fps) and fps > 0 else None


def read_dlc_fps(path: Path) -> float | None:
    """Given a keypoint file, return the frame rate DeepLabCut recorded beside it, or None.

    DeepLabCut's ``analyze_videos`` writes ``<stem>_meta.pickle`` holding ``{"data": {"fps": …}}``;
    filtered tables (``<stem>_filtered.h5``) and multi-animal tracked tables (``<stem>_el.h5``)
    share the plain stem's metadata. The pickle is DeepLabCut's own output next to the table; it is
    read only when the caller gives no frame rate.
    """
    path = Path(path)
    stems = [path.stem]
    if stems[-1].endswith(_FILTERED):
        stems.append(stems[-1][: -len(_FILTERED)])
    if stems[-1].endswith(_TRACKER_SUFFIXES):
        stems.append(stems[-1][:-3])
    for stem in stems:
        meta = path.with_name(f"{stem}_meta.pickle")
        if not meta.is_file():
            continue
        try:
            with open(meta, "rb") as handle:
                content = pickle.load(handle)
            fps = float(content["data"]["fps"])
        except Exception as error:  # a foreign or damaged pickle: fall back to asking the user
            log.warning("%s: cannot read the frame rate (%s)", meta, error)
            continue
        if np.isfinite(fps) and fps > 0:
            return fps
    return None
