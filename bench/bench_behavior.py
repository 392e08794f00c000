"""Benchmark behavior labels: features + frame-shift prediction for one hour of 30 fps video.

Compares dlcwatch's vectorised features with a straightforward per-frame Python loop of the same
definitions (the baseline below, written the way B-SOiD's own code is structured), on the same
synthetic hour of 8 body parts, with the same random forest. It also checks that both give the
same feature values, so the speed-up is not bought with a different answer.

Run from the repository root:

    PYTHONPATH=. .venv/bin/python bench/bench_behavior.py            # one hour, about 2 minutes
    PYTHONPATH=. .venv/bin/python bench/bench_behavior.py --minutes 5  # quicker look

CPU time is ``time.process_time()`` (all threads of this process); the forest predicts on one
thread. Stage timings are medians of the repeats; the whole-file time is also given for the first
call in the process (memory not yet mapped, libraries not yet warm), as in an analysis job.
"""

from __future__ import annotations

import argparse
import math
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tests"))

from behavior_synth import make_trajectory, write_trajectory  # noqa: E402

from dlcwatch.behavior.features import (  # noqa: E402
    clean_positions,
    frame_features,
    frame_shift_windows,
    frames_per_bin,
    likelihood_threshold,
    smoothing_window,
    window_of_each_frame,
)
from dlcwatch.behavior.keypoints import read_keypoints  # noqa: E402
from dlcwatch.behavior.model_io import load_model  # noqa: E402
from dlcwatch.behavior.predict import label_animal, label_keypoints_file  # noqa: E402

FPS = 30.0


# --- the baseline: one Python loop over frames, as the definitions read ------------------------

def loop_features(xy: np.ndarray, likelihood: np.ndarray, fps: float) -> np.ndarray:
    """Frame-shift windows computed frame by frame with plain Python loops (the baseline)."""
    n_frames, n_parts = likelihood.shape
    pairs = [(i, j) for i in range(n_parts) for j in range(i + 1, n_parts)]
    points = xy.tolist()
    scores = likelihood.tolist()
    # Likelihood filter (the threshold itself is a 10-bin histogram per body part, not per frame).
    thresholds = [likelihood_threshold(likelihood[:, part]) for part in range(n_parts)]
    clean = [[None] * n_parts for _ in range(n_frames)]
    for part in range(n_parts):
        first = next(
            (t for t in range(n_frames) if scores[t][part] >= thresholds[part] and
             not math.isnan(points[t][part][0]) and not math.isnan(points[t][part][1])),
            None,
        )
        previous = points[first][part] if first is not None else [math.nan, math.nan]
        for t in range(n_frames):
            x, y = points[t][part]
            if scores[t][part] >= thresholds[part] and not (math.isnan(x) or math.isnan(y)):
                previous = [x, y]
            clean[t][part] = previous
    # Per-frame features.
    distances, angles, displacements = [], [], []
    for t in range(n_frames):
        distances.append([math.hypot(clean[t][i][0] - clean[t][j][0], clean[t][i][1] - clean[t][j][1])
                          for i, j in pairs])
        if t + 1 < n_frames:
            row_angle = []
            for i, j in pairs:
                ax, ay = clean[t][i][0] - clean[t][j][0], clean[t][i][1] - clean[t][j][1]
                bx, by = clean[t + 1][i][0] - clean[t + 1][j][0], clean[t + 1][i][1] - clean[t + 1][j][1]
                row_angle.append(math.degrees(math.atan2(bx * ay - by * ax, ax * bx + ay * by)))
            angles.append(row_angle)
            displacements.append([math.hypot(clean[t + 1][p][0] - clean[t][p][0], clean[t + 1][p][1] - clean[t][p][1])
                                  for p in range(n_parts)])
    window = smoothing_window(fps)

    def smooth(series: list[list[float]]) -> list[list[float]]:
        half, length = window // 2, len(series)
        result = []
        for t in range(length):
            low, high = max(0, t - half), min(length, t + half + 1)
            result.append([sum(series[k][c] for k in range(low, high)) / (high - low) for c in range(len(series[0]))])
        return result

    rows = [d + a + s for d, a, s in zip(smooth(distances)[1:], smooth(angles), smooth(displacements))]
    # Frame shift: bin from every start frame (the shifts interleaved), distances averaged, the rest summed.
    width, n_distances = frames_per_bin(fps), len(pairs)
    windows = []
    for start in range(len(rows) - width + 1):
        block = rows[start : start + width]
        windows.append([sum(r[c] for r in block) / width for c in range(n_distances)] +
                       [sum(r[c] for r in block) for c in range(n_distances, len(block[0]))])
    return np.array(windows).reshape(-1, 2 * len(pairs) + n_parts)


def loop_predict(windows: np.ndarray, classifier, width: int, n_frames: int) -> np.ndarray:
    """B-SOiD's prediction: one predict call per frame shift, then interleave and map to frames."""
    labels = np.empty(len(windows), dtype=np.int64)
    for shift in range(width):
        labels[shift::width] = classifier.predict(windows[shift::width])
    owner = window_of_each_frame(n_frames, width)
    return np.array([labels[owner[f]] for f in range(n_frames)])


# --- measurement ----------------------------------------------------------------------------------

def cpu(function, *args):
    """Return (result, CPU seconds, wall seconds) of one call."""
    cpu_start, wall_start = time.process_time(), time.perf_counter()
    result = function(*args)
    return result, time.process_time() - cpu_start, time.perf_counter() - wall_start


def train_small_model(folder: Path) -> Path:
    """Train a model as the tests do (3 × 80 s synthetic videos, B-SOiD defaults); return its path."""
    from dlcwatch.behavior.train import train_and_save

    videos = folder / "train"
    videos.mkdir()
    for seed in range(3):
        write_trajectory(make_trajectory(80, FPS, seed=seed), videos / f"train{seed}.h5")
    return train_and_save([videos], folder / "bench.joblib", FPS)["model"]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--minutes", type=float, default=60.0, help="video length to label (default 60)")
    parser.add_argument("--model", type=Path, help="behavior model to use (default: train a small one)")
    parser.add_argument("--repeats", type=int, default=5, help="repeats of the vectorised timings (default 5)")
    parser.add_argument("--skip-baseline", action="store_true", help="do not run the slow loop baseline")
    args = parser.parse_args()

    with tempfile.TemporaryDirectory() as scratch:
        scratch = Path(scratch)
        model_path = args.model or train_small_model(scratch)
        model = load_model(model_path)
        model.classifier.n_jobs = 1  # CPU time per hour of video, not spread over cores
        trajectory = make_trajectory(args.minutes * 60, FPS, seed=7)
        keypoints = write_trajectory(trajectory, scratch / "hour.h5")
        [animal] = read_keypoints(keypoints)
        n_frames, width = animal.n_frames, frames_per_bin(FPS)
        n_parts = len(animal.bodyparts)
        print(f"{args.minutes:g} min at {FPS:g} fps: {n_frames} frames, {n_parts} body parts, "
              f"{len(model.classifier.estimators_)} trees, {len(model.label_ids)} clusters", flush=True)

        def features():
            cleaned = clean_positions(animal.xy, animal.likelihood)
            return frame_shift_windows(frame_features(cleaned.xy, FPS), n_parts * (n_parts - 1) // 2, width)

        def whole_file():
            return label_keypoints_file(keypoints, model_path, FPS, scratch, "hour")

        # First, as an analysis job does it: one whole file in a process that has done nothing yet.
        _, first_call, _ = cpu(whole_file)
        timings: dict[str, list[float]] = {"features": [], "prediction": [], "features + prediction": [],
                                           "whole file (read, label, write CSV and PNG)": []}
        for _ in range(args.repeats):
            windows, seconds, _ = cpu(features)
            timings["features"].append(seconds)
            _, seconds, _ = cpu(model.classifier.predict_proba, windows)
            timings["prediction"].append(seconds)
            _, seconds, _ = cpu(label_animal, animal, model, FPS)
            timings["features + prediction"].append(seconds)
            _, seconds, _ = cpu(whole_file)
            timings["whole file (read, label, write CSV and PNG)"].append(seconds)

        hours = args.minutes / 60
        print(f"\nvectorised, CPU seconds per hour of video (median of {args.repeats}):")
        print("| stage | CPU s / hour |")
        print("|---|---|")
        for stage, values in timings.items():
            print(f"| {stage} | {statistics.median(values) / hours:.3f} |")
        print(f"| whole file, first call in a fresh process | {first_call / hours:.3f} |")

        if args.skip_baseline:
            return 0
        print("\nbaseline: per-frame Python loop ...", flush=True)
        loop_windows, loop_feature_seconds, _ = cpu(loop_features, animal.xy, animal.likelihood, FPS)
        same = np.allclose(loop_windows, windows, rtol=1e-9, atol=1e-9, equal_nan=True)
        _, loop_predict_seconds, _ = cpu(loop_predict, loop_windows, model.classifier, width, n_frames)
        vector_features = statistics.median(timings["features"])
        vector_total = statistics.median(timings["features + prediction"])
        loop_total = loop_feature_seconds + loop_predict_seconds
        print(f"baseline windows equal the vectorised ones: {same}")
        print("| CPU seconds per hour of video | loop baseline | vectorised | ratio |")
        print("|---|---|---|---|")
        print(f"| features | {loop_feature_seconds / hours:.1f} | {vector_features / hours:.3f} | "
              f"{loop_feature_seconds / vector_features:.0f}x |")
        print(f"| features + prediction | {loop_total / hours:.1f} | {vector_total / hours:.3f} | "
              f"{loop_total / vector_total:.0f}x |")
        if not same:
            print("ERROR: the baseline and the vectorised features differ", file=sys.stderr)
            return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
