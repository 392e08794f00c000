"""The ``dlcwatch behavior`` command: train, predict, names, import-bsoid.

:func:`register` adds the command to the main argparse parser. Each handler takes the parsed
arguments and returns an exit code: 0 success, 1 a failure while working (message on stderr, no
traceback), 2 bad usage.
"""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path

from dlcwatch.errors import BehaviorError

__all__ = ["register"]

EXIT_FAILURE = 1
EXIT_USAGE = 2


def register(subparsers: argparse._SubParsersAction) -> None:
    """Given the main parser's subparsers object, add the ``behavior`` command and its sub-commands."""
    behavior = subparsers.add_parser(
        "behavior",
        help="behavior labels from keypoints (B-SOiD-style): train, predict, name clusters",
        description="Label behaviors in DeepLabCut keypoints with B-SOiD-style features and an "
        "unsupervised classifier: train a model on keypoint files, name its clusters, label new files.",
    )
    actions = behavior.add_subparsers(dest="behavior_command", metavar="ACTION", required=True)
    _add_train(actions)
    _add_predict(actions)
    _add_names(actions)
    _add_import(actions)


def _add_train(actions: argparse._SubParsersAction) -> None:
    train = actions.add_parser(
        "train",
        help="train a behavior model on keypoint files",
        description="Compute features of DeepLabCut keypoint files, embed them with UMAP, cluster with HDBSCAN "
        "and train a random forest on the clusters. Writes MODEL, its JSON sidecar (MODEL with suffix .json), "
        "MODEL_embedding.png and MODEL_report.txt. Needs the umap-learn package.",
    )
    train.add_argument("keypoints", nargs="+", type=Path, metavar="KEYPOINT_FILES",
                       help="DeepLabCut .h5 or .csv keypoint files, or folders of them")
    train.add_argument("--out", required=True, type=Path, metavar="MODEL",
                       help="model file to write, e.g. mouse-behaviors.joblib")
    train.add_argument("--fps", type=_positive_float, metavar="F",
                       help="frame rate of the videos (default: from dlcwatch's manifest.json or DeepLabCut's "
                       "*_meta.pickle beside each file)")
    train.add_argument("--unfiltered", action="store_true",
                       help="in folders, read each video's unfiltered table (default: the filtered one where both exist)")
    train.add_argument("--bodyparts", nargs="+", metavar="NAME",
                       help="body parts to use, in this order (default: all of the first file's)")
    train.add_argument("--min-cluster-size", nargs=2, type=_positive_float, default=(0.5, 1.0),
                       metavar=("LOW", "HIGH"),
                       help="range of HDBSCAN's min_cluster_size to sweep, in %% of the bins (default 0.5 1.0)")
    train.add_argument("--min-clusters", type=_positive_int, default=2, metavar="N",
                       help="fewest clusters to accept (default 2)")
    train.add_argument("--max-clusters", type=_positive_int, default=30, metavar="N",
                       help="most clusters to accept; the sweep keeps the most clusters up to this (default 30)")
    train.add_argument("--seed", type=int, default=42, help="random seed for UMAP and the forest (default 42)")
    train.set_defaults(func=_train)


def _add_predict(actions: argparse._SubParsersAction) -> None:
    predict = actions.add_parser(
        "predict",
        help="label every frame of a keypoint file",
        description="Write KEYPOINTS_STEM_behavior.csv (frame, time, label_id, label_name, probability) and "
        "KEYPOINTS_STEM_ethogram.png.",
    )
    predict.add_argument("keypoints", type=Path, metavar="KEYPOINTS", help="DeepLabCut .h5 or .csv keypoint file")
    predict.add_argument("--model", required=True, type=Path, metavar="MODEL", help="behavior model file")
    predict.add_argument("--fps", type=_positive_float, metavar="F",
                         help="frame rate of the video (default: dlcwatch's manifest.json or DeepLabCut's "
                         "*_meta.pickle beside it, else the model's)")
    predict.add_argument("--out", type=Path, metavar="DIR", help="output folder (default: the keypoint file's)")
    predict.set_defaults(func=_predict)


def _add_names(actions: argparse._SubParsersAction) -> None:
    names = actions.add_parser(
        "names",
        help="name a model's clusters, or list them",
        description="Give clusters names used in the CSV and the ethogram, e.g. `names MODEL 0=rest 1=walk`. "
        "Without names, list the clusters.",
    )
    names.add_argument("model", type=Path, metavar="MODEL", help="behavior model file")
    names.add_argument("names", nargs="*", metavar="ID=NAME", help="cluster id and its name, e.g. 0=rest")
    names.set_defaults(func=_names)


def _add_import(actions: argparse._SubParsersAction) -> None:
    importer = actions.add_parser(
        "import-bsoid",
        help="import a model saved by the B-SOiD app",
        description="Convert a B-SOiD app model (PREFIX_randomforest.sav with PREFIX_data.sav) into a dlcwatch "
        "behavior model. Best effort: the files are pickles from an old scikit-learn.",
    )
    importer.add_argument("randomforest", type=Path, metavar="RANDOMFOREST_SAV",
                          help="the B-SOiD PREFIX_randomforest.sav file")
    importer.add_argument("--data", type=Path, metavar="DATA_SAV",
                          help="the B-SOiD PREFIX_data.sav file (default: found beside RANDOMFOREST_SAV)")
    importer.add_argument("--out", required=True, type=Path, metavar="MODEL", help="model file to write")
    importer.add_argument("--fps", type=_positive_float, metavar="F",
                          help="frame rate the model was trained at (default: from the data file)")
    importer.add_argument("--bodyparts", nargs="+", metavar="NAME",
                          help="body parts in B-SOiD's order (default: from the data file)")
    importer.set_defaults(func=_import_bsoid)


def _positive_float(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number: {text!r}") from None
    if not value > 0 or value == float("inf"):
        raise argparse.ArgumentTypeError(f"must be a positive number: {text!r}")
    return value


def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a whole number: {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1: {text!r}")
    return value


def _say(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def _fail(error: Exception) -> int:
    _say(f"dlcwatch behavior: error: {error}")
    return EXIT_FAILURE


class _StderrHandler(logging.Handler):
    """Write log records to whatever ``sys.stderr`` is at the time (it may be replaced, e.g. in tests)."""

    def emit(self, record: logging.LogRecord) -> None:
        try:
            print(self.format(record), file=sys.stderr, flush=True)
        except Exception:  # logging must never break the command
            self.handleError(record)


def _show_warnings() -> None:
    """Send the behavior modules' log messages (e.g. a never-confident body part) to stderr, unless
    the program has set up logging itself."""
    logger = logging.getLogger("dlcwatch.behavior")
    if not logger.handlers and not logging.getLogger().handlers:
        handler = _StderrHandler()
        handler.setFormatter(logging.Formatter("dlcwatch behavior: %(levelname)s: %(message)s"))
        logger.addHandler(handler)
        logger.setLevel(logging.INFO)


def _train(args: argparse.Namespace) -> int:
    from rich.console import Console

    from dlcwatch.behavior.train import TrainingConfig, train_and_save

    _show_warnings()
    low, high = args.min_cluster_size
    console = Console(stderr=True, highlight=False)
    try:
        config = TrainingConfig(
            min_cluster_size_percent=(low, high),
            min_clusters=args.min_clusters,
            max_clusters=args.max_clusters,
            seed=args.seed,
        )
        # Each stage is printed as it starts; on a terminal a spinner shows the one in progress.
        with console.status("train: starting") as status:
            def progress(message: str) -> None:
                console.print(f"train: {message}")
                status.update(f"train: {message.strip()} …")

            written = train_and_save(args.keypoints, args.out, args.fps, config=config, bodyparts=args.bodyparts,
                                     unfiltered=args.unfiltered, progress=progress)
    except (BehaviorError, OSError) as error:
        return _fail(error)
    for kind, path in written.items():
        print(f"{kind}: {path}")
    return 0


def _predict(args: argparse.Namespace) -> int:
    from dlcwatch.behavior.keypoints import read_frame_rate
    from dlcwatch.behavior.model_io import load_model
    from dlcwatch.behavior.predict import label_keypoints_file

    _show_warnings()
    try:
        if not args.keypoints.is_file():
            raise BehaviorError(f"keypoint file not found: {args.keypoints}")
        fps = args.fps or read_frame_rate(args.keypoints)
        if fps is None:
            fps = load_model(args.model).fps
            _say(f"predict: no --fps, no manifest.json and no DeepLabCut metadata; using the model's {fps:g} fps")
        out_dir = args.out if args.out is not None else args.keypoints.parent
        written = label_keypoints_file(args.keypoints, args.model, fps, out_dir, args.keypoints.stem)
    except (BehaviorError, OSError) as error:
        return _fail(error)
    for kind, path in written.items():
        print(f"{kind}: {path}")
    return 0


def _names(args: argparse.Namespace) -> int:
    from dlcwatch.behavior.model_io import load_model, rename_labels

    names: dict[int, str] = {}
    for item in args.names:
        label, separator, name = item.partition("=")
        if not separator or not label.strip().lstrip("-").isdigit():
            _say(f"dlcwatch behavior names: error: expected ID=NAME (e.g. 0=rest), got {item!r}")
            return EXIT_USAGE
        names[int(label)] = name
    try:
        model = rename_labels(args.model, names) if names else load_model(args.model)
    except (BehaviorError, OSError) as error:
        return _fail(error)
    sizes = model.metadata.get("cluster_sizes", {})
    for label in model.label_ids:
        size = sizes.get(str(label))
        print(f"{label}\t{model.label_name(label)}" + (f"\t{size} bins" if size is not None else ""))
    return 0


def _import_bsoid(args: argparse.Namespace) -> int:
    from dlcwatch.behavior.model_io import import_bsoid_model, save_model

    try:
        model = import_bsoid_model(args.randomforest, args.data, fps=args.fps, bodyparts=args.bodyparts)
        sidecar = save_model(model, args.out)
    except (BehaviorError, OSError) as error:
        return _fail(error)
    print(f"model: {args.out}")
    print(f"sidecar: {sidecar}")
    print(f"body parts: {', '.join(model.bodyparts)}; {model.fps:g} fps; clusters {model.label_ids}")
    return 0
