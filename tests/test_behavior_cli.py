"""The ``dlcwatch behavior`` command, driven through a real argparse parser as the main CLI builds it."""

from __future__ import annotations

import argparse
import json

import joblib
import pandas as pd
import pytest
from sklearn.metrics import adjusted_rand_score

from dlcwatch.behavior.cli import register

try:
    from tests.behavior_synth import BODYPARTS, make_trajectory, write_trajectory
except ImportError:  # tests/ is not a package: pytest puts it on sys.path itself
    from behavior_synth import BODYPARTS, make_trajectory, write_trajectory


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="dlcwatch")
    register(parser.add_subparsers(dest="command", metavar="COMMAND"))
    return parser


def run(*argv: str) -> int:
    args = build_parser().parse_args([str(a) for a in argv])
    return args.func(args)


@pytest.fixture(scope="module")
def model(tmp_path_factory):
    """A model trained through the command line on two 50 s videos at 30 fps."""
    folder = tmp_path_factory.mktemp("cli")
    files = [write_trajectory(make_trajectory(50, 30.0, seed=seed), folder / f"mouse{seed}.h5") for seed in (30, 31)]
    assert run("behavior", "train", *files, "--out", folder / "mouse.joblib", "--fps", "30",
               "--min-cluster-size", "2", "5") == 0
    return folder / "mouse.joblib"


def test_train_prints_progress_and_writes_everything(model, capsys):
    # The module fixture already ran; train again to capture its output here.
    folder = model.parent
    code = run("behavior", "train", folder / "mouse30.h5", folder / "mouse31.h5", "--out", folder / "again.joblib",
               "--fps", "30", "--min-cluster-size", "2", "5")
    captured = capsys.readouterr()
    assert code == 0
    for stage in ("reading 2 keypoint file(s)", "features:", "UMAP:", "HDBSCAN:", "random forest:"):
        assert stage in captured.err
    for name in ("again.joblib", "again.json", "again_embedding.png", "again_report.txt"):
        assert (folder / name).is_file() and name in captured.out
    # Same data, same seed: the same clusters.
    first = json.loads((folder / "mouse.json").read_text())["cluster_sizes"]
    assert json.loads((folder / "again.json").read_text())["cluster_sizes"] == first


def test_predict_writes_csv_and_ethogram_next_to_the_keypoints(model, tmp_path, capsys):
    truth = make_trajectory(30, 30.0, seed=32)
    path = write_trajectory(truth, tmp_path / "videoDLC_resnet50.h5")
    assert run("behavior", "predict", path, "--model", model, "--fps", "30") == 0
    csv = tmp_path / "videoDLC_resnet50_behavior.csv"
    assert csv.is_file() and (tmp_path / "videoDLC_resnet50_ethogram.png").is_file()
    labels = pd.read_csv(csv)
    assert len(labels) == len(truth.truth)
    assert adjusted_rand_score(truth.truth, labels["label_id"]) >= 0.8
    assert str(csv) in capsys.readouterr().out


def test_predict_without_fps_uses_metadata_then_the_model(model, tmp_path, capsys):
    import pickle

    path = write_trajectory(make_trajectory(5, 25.0, seed=33), tmp_path / "clip.h5")
    assert run("behavior", "predict", path, "--model", model, "--out", tmp_path / "a") == 0
    assert "using the model's 30 fps" in capsys.readouterr().err
    with open(tmp_path / "clip_meta.pickle", "wb") as handle:
        pickle.dump({"data": {"fps": 25.0}}, handle)
    assert run("behavior", "predict", path, "--model", model, "--out", tmp_path / "b") == 0
    labels = pd.read_csv(tmp_path / "b" / "clip_behavior.csv")
    assert labels["time"].iloc[25] == pytest.approx(1.0)


def test_names_renames_and_lists_clusters(model, tmp_path, capsys):
    named = tmp_path / "named.joblib"
    named.write_bytes(model.read_bytes())
    assert run("behavior", "names", named, "0=rest", "1=walk") == 0
    out = capsys.readouterr().out
    assert "0\trest" in out and "1\twalk" in out
    assert json.loads(named.with_suffix(".json").read_text())["labels"]["0"] == "rest"
    assert run("behavior", "names", named) == 0
    assert "0\trest" in capsys.readouterr().out


def test_import_bsoid_then_predict(model, tmp_path, capsys):
    # A B-SOiD app layout built from a classifier trained on the same features.
    forest = joblib.load(model)["classifier"]
    trajectory = make_trajectory(10, 30.0, seed=34)
    joblib.dump([None, None, forest, forest, [0.9], [0, 1, 1]], tmp_path / "lab_randomforest.sav")
    assert run("behavior", "import-bsoid", tmp_path / "lab_randomforest.sav", "--out", tmp_path / "lab.joblib",
               "--fps", "30", "--bodyparts", *BODYPARTS) == 0
    assert "body parts: nose" in capsys.readouterr().out
    path = write_trajectory(trajectory, tmp_path / "v.h5")
    assert run("behavior", "predict", path, "--model", tmp_path / "lab.joblib", "--fps", "30") == 0


@pytest.mark.parametrize(
    "argv, message",
    [
        (["behavior", "predict", "{tmp}/missing.h5", "--model", "{model}"], "keypoint file not found"),
        (["behavior", "predict", "{tmp}/notes.csv", "--model", "{model}", "--fps", "30"], "cannot read it"),
        (["behavior", "predict", "{tmp}/v.h5", "--model", "{tmp}/missing.joblib", "--fps", "30"], "model not found"),
        (["behavior", "train", "{tmp}/v.h5", "--out", "{tmp}/m.joblib", "--fps", "30"], "too little data"),
        (["behavior", "train", "{tmp}/empty", "--out", "{tmp}/m.joblib"], "no .h5 or .csv keypoint files"),
        (["behavior", "names", "{model}", "42=fly"], "no cluster [42]"),
        (["behavior", "import-bsoid", "{tmp}/notes.csv", "--out", "{tmp}/m.joblib"], "cannot read the B-SOiD"),
    ],
)
def test_user_errors_print_one_message_and_exit_1(model, tmp_path, capsys, argv, message):
    (tmp_path / "notes.csv").write_text("a,b\n1,2\n")
    (tmp_path / "empty").mkdir()
    write_trajectory(make_trajectory(2, 30.0, seed=35), tmp_path / "v.h5")
    code = run(*[a.format(tmp=tmp_path, model=model) for a in argv])
    err = capsys.readouterr().err
    assert code == 1
    assert message in err and "Traceback" not in err
    assert err.strip().splitlines()[-1].startswith("dlcwatch behavior: error:")


def test_bad_usage_exits_2(model, capsys):
    assert run("behavior", "names", model, "rest") == 2
    assert "expected ID=NAME" in capsys.readouterr().err
    with pytest.raises(SystemExit) as exit_info:
        run("behavior", "predict", "x.h5", "--model", model, "--fps", "-3")
    assert exit_info.value.code == 2
    with pytest.raises(SystemExit):
        run("behavior")  # an action is required


def test_every_command_and_option_has_help():
    def walk(parser: argparse.ArgumentParser, path: str):
        for action in parser._actions:
            if isinstance(action, argparse._SubParsersAction):
                helps = {choice.dest: choice.help for choice in action._choices_actions}
                for name, sub in action.choices.items():
                    assert helps.get(name), f"{path} {name}: no help"
                    yield from walk(sub, f"{path} {name}")
            else:
                yield path, action

    for path, action in walk(build_parser(), "dlcwatch"):
        assert action.help, f"{path} {action.option_strings or action.dest}: no help"
