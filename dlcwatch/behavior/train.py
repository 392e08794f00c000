"""Train a behavior model from keypoint files: B-SOiD features → UMAP → HDBSCAN → random forest.

Steps, as in B-SOiD:

1. the non-overlapping 10 Hz feature bins of every animal in every file (bins touching a body
   part that is never confident are dropped);
2. standard-scale them (one scaler over all training data) and embed with UMAP (n_neighbors 60,
   min_dist 0, fixed seed) into as many dimensions as PCA needs for 70 % of the variance;
3. cluster the embedding with HDBSCAN (min_samples 1), sweeping min_cluster_size over a range of
   percentages of the bins and keeping the result with the most clusters within the configured
   bounds (ties: the one leaving fewest bins as noise);
4. train a random forest on the unscaled features of the clustered bins (noise dropped), and
   measure its cross-validated accuracy.

``umap`` is imported inside :func:`train_model` only: it is a training dependency, absent from the
DeepLabCut environment where prediction runs.
"""

from __future__ import annotations

import datetime
import time
import warnings
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from dlcwatch.errors import BehaviorError
from dlcwatch.files import atomic_write
from dlcwatch.behavior.features import (
    FEATURE_VERSION,
    clean_positions,
    bin_features,
    feature_names,
    frame_features,
    frames_per_bin,
    smoothing_window,
)
from dlcwatch.behavior.keypoints import find_keypoint_files, read_frame_rate, read_keypoints
from dlcwatch.behavior.model_io import BehaviorModel, library_versions, save_model

__all__ = ["TrainingConfig", "TrainingResult", "train_and_save", "train_model", "training_report"]

Progress = Callable[[str], None]


@dataclass(frozen=True)
class TrainingConfig:
    """Training settings; the defaults are B-SOiD's."""

    umap_neighbors: int = 60
    umap_min_dist: float = 0.0
    umap_components: int | None = None  # None: as many as PCA needs for 70 % of the variance
    seed: int = 42
    min_cluster_size_percent: tuple[float, float] = (0.5, 1.0)
    sweep_steps: int = 25
    min_clusters: int = 2
    max_clusters: int = 30
    forest_trees: int = 100
    cv_folds: int = 5

    def check(self) -> None:
        """Raise BehaviorError when a setting is out of range."""
        low, high = self.min_cluster_size_percent
        if not 0 < low <= high <= 100:
            raise BehaviorError("min cluster size range must satisfy 0 < LOW <= HIGH <= 100 (percent of bins)")
        if not 1 <= self.min_clusters <= self.max_clusters:
            raise BehaviorError("cluster bounds must satisfy 1 <= MIN <= MAX")
        if self.umap_neighbors < 2 or self.sweep_steps < 1 or self.forest_trees < 1 or self.cv_folds < 0:
            raise BehaviorError("umap neighbors must be >= 2, sweep steps and trees >= 1, folds >= 0")


@dataclass
class TrainingResult:
    """A trained model and what its training produced (for the plot and the report)."""

    model: BehaviorModel
    features: np.ndarray  # bins × features, unscaled
    embedding: np.ndarray  # bins × UMAP dimensions
    assignments: np.ndarray  # HDBSCAN cluster of each bin, −1 for noise
    sweep: list[dict]  # min_cluster_size, clusters, noise fraction of each HDBSCAN run
    chosen_min_cluster_size: int
    cv_scores: np.ndarray
    files: list[Path]


def _quiet(message: str) -> None:
    pass


def train_model(
    keypoint_paths: list[Path],
    fps: float | None = None,
    *,
    config: TrainingConfig = TrainingConfig(),
    bodyparts: list[str] | None = None,
    unfiltered: bool = False,
    progress: Progress = _quiet,
) -> TrainingResult:
    """Given keypoint files or folders and their frame rate, return a TrainingResult.

    ``fps`` None reads each file's rate from dlcwatch's manifest.json or DeepLabCut's ``*_meta.pickle``
    beside it. Folders give one table per video: the filtered one unless ``unfiltered``. ``bodyparts`` (default:
    those of the first animal read) picks and orders the body parts. Raise BehaviorError for
    unreadable or inconsistent input, too little data, or no clustering within the bounds.
    """
    config.check()
    files = find_keypoint_files(list(keypoint_paths), unfiltered=unfiltered, report=progress)
    progress(f"reading {len(files)} keypoint file(s)")
    features, rates, bodyparts = _collect_training_bins(files, fps, bodyparts, progress)
    model_fps = fps if fps is not None else float(np.median(rates))
    progress(f"features: {features.shape[0]} bins of {features.shape[1]} features ({len(bodyparts)} body parts)")
    if features.shape[0] <= config.umap_neighbors:
        raise BehaviorError(
            f"too little data: {features.shape[0]} usable 10 Hz bins, need more than {config.umap_neighbors} "
            f"(about {config.umap_neighbors / 10 + 0.1:.0f} s of video)"
        )

    embedding = _embed(features, config, progress)
    assignments, sweep, chosen = _cluster(embedding, config, progress)
    clustered = assignments >= 0
    labels = assignments[clustered]
    classifier, cv_scores = _fit_forest(features[clustered], labels, config, progress)

    sizes = {str(int(k)): int(v) for k, v in zip(*np.unique(labels, return_counts=True))}
    metadata = {
        "created": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "source": "dlcwatch behavior train",
        "training_files": [str(path) for path in files],
        "training_fps": sorted(set(float(r) for r in rates)),
        "frames_per_bin": frames_per_bin(model_fps),
        "smoothing_window_frames": smoothing_window(model_fps),
        "feature_names": feature_names(bodyparts),
        "bins": int(features.shape[0]),
        "noise_fraction": float(1 - clustered.mean()),
        "cluster_sizes": sizes,
        "cross_validated_accuracy": (
            {"mean": float(cv_scores.mean()), "std": float(cv_scores.std()), "folds": cv_scores.tolist()}
            if cv_scores.size
            else None
        ),
        "embedding_dimensions": int(embedding.shape[1]),
        "min_cluster_size": chosen,
        "config": {k: list(v) if isinstance(v, tuple) else v for k, v in asdict(config).items()},
        "library_versions": library_versions(),
    }
    model = BehaviorModel(
        classifier=classifier,
        bodyparts=tuple(bodyparts),
        fps=float(model_fps),
        feature_version=FEATURE_VERSION,
        metadata=metadata,
    )
    return TrainingResult(model, features, embedding, assignments, sweep, chosen, cv_scores, files)


def _collect_training_bins(
    files: list[Path], fps: float | None, bodyparts: list[str] | None, progress: Progress
) -> tuple[np.ndarray, list[float], list[str]]:
    """Return the finite training bins of every animal in every file, each file's rate, the body parts."""
    if fps is not None and not (np.isfinite(fps) and fps > 0):
        raise BehaviorError(f"frame rate must be a positive number, not {fps}")
    blocks, rates = [], []
    for path in files:
        rate = fps if fps is not None else read_frame_rate(path)
        if rate is None:
            raise BehaviorError(f"{path}: frame rate unknown (no manifest.json listing it and no DeepLabCut "
                                "*_meta.pickle beside it); give --fps")
        for animal in read_keypoints(path):
            if bodyparts is None:
                bodyparts = list(animal.bodyparts)
            if not set(bodyparts) <= set(animal.bodyparts):
                if animal.individual is not None:
                    # maDLC's "single" pseudo-individual holds the unique body parts: not an animal.
                    progress(f"  {path.name}: skipping individual {animal.individual!r} (other body parts)")
                    continue
                raise BehaviorError(
                    f"{path}: body parts {list(animal.bodyparts)} do not include the training body parts {bodyparts}"
                )
            animal = animal.select(bodyparts)
            cleaned = clean_positions(animal.xy, animal.likelihood)
            for part in cleaned.never_confident:
                progress(f"  {path.name}: body part {bodyparts[part]!r} is never confident; its bins are dropped")
            rows = frame_features(cleaned.xy, rate)
            bins = bin_features(rows, len(bodyparts) * (len(bodyparts) - 1) // 2, frames_per_bin(rate))
            bins = bins[np.isfinite(bins).all(axis=1)]
            who = f" ({animal.individual})" if animal.individual is not None else ""
            progress(f"  {path.name}{who}: {animal.n_frames} frames at {rate:g} fps -> {len(bins)} bins")
            blocks.append(bins)
            rates.append(float(rate))
    if bodyparts is None or not blocks:
        raise BehaviorError("no animal with the training body parts was found")
    if len(set(frames_per_bin(rate) for rate in rates)) > 1:
        progress(f"  note: files have different frame rates {sorted(set(rates))}; bins still last about 100 ms")
    return np.concatenate(blocks), rates, bodyparts


def _embed(features: np.ndarray, config: TrainingConfig, progress: Progress) -> np.ndarray:
    """Return the UMAP embedding of the standard-scaled features."""
    from sklearn.decomposition import PCA
    from sklearn.preprocessing import StandardScaler

    started = time.monotonic()
    scaled = StandardScaler().fit_transform(features)
    components = config.umap_components
    if components is None:
        explained = np.cumsum(PCA(random_state=config.seed).fit(scaled).explained_variance_ratio_)
        components = int(np.searchsorted(explained, 0.7) + 1)
    components = int(np.clip(components, 2, max(2, features.shape[1])))
    progress(f"UMAP: {scaled.shape[0]} bins -> {components} dimensions (n_neighbors {config.umap_neighbors})")
    try:
        import umap
    except ImportError as error:
        raise BehaviorError("training needs the umap-learn package: pip install umap-learn") from error
    with warnings.catch_warnings():
        # umap warns that a fixed seed disables parallelism: that is the point of the seed.
        warnings.simplefilter("ignore", UserWarning)
        reducer = umap.UMAP(
            n_neighbors=config.umap_neighbors,
            min_dist=config.umap_min_dist,
            n_components=components,
            random_state=config.seed,
            n_jobs=1,
        )
        embedding = reducer.fit_transform(scaled)
    progress(f"UMAP: done in {time.monotonic() - started:.1f} s")
    return np.asarray(embedding, dtype=np.float64)


def _cluster(embedding: np.ndarray, config: TrainingConfig, progress: Progress) -> tuple[np.ndarray, list[dict], int]:
    """Return HDBSCAN's assignments with the most clusters within bounds, the sweep, the size chosen."""
    from sklearn.cluster import HDBSCAN

    low, high = config.min_cluster_size_percent
    sizes = np.linspace(low, high, config.sweep_steps) / 100 * embedding.shape[0]
    # Small data maps many percentages to the same integer size: fit each size once.
    sizes = sorted(set(max(2, int(round(size))) for size in sizes))
    progress(f"HDBSCAN: min_cluster_size {sizes[0]}..{sizes[-1]} ({len(sizes)} runs)")
    sweep, best, best_key = [], None, None
    for size in sizes:
        labels = HDBSCAN(min_cluster_size=size, min_samples=1, copy=True).fit(embedding).labels_
        clusters = int(labels.max() + 1)
        noise = float(np.mean(labels < 0))
        sweep.append({"min_cluster_size": size, "clusters": clusters, "noise_fraction": noise})
        if config.min_clusters <= clusters <= config.max_clusters:
            key = (clusters, -noise)
            if best_key is None or key > best_key:
                best, best_key = (labels, size), key
    if best is None:
        found = sorted(set(run["clusters"] for run in sweep))
        raise BehaviorError(
            f"no min_cluster_size in {low}-{high} % of the bins gave between {config.min_clusters} and "
            f"{config.max_clusters} clusters (found {found}); change --min-cluster-size or the cluster bounds"
        )
    labels, size = best
    progress(f"HDBSCAN: {labels.max() + 1} clusters at min_cluster_size {size}, {np.mean(labels < 0):.1%} noise")
    return labels, sweep, size


def _fit_forest(features: np.ndarray, labels: np.ndarray, config: TrainingConfig, progress: Progress):
    """Return a random forest fitted on the clustered bins, and its cross-validated accuracies."""
    from sklearn.ensemble import RandomForestClassifier
    from sklearn.model_selection import StratifiedKFold, cross_val_score

    def forest() -> RandomForestClassifier:
        return RandomForestClassifier(n_estimators=config.forest_trees, random_state=config.seed, n_jobs=1)

    folds = min(config.cv_folds, int(np.bincount(labels).min()))
    scores = np.array([])
    if folds >= 2:
        progress(f"random forest: {folds}-fold cross-validation on {len(labels)} bins")
        splitter = StratifiedKFold(n_splits=folds, shuffle=True, random_state=config.seed)
        scores = cross_val_score(forest(), features, labels, cv=splitter)
        progress(f"random forest: cross-validated accuracy {scores.mean():.3f} ± {scores.std():.3f}")
    else:
        progress("random forest: a cluster is too small to cross-validate; skipped")
    classifier = forest().fit(features, labels)
    return classifier, scores


def training_report(result: TrainingResult) -> str:
    """Given a TrainingResult, return a short plain-text report for people."""
    model, meta = result.model, result.model.metadata
    lines = [
        "dlcwatch behavior model",
        f"created: {meta['created']}",
        f"files: {len(result.files)}",
        *[f"  {path}" for path in result.files],
        f"body parts ({len(model.bodyparts)}): {', '.join(model.bodyparts)}",
        f"frame rate: {model.fps:g} fps; {meta['frames_per_bin']} frames a bin; "
        f"smoothing {meta['smoothing_window_frames']} frames",
        f"feature version: {model.feature_version}; {len(meta['feature_names'])} features",
        f"bins: {meta['bins']}; UMAP dimensions: {meta['embedding_dimensions']}",
        "HDBSCAN sweep (min_cluster_size: clusters, noise):",
        *[
            f"  {run['min_cluster_size']:>6}: {run['clusters']:>3} clusters, {run['noise_fraction']:.1%} noise"
            + ("  <- chosen" if run["min_cluster_size"] == result.chosen_min_cluster_size else "")
            for run in result.sweep
        ],
        f"noise (bins left out of training): {meta['noise_fraction']:.1%}",
        "clusters (bins, share of clustered bins):",
    ]
    total = sum(meta["cluster_sizes"].values())
    for label, count in meta["cluster_sizes"].items():
        lines.append(f"  {label:>3} {model.label_name(int(label)):<20} {count:>7}  {count / total:.1%}")
    accuracy = meta["cross_validated_accuracy"]
    lines.append(
        f"cross-validated accuracy: {accuracy['mean']:.3f} ± {accuracy['std']:.3f} over {len(accuracy['folds'])} folds"
        if accuracy
        else "cross-validated accuracy: not measured (a cluster was too small)"
    )
    lines.append("name the clusters with: dlcwatch behavior names MODEL 0=rest 1=walk ...")
    return "\n".join(lines) + "\n"


def train_and_save(
    keypoint_paths: list[Path],
    out: Path,
    fps: float | None = None,
    *,
    config: TrainingConfig = TrainingConfig(),
    bodyparts: list[str] | None = None,
    unfiltered: bool = False,
    progress: Progress = _quiet,
) -> dict[str, Path]:
    """Given keypoint files, a model path and the frame rate, train and write the model, its JSON
    sidecar, ``<model stem>_embedding.png`` and ``<model stem>_report.txt``; return their paths.

    Raise BehaviorError as :func:`train_model` does.
    """
    from dlcwatch.behavior.plots import save_embedding_png

    out = Path(out)
    result = train_model(keypoint_paths, fps, config=config, bodyparts=bodyparts, unfiltered=unfiltered,
                         progress=progress)
    sidecar = save_model(result.model, out)
    embedding_png = out.with_name(f"{out.stem}_embedding.png")
    save_embedding_png(result.embedding, result.assignments, embedding_png, result.model.label_name)
    report = out.with_name(f"{out.stem}_report.txt")
    with atomic_write(report, binary=False) as handle:
        handle.write(training_report(result))
    progress(f"wrote {out}, {sidecar.name}, {embedding_png.name}, {report.name}")
    return {"model": out, "sidecar": sidecar, "embedding_png": embedding_png, "report": report}
