"""Behavior features: hand-computed values, B-SOiD's likelihood filter, edge cases, table reading."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest

from dlcwatch.errors import BehaviorError
from dlcwatch.behavior.features import (
    bin_features,
    boxcar_centred,
    clean_positions,
    feature_names,
    frame_features,
    frame_shift_windows,
    frames_per_bin,
    likelihood_threshold,
    smoothing_window,
    training_bins,
    window_of_each_frame,
)
from dlcwatch.behavior.keypoints import find_keypoint_files, read_dlc_fps, read_frame_rate, read_keypoints

try:
    from tests.behavior_synth import BODYPARTS, make_trajectory, to_dlc_table, write_dlc
except ImportError:  # tests/ is not a package: pytest puts it on sys.path itself
    from behavior_synth import BODYPARTS, make_trajectory, to_dlc_table, write_dlc


# --- hand-computed features -------------------------------------------------------------------

def test_features_match_hand_computed_values_without_smoothing():
    """At 10 fps the boxcar is 1 frame and a bin 1 frame, so features are the raw per-step values.

    Pairs are (a,b), (a,c), (b,c); a pair's vector is first − second. From frame 0 to 1, a−b turns
    from (−1,0) to (0,−1): +90° counter-clockwise in (x, y), which B-SOiD's sign makes −90°;
    b−c turns from (1,−2) to (0,−1): atan2(1, 2) = 26.565° clockwise, so +26.565°.
    """
    xy = np.array(
        [
            [[0, 0], [1, 0], [0, 2]],
            [[0, 0], [0, 1], [0, 2]],
            [[3, 4], [0, 1], [0, 2]],
        ],
        dtype=float,
    )
    rows = frame_features(xy, fps=10)
    assert rows.shape == (2, 3 + 3 + 3)
    np.testing.assert_allclose(
        rows[0], [1, 2, 1, -90, 0, math.degrees(math.atan2(1, 2)), 0, math.sqrt(2), 0], atol=1e-9
    )
    # Frame 1 → 2: only a moves, by (3, 4), so its displacement is 5; distances at frame 2.
    np.testing.assert_allclose(rows[1, :3], [math.hypot(3, 3), math.hypot(3, 2), 1])
    np.testing.assert_allclose(rows[1, 6:], [5, 0, 0])
    assert feature_names(["a", "b", "c"])[:3] == ["distance a-b", "distance a-c", "distance b-c"]
    assert feature_names(["a", "b", "c"])[-1] == "displacement c"


def test_smoothing_and_binning_match_hand_computed_values():
    """At 30 fps: boxcar of 3 frames (ends average 2), bins of 3 steps, distances averaged, others summed.

    Body part a moves along x by steps 1..7; b stays at (100, 0). Displacements 1..7 smooth to
    1.5, 2, 3, 4, 5, 6, 6.5; two complete bins sum to 6.5 and 15 (the seventh step is left over).
    Distances 100, 99, 97, 94, 90, 85, 79, 72 smooth to 99.5, 98.667, 96.667, 93.667, 89.667,
    84.667, 78.667, 75.5; frame 0 is dropped and bins average to 96.333 and 84.333.
    """
    positions = np.concatenate([[0], np.cumsum(np.arange(1, 8))]).astype(float)
    xy = np.zeros((8, 2, 2))
    xy[:, 0, 0] = positions
    xy[:, 1, 0] = 100.0
    rows = frame_features(xy, fps=30)
    np.testing.assert_allclose(rows[:, 2], [1.5, 2, 3, 4, 5, 6, 6.5])
    np.testing.assert_allclose(rows[:, 3], 0.0)
    np.testing.assert_allclose(rows[:, 1], 0.0)  # the a−b vector never turns
    bins = bin_features(rows, n_distances=1, bin_rows=3)
    np.testing.assert_allclose(bins[:, 0], [(98 + 2 / 3 + 96 + 2 / 3 + 93 + 2 / 3) / 3, (89 + 2 / 3 + 84 + 2 / 3 + 78 + 2 / 3) / 3])
    np.testing.assert_allclose(bins[:, 2], [6.5, 15])
    np.testing.assert_allclose(bins[:, 3], 0.0)  # b never moves
    windows = frame_shift_windows(rows, n_distances=1, bin_rows=3)
    np.testing.assert_allclose(windows[:, 2], [6.5, 9, 12, 15, 17.5])


def test_window_and_bin_sizes():
    """B-SOiD's rounding (halves to even); its failure (a width of −1 at 10 fps and below) made 1."""
    assert [smoothing_window(f) for f in (10, 25, 29.97, 30, 50, 60, 90, 120)] == [1, 1, 1, 3, 3, 5, 7, 11]
    assert [frames_per_bin(f) for f in (4, 10, 25, 29.97, 30, 59.94, 60, 120)] == [1, 1, 2, 3, 3, 6, 6, 12]


def test_boxcar_matches_pandas_centred_rolling_mean_with_nan():
    """B-SOiD smooths with pandas' rolling(window, min_periods=1, center=True).mean()."""
    values = np.random.default_rng(1).normal(size=(50, 3))
    values[[0, 7, 8, 30], 1] = np.nan
    expected = pd.DataFrame(values).rolling(5, min_periods=1, center=True).mean().to_numpy()
    np.testing.assert_allclose(boxcar_centred(values, 5), expected)


def test_frame_shift_windows_equal_a_sliding_window_over_every_start():
    rows = np.random.default_rng(2).normal(size=(41, 5))
    windows = frame_shift_windows(rows, n_distances=2, bin_rows=4)
    assert windows.shape == (41 - 4 + 1, 5)
    for start in (0, 1, 2, 3, 17, 37):
        np.testing.assert_allclose(windows[start, :2], rows[start : start + 4, :2].mean(axis=0))
        np.testing.assert_allclose(windows[start, 2:], rows[start : start + 4, 2:].sum(axis=0))


def test_every_frame_gets_exactly_one_window_centred_on_it():
    owner = window_of_each_frame(n_frames=20, bin_rows=3)
    assert owner.shape == (20,)
    n_windows = 20 - 1 - 3 + 1
    assert owner.min() == 0 and owner.max() == n_windows - 1
    # Window j spans frames j..j+3; frame f uses j = f − 1, clipped at the ends.
    assert list(owner[:4]) == [0, 0, 1, 2]
    assert list(owner[-3:]) == [n_windows - 1] * 3
    assert (window_of_each_frame(3, 3) == -1).all()  # shorter than one bin: no window at all


# --- likelihood filter ------------------------------------------------------------------------

def test_threshold_is_the_edge_where_counts_stop_falling():
    """Counts 50, 10, 5, 0, 0, ...: they stop falling at bin 3 (0 → 0), so the threshold is its left edge."""
    values = np.concatenate([np.full(50, 0.01), np.full(10, 0.11), np.full(5, 0.21), np.full(100, 0.99), [0.0, 1.0]])
    counts, edges = np.histogram(values, bins=10)
    assert list(counts[:4]) == [51, 10, 5, 0]
    assert likelihood_threshold(values) == pytest.approx(edges[3])


def test_threshold_skips_a_stop_at_the_first_bins_like_bsoid():
    """Counts rising from bin 0 (good tracking) use the second place where counts stop falling."""
    values = np.concatenate([[0.0], np.full(3, 0.15), np.full(2, 0.35), np.full(500, 0.97), [1.0]])
    counts, edges = np.histogram(values, bins=10)
    stops = np.flatnonzero(np.diff(counts) >= 0)
    assert stops[0] <= 1
    assert likelihood_threshold(values) == pytest.approx(edges[stops[1]])


def test_threshold_when_counts_fall_all_the_way_keeps_the_top_bin():
    """B-SOiD raises IndexError here; the threshold becomes the last bin's left edge."""
    values = np.concatenate([np.full(10 - k, k / 10 + 0.05) for k in range(10)])
    counts, edges = np.histogram(values, bins=10)
    assert (np.diff(counts) < 0).all()
    assert likelihood_threshold(values) == pytest.approx(edges[-2])


def test_threshold_of_constant_or_missing_likelihoods():
    assert likelihood_threshold(np.full(20, 0.5)) <= 0.5  # every frame kept
    assert math.isnan(likelihood_threshold(np.full(20, np.nan)))


def test_unconfident_frames_are_forward_filled_and_leading_ones_take_the_first_good_value():
    xy = np.arange(12, dtype=float).reshape(6, 1, 2)
    likelihood = np.array([[0.05], [0.05], [0.95], [0.05], [0.95], [0.96]])
    cleaned = clean_positions(xy, likelihood)
    # Frames 0 and 1 precede the first good frame (2): they take its value; frame 3 takes frame 2's.
    np.testing.assert_array_equal(cleaned.xy[:, 0, 0], [4, 4, 4, 4, 8, 10])
    assert cleaned.filled_fraction[0] == pytest.approx(3 / 6)
    assert cleaned.never_confident == ()


def test_nan_positions_and_likelihoods_count_as_unconfident():
    trajectory = make_trajectory(10, seed=3)
    xy, likelihood = trajectory.xy.copy(), trajectory.likelihood.copy()
    rng = np.random.default_rng(0)
    xy[rng.random(xy.shape[:2]) < 0.05] = np.nan
    likelihood[rng.random(likelihood.shape) < 0.05] = np.nan
    xy[:5, 2] = np.nan  # the first frames of one body part
    cleaned = clean_positions(xy, likelihood)
    assert np.isfinite(cleaned.xy).all()
    first_good = np.flatnonzero(np.isfinite(xy[:, 2, 0]) & (likelihood[:, 2] >= cleaned.thresholds[2]))[0]
    np.testing.assert_array_equal(cleaned.xy[:first_good, 2], np.repeat(xy[first_good : first_good + 1, 2], first_good, 0))
    assert np.isfinite(training_bins(xy, likelihood, 30)).all()


def test_a_body_part_never_confident_gives_nan_features_only_where_it_is_used():
    trajectory = make_trajectory(5, seed=4)
    likelihood = trajectory.likelihood.copy()
    likelihood[:, 7] = np.nan  # tail_tip never detected
    cleaned = clean_positions(trajectory.xy, likelihood)
    assert cleaned.never_confident == (7,)
    assert np.isnan(cleaned.xy[:, 7]).all() and np.isfinite(cleaned.xy[:, :7]).all()
    rows = frame_features(cleaned.xy, 30)
    names = feature_names(BODYPARTS)
    uses_tail_tip = np.array(["tail_tip" in name for name in names])
    assert np.isnan(rows[:, uses_tail_tip]).all()
    assert np.isfinite(rows[:, ~uses_tail_tip]).all()


# --- short inputs -----------------------------------------------------------------------------

@pytest.mark.parametrize("n_frames", [0, 1, 2, 3])
def test_video_shorter_than_one_bin_gives_no_bin_and_no_crash(n_frames):
    trajectory = make_trajectory(1, seed=5)
    xy, likelihood = trajectory.xy[:n_frames], trajectory.likelihood[:n_frames]
    cleaned = clean_positions(xy, likelihood)
    rows = frame_features(cleaned.xy, 30)
    assert rows.shape == (max(0, n_frames - 1), 64)
    assert frame_shift_windows(rows, 28, 3).shape == (0, 64)
    assert training_bins(xy, likelihood, 30).shape == (0, 64)
    assert (window_of_each_frame(n_frames, 3) == -1).all()


# --- reading DeepLabCut tables ------------------------------------------------------------------

@pytest.mark.parametrize("suffix", [".h5", ".csv"])
def test_single_animal_table_round_trip(tmp_path, suffix):
    trajectory = make_trajectory(3, seed=6)
    path = write_dlc(to_dlc_table(trajectory.xy, trajectory.likelihood), tmp_path / f"video{suffix}")
    [animal] = read_keypoints(path)
    assert animal.individual is None
    assert animal.bodyparts == BODYPARTS
    np.testing.assert_allclose(animal.xy, trajectory.xy)
    np.testing.assert_allclose(animal.likelihood, trajectory.likelihood)


@pytest.mark.parametrize("suffix", [".h5", ".csv"])
def test_multi_animal_table_gives_one_animal_per_individual(tmp_path, suffix):
    first, second = make_trajectory(3, seed=7), make_trajectory(3, seed=8)
    table = to_dlc_table(np.stack([first.xy, second.xy]), np.stack([first.likelihood, second.likelihood]),
                         individuals=("mouse1", "mouse2"))
    path = write_dlc(table, tmp_path / f"pair{suffix}")
    animals = read_keypoints(path)
    assert [animal.individual for animal in animals] == ["mouse1", "mouse2"]
    np.testing.assert_allclose(animals[1].xy, second.xy)


def test_unreadable_files_raise_a_clear_error(tmp_path):
    (tmp_path / "notes.csv").write_text("just,some\n1,2\n")
    with pytest.raises(BehaviorError, match="notes.csv"):
        read_keypoints(tmp_path / "notes.csv")
    with pytest.raises(BehaviorError, match="not found"):
        read_keypoints(tmp_path / "missing.h5")
    (tmp_path / "broken.h5").write_bytes(b"not hdf5")
    with pytest.raises(BehaviorError, match="broken.h5"):
        read_keypoints(tmp_path / "broken.h5")


def test_folder_expansion_prefers_h5_over_its_csv_twin_and_skips_side_files(tmp_path):
    for name in ("a.h5", "a.csv", "b.csv", "a_meta.csv", "notes.txt"):
        (tmp_path / name).write_text("")
    assert [p.name for p in find_keypoint_files([tmp_path])] == ["a.h5", "b.csv"]
    with pytest.raises(BehaviorError):
        find_keypoint_files([tmp_path / "nowhere"])


def test_frame_rate_is_read_from_deeplabcut_metadata(tmp_path):
    import pickle

    with open(tmp_path / "videoDLC_meta.pickle", "wb") as handle:
        pickle.dump({"data": {"fps": 29.97, "nframes": 10}}, handle)
    assert read_dlc_fps(tmp_path / "videoDLC.h5") == pytest.approx(29.97)
    assert read_dlc_fps(tmp_path / "videoDLC_filtered.h5") == pytest.approx(29.97)
    assert read_dlc_fps(tmp_path / "other.h5") is None


def test_a_delivered_tree_gives_each_video_once_filtered_by_default(tmp_path):
    scorer = "DLC_Resnet50_miceNov27shuffle1_snapshot_best-25"
    for video in ("day1/cage2/trial1", "day1/trial2"):
        folder = tmp_path / video
        folder.mkdir(parents=True)
        stem = folder.name + scorer
        for name in (f"{stem}_el.h5", f"{stem}_el.csv", f"{stem}_el_filtered.h5", f"{stem}_el_filtered.csv",
                     f"{stem}_meta.pickle", f"{stem}_full.pickle", f"{stem}_assemblies.pickle",
                     f"{folder.name}_behavior.csv", "manifest.json"):
            (folder / name).write_text("")
    said = []
    found = find_keypoint_files([tmp_path], report=said.append)
    assert [p.relative_to(tmp_path).as_posix() for p in found] == [
        f"day1/cage2/trial1/trial1{scorer}_el_filtered.h5", f"day1/trial2/trial2{scorer}_el_filtered.h5"]
    assert len(said) == 2 and "using the filtered table" in said[0] and "--unfiltered" in said[0]
    unfiltered = find_keypoint_files([tmp_path], unfiltered=True)
    assert [p.name for p in unfiltered] == [f"trial1{scorer}_el.h5", f"trial2{scorer}_el.h5"]


def test_frame_rate_from_the_manifest_that_lists_the_table_then_the_meta_pickle(tmp_path):
    import json
    import pickle

    scorer = "DLC_Resnet50_miceNov27shuffle1_snapshot_best-25"
    table = tmp_path / f"trial{scorer}_el_filtered.h5"
    (tmp_path / "manifest.json").write_text(json.dumps({
        "source": {"fps": 25.0}, "outputs": {"keypoints_filtered_h5": {"file": table.name}}}))
    assert read_frame_rate(table) == pytest.approx(25.0)
    assert read_frame_rate(tmp_path / "another.h5") is None  # a manifest speaks only for the files it lists
    with open(tmp_path / f"trial{scorer}_meta.pickle", "wb") as handle:
        pickle.dump({"data": {"fps": 29.97}}, handle)
    (tmp_path / "manifest.json").unlink()
    assert read_frame_rate(table) == pytest.approx(29.97)  # a tracked, filtered table shares the video's meta
