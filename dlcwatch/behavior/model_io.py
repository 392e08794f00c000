"""Save and load behavior models, keep their JSON sidecar, rename clusters, import B-SOiD app models.

A model is one joblib file holding a dictionary (the classifier and everything needed to use it)
and, beside it, a JSON sidecar with the same name and suffix ``.json`` (``mouse.joblib`` →
``mouse.json``) that people and other programs can read without unpickling. The joblib file is the
authority; ``dlcwatch behavior names`` rewrites both.

Loading a joblib file runs pickle code: load only models you or your lab made.
"""

from __future__ import annotations

import datetime
import json
import logging
import platform
import warnings
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import joblib
import numpy as np

from dlcwatch.errors import BehaviorError
from dlcwatch.files import atomic_write
from dlcwatch.behavior.features import FEATURE_VERSION

__all__ = [
    "MODEL_FORMAT",
    "BehaviorModel",
    "import_bsoid_model",
    "library_versions",
    "load_model",
    "rename_labels",
    "save_model",
    "sidecar_path",
]

log = logging.getLogger(__name__)

MODEL_FORMAT = "dlcwatch-behavior-model"
MODEL_FORMAT_VERSION = 1
UNLABELED_ID = -1
UNLABELED_NAME = "unlabeled"


@dataclass(frozen=True)
class BehaviorModel:
    """A trained classifier with what it needs: body parts in feature order, the frame rate it was
    trained at, the feature definition version, cluster names, and free-form metadata (cluster
    sizes, accuracy, library versions…) that goes to the sidecar."""

    classifier: Any
    bodyparts: tuple[str, ...]
    fps: float
    feature_version: str = FEATURE_VERSION
    label_names: dict[int, str] = field(default_factory=dict)
    metadata: dict[str, Any] = field(default_factory=dict)

    @property
    def label_ids(self) -> list[int]:
        return [int(label) for label in self.classifier.classes_]

    def label_name(self, label_id: int) -> str:
        """Given a label id, return its name: the one a person gave, else ``cluster_<id>``."""
        if label_id == UNLABELED_ID:
            return UNLABELED_NAME
        return self.label_names.get(int(label_id), f"cluster_{int(label_id)}")

    def sidecar(self) -> dict[str, Any]:
        """Return the JSON-ready description written beside the model file."""
        return {
            "format": MODEL_FORMAT,
            "format_version": MODEL_FORMAT_VERSION,
            "bodyparts": list(self.bodyparts),
            "fps": self.fps,
            "feature_version": self.feature_version,
            "labels": {str(label): self.label_name(label) for label in self.label_ids},
            **self.metadata,
        }


def sidecar_path(model_path: Path) -> Path:
    """Given a model path, return its JSON sidecar path (same name, suffix ``.json``)."""
    return Path(model_path).with_suffix(".json")


def library_versions() -> dict[str, str]:
    """Return the versions of Python and of the libraries a model depends on."""
    import matplotlib
    import pandas
    import sklearn

    versions = {
        "python": platform.python_version(),
        "numpy": np.__version__,
        "pandas": pandas.__version__,
        "scikit-learn": sklearn.__version__,
        "joblib": joblib.__version__,
        "matplotlib": matplotlib.__version__,
    }
    try:
        from importlib.metadata import version

        versions["umap-learn"] = version("umap-learn")
    except Exception:  # umap is a training-only dependency; the analysis environment lacks it
        pass
    return versions


def save_model(model: BehaviorModel, path: Path) -> Path:
    """Given a model and a destination, write the joblib file and its JSON sidecar atomically;
    return the sidecar path. Raise BehaviorError when the destination ends in ``.json``."""
    path = Path(path)
    if path.suffix.lower() == ".json":
        raise BehaviorError(f"{path}: the model file cannot end in .json (that name is its sidecar's)")
    path.parent.mkdir(parents=True, exist_ok=True)
    payload = {
        "format": MODEL_FORMAT,
        "format_version": MODEL_FORMAT_VERSION,
        "classifier": model.classifier,
        "bodyparts": list(model.bodyparts),
        "fps": float(model.fps),
        "feature_version": model.feature_version,
        "label_names": {int(k): str(v) for k, v in model.label_names.items()},
        "metadata": model.metadata,
    }
    with atomic_write(path) as handle:
        joblib.dump(payload, handle, compress=3)
    sidecar = sidecar_path(path)
    with atomic_write(sidecar, binary=False) as handle:
        json.dump(model.sidecar(), handle, indent=2, default=_json_default)
        handle.write("\n")
    return sidecar


def _json_default(value: Any) -> Any:
    """Turn numpy scalars and arrays into JSON values."""
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, np.ndarray):
        return value.tolist()
    if isinstance(value, Path):
        return str(value)
    raise TypeError(f"not JSON serializable: {type(value).__name__}")


def load_model(path: Path) -> BehaviorModel:
    """Given a model file written by :func:`save_model`, return the BehaviorModel.

    Raise BehaviorError when the file is missing, unreadable, not a dlcwatch behavior model, or
    made with a feature definition this version does not compute.
    """
    path = Path(path)
    if not path.is_file():
        raise BehaviorError(f"behavior model not found: {path}")
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        try:
            payload = joblib.load(path)
        except Exception as error:
            raise BehaviorError(
                f"{path}: cannot load the behavior model ({type(error).__name__}: {error}); it may have been "
                f"saved with other library versions (see {sidecar_path(path).name})"
            ) from error
    for warning in caught:
        # Typically scikit-learn's InconsistentVersionWarning: worth a log line, not a failure.
        log.warning("%s: %s", path, warning.message)
    if not isinstance(payload, dict) or payload.get("format") != MODEL_FORMAT:
        raise BehaviorError(
            f"{path}: not a dlcwatch behavior model (for a B-SOiD app model use `dlcwatch behavior import-bsoid`)"
        )
    if payload.get("format_version", 0) > MODEL_FORMAT_VERSION:
        raise BehaviorError(f"{path}: model format {payload['format_version']} is newer than this dlcwatch reads")
    if payload["feature_version"] != FEATURE_VERSION:
        raise BehaviorError(
            f"{path}: model uses features {payload['feature_version']!r}, this dlcwatch computes "
            f"{FEATURE_VERSION!r}; retrain the model"
        )
    return BehaviorModel(
        classifier=payload["classifier"],
        bodyparts=tuple(payload["bodyparts"]),
        fps=float(payload["fps"]),
        feature_version=payload["feature_version"],
        label_names={int(k): str(v) for k, v in payload.get("label_names", {}).items()},
        metadata=dict(payload.get("metadata", {})),
    )


def rename_labels(path: Path, names: dict[int, str]) -> BehaviorModel:
    """Given a model file and ``{label id: name}``, store the names in the model and its sidecar;
    return the updated model. Raise BehaviorError for an id the model does not have or an empty name."""
    model = load_model(path)
    unknown = sorted(set(names) - set(model.label_ids))
    if unknown:
        raise BehaviorError(f"the model has no cluster {unknown} (its clusters are {model.label_ids})")
    blank = sorted(label for label, name in names.items() if not name.strip())
    if blank:
        raise BehaviorError(f"empty name for cluster {blank}")
    updated = replace(model, label_names={**model.label_names, **{k: v.strip() for k, v in names.items()}})
    save_model(updated, path)
    return updated


def import_bsoid_model(
    randomforest_path: Path,
    data_path: Path | None = None,
    *,
    fps: float | None = None,
    bodyparts: list[str] | None = None,
) -> BehaviorModel:
    """Given a B-SOiD app ``<prefix>_randomforest.sav`` (and its ``<prefix>_data.sav``), return a
    BehaviorModel using its random forest.

    The B-SOiD app pickles ``[x_test, y_test, validate_clf, clf, validate_score, predictions]``
    in the first and ``[root, folders, framerate, pose_chosen, filenames, raw_data, processed,
    thresholds]`` in the second; the body parts and frame rate come from the second unless given.
    Best effort: these are pickles of scikit-learn 0.23-era objects. Raise BehaviorError, saying
    what could not be read, when they cannot be used.
    """
    randomforest_path = Path(randomforest_path)
    if data_path is None:
        stem = randomforest_path.name
        if stem.endswith("_randomforest.sav"):
            candidate = randomforest_path.with_name(stem[: -len("_randomforest.sav")] + "_data.sav")
            data_path = candidate if candidate.is_file() else None
    saved = _load_pickle(randomforest_path, "B-SOiD random forest")
    classifier = saved[3] if isinstance(saved, (list, tuple)) and len(saved) >= 4 else saved
    if not (hasattr(classifier, "predict_proba") and hasattr(classifier, "classes_")):
        raise BehaviorError(
            f"{randomforest_path}: no fitted classifier found (expected B-SOiD's list "
            "[x_test, y_test, validate_clf, clf, validate_score, predictions])"
        )

    data_fps, data_bodyparts = None, None
    if data_path is not None and (fps is None or bodyparts is None):
        data = _load_pickle(Path(data_path), "B-SOiD data")
        data_fps, data_bodyparts = _bsoid_data_description(data, Path(data_path))
    fps = fps if fps is not None else data_fps
    bodyparts = list(bodyparts) if bodyparts is not None else data_bodyparts
    if fps is None or bodyparts is None:
        raise BehaviorError(
            f"{randomforest_path}: the frame rate and body parts come from the B-SOiD *_data.sav file; "
            "give it with --data, or give --fps and --bodyparts"
        )

    expected = len(bodyparts) * (len(bodyparts) - 1) + len(bodyparts)
    n_features = getattr(classifier, "n_features_in_", None)
    if n_features is None and hasattr(classifier, "estimators_") and classifier.estimators_:
        n_features = getattr(classifier.estimators_[0], "n_features_", None)
    if n_features is not None and int(n_features) != expected:
        raise BehaviorError(
            f"{randomforest_path}: the classifier takes {n_features} features but {len(bodyparts)} body parts "
            f"({', '.join(bodyparts)}) give {expected}"
        )

    metadata: dict[str, Any] = {
        "source": "B-SOiD app import",
        "imported_from": str(randomforest_path.resolve()),
        "created": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "library_versions": library_versions(),
    }
    if isinstance(saved, (list, tuple)) and len(saved) >= 6:
        predictions = np.asarray(saved[5]).ravel()
        labels, counts = np.unique(predictions[predictions >= 0], return_counts=True)
        metadata["cluster_sizes"] = {str(int(k)): int(v) for k, v in zip(labels, counts)}
        scores = np.asarray(saved[4], dtype=float).ravel()
        if scores.size:
            metadata["cross_validated_accuracy"] = {"mean": float(scores.mean()), "folds": scores.tolist()}
    return BehaviorModel(classifier=classifier, bodyparts=tuple(bodyparts), fps=float(fps), metadata=metadata)


def _load_pickle(path: Path, what: str) -> Any:
    """Return a joblib/pickle file's content; raise BehaviorError saying why it cannot be read.

    Decision trees pickled by scikit-learn before 1.3 (B-SOiD pins 0.23) lack a node field that
    later versions require; such files are read a second time with the field added.
    """
    if not path.is_file():
        raise BehaviorError(f"{what} file not found: {path}")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            try:
                content = joblib.load(path)
            except ValueError as error:
                if "incompatible dtype" not in str(error):
                    raise
                content = _load_upgrading_trees(path)
        _fill_missing_estimator_parameters(content)
        return content
    except ModuleNotFoundError as error:
        raise BehaviorError(
            f"{path}: cannot read the {what} file: it needs the module {error.name!r}, which this environment "
            "lacks (it was saved by an old B-SOiD environment); retrain with `dlcwatch behavior train`"
        ) from error
    except Exception as error:
        raise BehaviorError(
            f"{path}: cannot read the {what} file ({type(error).__name__}: {error}); "
            "retrain with `dlcwatch behavior train`"
        ) from error


def _load_upgrading_trees(path: Path) -> Any:
    """Load a joblib file whose decision trees come from scikit-learn < 1.3, adding the node field
    ``missing_go_to_left`` (0: no missing values were seen in training, which B-SOiD never had)."""
    import pickle

    from joblib import numpy_pickle
    from sklearn.tree._tree import NODE_DTYPE, Tree

    def upgrade(nodes: np.ndarray) -> np.ndarray:
        if nodes.dtype.names is None or "missing_go_to_left" in nodes.dtype.names:
            return nodes
        upgraded = np.zeros(nodes.shape, dtype=NODE_DTYPE)
        for name in nodes.dtype.names:
            if name in NODE_DTYPE.names:
                upgraded[name] = nodes[name]
        return upgraded

    class UpgradingUnpickler(numpy_pickle.NumpyUnpickler):
        dispatch = numpy_pickle.NumpyUnpickler.dispatch.copy()

        def load_build(self) -> None:
            # The pickle stack holds the new object, then its state: fix the state before it is set.
            state, target = self.stack[-1], self.stack[-2]
            if isinstance(target, Tree) and isinstance(state, dict) and "nodes" in state:
                state["nodes"] = upgrade(state["nodes"])
            super().load_build()

        dispatch[pickle.BUILD[0]] = load_build

    # joblib has no hook for a custom unpickler; swap its class only for this one load (a rare,
    # interactive import, not the analysis path).
    original = numpy_pickle.NumpyUnpickler
    numpy_pickle.NumpyUnpickler = UpgradingUnpickler
    try:
        return joblib.load(path)
    finally:
        numpy_pickle.NumpyUnpickler = original


def _fill_missing_estimator_parameters(content: Any) -> None:
    """Give scikit-learn estimators from older versions the parameters added since (at defaults)."""
    from sklearn.base import BaseEstimator

    items = content if isinstance(content, (list, tuple)) else [content]
    for item in items:
        if not isinstance(item, BaseEstimator):
            continue
        for estimator in [item, *getattr(item, "estimators_", [])]:
            try:
                defaults = type(estimator)().get_params(deep=False)
            except Exception:  # an estimator that cannot be built without arguments: leave it
                continue
            for name, value in defaults.items():
                if name not in estimator.__dict__:
                    setattr(estimator, name, value)
            if "n_features_in_" not in estimator.__dict__ and "n_features_" in estimator.__dict__:
                estimator.n_features_in_ = estimator.__dict__["n_features_"]


def _bsoid_data_description(data: Any, path: Path) -> tuple[float | None, list[str] | None]:
    """Given the content of a B-SOiD ``*_data.sav``, return (frame rate, body parts chosen)."""
    if not isinstance(data, (list, tuple)) or len(data) < 6:
        raise BehaviorError(f"{path}: not a B-SOiD *_data.sav file (expected its list of 8 items)")
    fps = float(data[2]) if np.isscalar(data[2]) else None
    pose_chosen = [int(i) for i in np.asarray(data[3]).ravel()]
    raw = data[5][0] if len(data[5]) else None
    names = None
    try:
        if raw is not None and hasattr(raw, "columns"):
            if getattr(raw.columns, "nlevels", 1) >= 3:
                # .h5 input: B-SOiD indexes the MultiIndex columns directly.
                level = raw.columns.get_level_values(-2)
                names = [str(level[i]) for i in pose_chosen]
            else:
                # .csv input read with one header row: the first data row holds the body parts and
                # B-SOiD's indices skip the frame-number column.
                names = [str(raw.iloc[0, i + 1]) for i in pose_chosen]
    except (IndexError, KeyError) as error:
        raise BehaviorError(f"{path}: cannot find the chosen body parts in the raw data ({error})") from error
    bodyparts = list(dict.fromkeys(names)) if names else None
    return fps, bodyparts
