"""Train on synthetic behaviors, label held-out videos, and check the labels against the truth.

Training uses B-SOiD's default clustering settings (min_cluster_size swept over 0.5–1 % of the
bins, at most 30 clusters) on three 80 s videos at 30 fps. On the two held-out 60 s videos the
labels agree with the true behaviors with an adjusted Rand index of 0.924 and 0.953 (measured with
scikit-learn 1.9.1, umap-learn 0.5.12, numpy 2.4; 0.92–0.95 over five held-out seeds); the test
requires 0.8. More clusters than behaviors are
allowed (B-SOiD splits behaviors too); the Rand index only penalises the splitting a little.
"""

from __future__ import annotations

import json
import logging

import joblib
import numpy as np
import pandas as pd
import pytest
from sklearn.ensemble import RandomForestClassifier
from sklearn.metrics import adjusted_rand_score

from dlcwatch.errors import BehaviorError
from dlcwatch.behavior.features import bin_features, clean_positions, frame_features, frames_per_bin, training_bins
from dlcwatch.behavior.keypoints import AnimalKeypoints, read_keypoints
from dlcwatch.behavior.model_io import import_bsoid_model, load_model, rename_labels, save_model, sidecar_path
from dlcwatch.behavior.predict import BodypartMismatchError, label_animal, label_keypoints_file
from dlcwatch.behavior.train import TrainingConfig, train_and_save

try:
    from tests.behavior_synth import BODYPARTS, make_trajectory, to_dlc_table, write_dlc, write_trajectory
except ImportError:  # tests/ is not a package: pytest puts it on sys.path itself
    from behavior_synth import BODYPARTS, make_trajectory, to_dlc_table, write_dlc, write_trajectory

FPS = 30.0
MIN_ADJUSTED_RAND = 0.8


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """Train once for the module: three 80 s videos (two .h5, one .csv) in a folder."""
    folder = tmp_path_factory.mktemp("behavior")
    videos = folder / "videos"
    videos.mkdir()
    for seed in range(3):
        suffix = ".csv" if seed == 2 else ".h5"
        write_trajectory(make_trajectory(80, FPS, seed=seed), videos / f"train{seed}DLC{suffix}")
    messages: list[str] = []
    written = train_and_save([videos], folder / "model" / "mouse.joblib", FPS, progress=messages.append)
    return {"folder": folder, "written": written, "messages": messages}


@pytest.mark.parametrize("seed", [100, 101])
def test_labels_of_held_out_videos_agree_with_the_truth(trained, tmp_path, seed):
    truth = make_trajectory(60, FPS, seed=seed)
    path = write_trajectory(truth, tmp_path / f"held_out{seed}.h5")
    written = label_keypoints_file(path, trained["written"]["model"], FPS, tmp_path / "out", f"held_out{seed}")
    labels = pd.read_csv(written["behavior_csv"])
    assert list(labels.columns) == ["frame", "time", "label_id", "label_name", "probability"]
    assert len(labels) == len(truth.truth)
    score = adjusted_rand_score(truth.truth, labels["label_id"])
    assert score >= MIN_ADJUSTED_RAND, f"adjusted Rand index {score:.3f}"
    assert written["ethogram_png"].read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_training_writes_model_sidecar_plot_and_report(trained):
    written = trained["written"]
    for path in written.values():
        assert path.is_file() and path.stat().st_size > 0
    sidecar = json.loads(written["sidecar"].read_text())
    assert written["sidecar"] == sidecar_path(written["model"]) == written["model"].with_suffix(".json")
    assert sidecar["bodyparts"] == list(BODYPARTS)
    assert sidecar["fps"] == FPS
    assert sidecar["feature_version"] == "bsoid-1"
    assert set(sidecar["library_versions"]) >= {"numpy", "scikit-learn", "umap-learn", "pandas", "joblib"}
    assert sum(sidecar["cluster_sizes"].values()) > 0.9 * sidecar["bins"]
    assert 0.9 < sidecar["cross_validated_accuracy"]["mean"] <= 1.0
    assert len(sidecar["training_files"]) == 3
    assert written["embedding_png"].read_bytes()[:4] == b"\x89PNG"
    report = written["report"].read_text()
    assert "cross-validated accuracy" in report and "<- chosen" in report
    # Progress lines name the stages.
    text = "\n".join(trained["messages"])
    for stage in ("features", "UMAP", "HDBSCAN", "random forest"):
        assert stage in text
    assert not list(written["model"].parent.glob("*.tmp"))  # atomic writes leave no temporary file


def test_frame_shift_prediction_gives_one_label_per_frame_at_fractional_fps(trained, tmp_path):
    """29.97 fps: 3-frame bins and 3 frame shifts (B-SOiD would truncate to 29 and shift twice)."""
    trajectory = make_trajectory(20, 29.97, seed=11)
    path = write_trajectory(trajectory, tmp_path / "ntsc.csv")
    written = label_keypoints_file(path, trained["written"]["model"], 29.97, tmp_path, "ntsc")
    labels = pd.read_csv(written["behavior_csv"])
    assert len(labels) == len(trajectory.truth)
    assert (labels["frame"] == np.arange(len(trajectory.truth))).all()
    assert labels["time"].iloc[-1] == pytest.approx((len(trajectory.truth) - 1) / 29.97, abs=1e-6)
    assert (labels["label_id"] >= 0).all() and labels["probability"].between(0, 1).all()
    assert adjusted_rand_score(trajectory.truth, labels["label_id"]) >= MIN_ADJUSTED_RAND


def test_frame_shift_labels_equal_predicting_each_shift_and_interleaving(trained):
    """B-SOiD predicts each shifted binning separately and interleaves; one call must agree."""
    trajectory = make_trajectory(12, FPS, seed=22)
    model = load_model(trained["written"]["model"])
    animal = AnimalKeypoints(None, BODYPARTS, trajectory.xy, trajectory.likelihood)
    labels = label_animal(animal, model, FPS).label_ids
    rows = frame_features(clean_positions(trajectory.xy, trajectory.likelihood).xy, FPS)
    width, n_frames = frames_per_bin(FPS), len(trajectory.truth)
    per_shift = [model.classifier.predict(bin_features(rows, 28, width, offset=shift)) for shift in range(width)]
    interleaved = np.empty(sum(len(p) for p in per_shift), dtype=np.int64)
    for shift, predicted in enumerate(per_shift):
        interleaved[shift::width] = predicted
    # Frame f takes the bin starting at f − 1 (bins span 3 steps), clipped to the first and last bins.
    expected = interleaved[np.clip(np.arange(n_frames) - 1, 0, len(interleaved) - 1)]
    assert len(labels) == n_frames
    np.testing.assert_array_equal(labels, expected)


def test_labels_do_not_depend_on_body_part_order_or_extra_body_parts(trained, tmp_path):
    trajectory = make_trajectory(15, FPS, seed=12)
    model = load_model(trained["written"]["model"])
    [animal] = read_keypoints(write_trajectory(trajectory, tmp_path / "plain.h5"))
    order = [3, 0, 7, 1, 6, 2, 5, 4]
    shuffled = to_dlc_table(
        np.concatenate([trajectory.xy[:, order], trajectory.xy[:, :1] + 5], axis=1),
        np.concatenate([trajectory.likelihood[:, order], trajectory.likelihood[:, :1]], axis=1),
        bodyparts=tuple(BODYPARTS[i] for i in order) + ("whisker",),
    )
    [reordered] = read_keypoints(write_dlc(shuffled, tmp_path / "shuffled.h5"))
    np.testing.assert_array_equal(label_animal(animal, model, FPS).label_ids, label_animal(reordered, model, FPS).label_ids)


def test_missing_body_parts_raise_a_mismatch_naming_both_lists(trained, tmp_path):
    trajectory = make_trajectory(5, FPS, seed=13)
    other = ("snout",) + BODYPARTS[1:]
    path = write_dlc(to_dlc_table(trajectory.xy, trajectory.likelihood, bodyparts=other), tmp_path / "other.h5")
    with pytest.raises(BodypartMismatchError) as caught:
        label_keypoints_file(path, trained["written"]["model"], FPS, tmp_path, "other")
    message = str(caught.value)
    assert str(list(other)) in message and str(list(BODYPARTS)) in message
    assert isinstance(caught.value, ValueError)
    assert not list(tmp_path.glob("other_*"))  # nothing written


def test_multi_animal_table_labels_each_individual(trained, tmp_path):
    first, second = make_trajectory(20, FPS, seed=14), make_trajectory(20, FPS, seed=15)
    table = to_dlc_table(np.stack([first.xy, second.xy]), np.stack([first.likelihood, second.likelihood]),
                         individuals=("mouse1", "mouse2"))
    # maDLC's "single" pseudo-individual carries unique body parts (here, an arena corner).
    corner = to_dlc_table(np.zeros((1, len(first.truth), 1, 2)), np.ones((1, len(first.truth), 1)),
                          bodyparts=("corner",), individuals=("single",))
    path = write_dlc(pd.concat([table, corner], axis=1), tmp_path / "pair.h5")
    written = label_keypoints_file(path, trained["written"]["model"], FPS, tmp_path, "pair")
    labels = pd.read_csv(written["behavior_csv"])
    assert list(labels.columns) == ["individual", "frame", "time", "label_id", "label_name", "probability"]
    assert labels.groupby("individual").size().to_dict() == {"mouse1": len(first.truth), "mouse2": len(second.truth)}
    for name, trajectory in (("mouse1", first), ("mouse2", second)):
        ids = labels.loc[labels["individual"] == name, "label_id"]
        assert adjusted_rand_score(trajectory.truth, ids) >= MIN_ADJUSTED_RAND


def test_short_video_and_never_confident_body_part_give_unlabeled_rows(trained, tmp_path, caplog):
    model_path = trained["written"]["model"]
    short = make_trajectory(1, FPS, seed=16)
    path = write_dlc(to_dlc_table(short.xy[:3], short.likelihood[:3]), tmp_path / "short.h5")
    labels = pd.read_csv(label_keypoints_file(path, model_path, FPS, tmp_path, "short")["behavior_csv"])
    assert len(labels) == 3
    assert (labels["label_id"] == -1).all() and (labels["label_name"] == "unlabeled").all()
    assert labels["probability"].isna().all()

    empty = write_dlc(to_dlc_table(short.xy[:0], short.likelihood[:0]), tmp_path / "empty.csv")
    labels = pd.read_csv(label_keypoints_file(empty, model_path, FPS, tmp_path, "empty")["behavior_csv"])
    assert list(labels.columns) == ["frame", "time", "label_id", "label_name", "probability"] and labels.empty

    blind = make_trajectory(5, FPS, seed=17)
    likelihood = blind.likelihood.copy()
    likelihood[:, BODYPARTS.index("tail_tip")] = np.nan
    path = write_dlc(to_dlc_table(blind.xy, likelihood), tmp_path / "blind.h5")
    with caplog.at_level(logging.WARNING, logger="dlcwatch.behavior"):
        labels = pd.read_csv(label_keypoints_file(path, model_path, FPS, tmp_path, "blind")["behavior_csv"])
    assert len(labels) == len(blind.truth) and (labels["label_id"] == -1).all()
    assert "tail_tip" in caplog.text and "never confident" in caplog.text


def test_bad_frame_rate_and_missing_model_are_clear_errors(trained, tmp_path):
    path = write_trajectory(make_trajectory(2, FPS, seed=18), tmp_path / "v.h5")
    with pytest.raises(BehaviorError, match="frame rate"):
        label_keypoints_file(path, trained["written"]["model"], 0, tmp_path, "v")
    with pytest.raises(BehaviorError, match="not found"):
        label_keypoints_file(path, tmp_path / "none.joblib", FPS, tmp_path, "v")
    (tmp_path / "junk.joblib").write_bytes(b"junk")
    with pytest.raises(BehaviorError, match="cannot load"):
        label_keypoints_file(path, tmp_path / "junk.joblib", FPS, tmp_path, "v")


def test_cluster_names_are_stored_and_used(trained, tmp_path):
    model_path = tmp_path / "named.joblib"
    save_model(load_model(trained["written"]["model"]), model_path)
    first, second = load_model(model_path).label_ids[:2]
    rename_labels(model_path, {first: "rest", second: "walk"})
    assert load_model(model_path).label_name(first) == "rest"
    assert json.loads(sidecar_path(model_path).read_text())["labels"][str(second)] == "walk"
    with pytest.raises(BehaviorError, match="no cluster"):
        rename_labels(model_path, {999: "fly"})
    path = write_trajectory(make_trajectory(10, FPS, seed=19), tmp_path / "v.h5")
    labels = pd.read_csv(label_keypoints_file(path, model_path, FPS, tmp_path, "v")["behavior_csv"])
    assert set(labels.loc[labels["label_id"] == first, "label_name"]) <= {"rest"}


def _bsoid_app_files(folder, csv_input: bool):
    """Write <prefix>_data.sav and <prefix>_randomforest.sav laid out as the B-SOiD app saves them."""
    trajectory = make_trajectory(30, FPS, seed=20)
    features = training_bins(trajectory.xy, trajectory.likelihood, FPS)
    truth = trajectory.truth[1 : 1 + 3 * len(features) : 3][: len(features)]
    clf = RandomForestClassifier(n_estimators=10, random_state=42).fit(features, truth)
    table = to_dlc_table(trajectory.xy, trajectory.likelihood)
    if csv_input:
        # B-SOiD reads csv with one header row: body parts and coords become the first data rows.
        raw = pd.DataFrame([["bodyparts", *table.columns.get_level_values(1)],
                            ["coords", *table.columns.get_level_values(2)]],
                           columns=["scorer", *[f"DLC.{i}" for i in range(table.shape[1])]])
    else:
        raw = table
    pose_chosen = list(range(table.shape[1]))
    joblib.dump([str(folder), ["/videos"], 30, pose_chosen, ["a.csv"], [raw], np.zeros(1), [0.0]],
                folder / "mice_data.sav")
    joblib.dump([features[:5], truth[:5], clf, clf, np.array([0.9, 0.95]), clf.predict(features)],
                folder / "mice_randomforest.sav")
    return trajectory, clf


@pytest.mark.parametrize("csv_input", [False, True])
def test_import_of_a_bsoid_app_model(tmp_path, csv_input):
    trajectory, clf = _bsoid_app_files(tmp_path, csv_input)
    model = import_bsoid_model(tmp_path / "mice_randomforest.sav")
    assert model.bodyparts == BODYPARTS and model.fps == 30
    assert model.metadata["cross_validated_accuracy"]["mean"] == pytest.approx(0.925)
    save_model(model, tmp_path / "imported.joblib")
    path = write_trajectory(trajectory, tmp_path / "v.h5")
    labels = pd.read_csv(label_keypoints_file(path, tmp_path / "imported.joblib", FPS, tmp_path, "v")["behavior_csv"])
    assert set(labels["label_id"]) <= set(clf.classes_)
    assert adjusted_rand_score(trajectory.truth, labels["label_id"]) >= MIN_ADJUSTED_RAND


def test_import_reads_trees_pickled_by_scikit_learn_before_1_3(tmp_path):
    """B-SOiD pins scikit-learn 0.23, whose tree nodes lack ``missing_go_to_left``; newer versions
    refuse such pickles. The file here is written with that old node layout and attribute set."""
    import copyreg

    from sklearn.tree._tree import Tree

    _, clf = _bsoid_app_files(tmp_path, csv_input=False)
    expected = clf.predict_proba(np.random.default_rng(0).normal(size=(50, 64)) * 10)

    def old_layout(tree):
        cls, args, state = tree.__reduce__()
        nodes = state["nodes"]
        names = [name for name in nodes.dtype.names if name != "missing_go_to_left"]
        old = np.zeros(nodes.shape, dtype=[(name, nodes.dtype[name]) for name in names])
        for name in names:
            old[name] = nodes[name]
        return cls, args, {**state, "nodes": old}

    for estimator in [clf, *clf.estimators_]:
        estimator.__dict__.pop("monotonic_cst", None)
        estimator.__dict__["n_features_"] = estimator.__dict__.pop("n_features_in_")
    copyreg.dispatch_table[Tree] = old_layout
    try:
        joblib.dump([None, None, clf, clf, [0.9], [0, 1]], tmp_path / "mice_randomforest.sav")
    finally:
        del copyreg.dispatch_table[Tree]
    with pytest.raises(ValueError, match="incompatible dtype"):
        joblib.load(tmp_path / "mice_randomforest.sav")

    model = import_bsoid_model(tmp_path / "mice_randomforest.sav")
    actual = model.classifier.predict_proba(np.random.default_rng(0).normal(size=(50, 64)) * 10)
    np.testing.assert_array_equal(actual, expected)


def test_unreadable_bsoid_files_give_a_clear_error(tmp_path):
    (tmp_path / "x_randomforest.sav").write_bytes(b"\x80\x04garbage")
    with pytest.raises(BehaviorError, match="cannot read the B-SOiD random forest"):
        import_bsoid_model(tmp_path / "x_randomforest.sav")
    joblib.dump({"not": "a list"}, tmp_path / "y_randomforest.sav")
    with pytest.raises(BehaviorError, match="no fitted classifier"):
        import_bsoid_model(tmp_path / "y_randomforest.sav")
    _bsoid_app_files(tmp_path, csv_input=False)
    (tmp_path / "mice_data.sav").unlink()
    with pytest.raises(BehaviorError, match="--fps and --bodyparts"):
        import_bsoid_model(tmp_path / "mice_randomforest.sav")
    with pytest.raises(BehaviorError, match="takes 64 features"):
        import_bsoid_model(tmp_path / "mice_randomforest.sav", fps=30, bodyparts=["a", "b", "c"])


def test_training_errors_are_clear(tmp_path):
    path = write_trajectory(make_trajectory(3, FPS, seed=21), tmp_path / "tiny.h5")
    with pytest.raises(BehaviorError, match="too little data"):
        train_and_save([path], tmp_path / "m.joblib", FPS)
    with pytest.raises(BehaviorError, match="--fps"):
        train_and_save([path], tmp_path / "m.joblib", None)
    with pytest.raises(BehaviorError, match="cluster bounds"):
        train_and_save([path], tmp_path / "m.joblib", FPS, config=TrainingConfig(min_clusters=5, max_clusters=2))
