"""Build a tiny, real DeepLabCut *TensorFlow-engine* project offline on the CPU (tests and trying things out).

What a lab's DeepLabCut 2.x model is: a project whose shuffle was trained with the TensorFlow engine
(`engine: tensorflow` in its training-dataset metadata). The same synthetic video and labels as
tinydlc.py → create_training_dataset(engine=TF) → MobileNetV2-0.35 trained from random weights.
Run it in an environment with `deeplabcut[tf]==3.0.2` (scripts/install-dlc.sh --tf).

Three things DeepLabCut 3.0.2 does not do by itself here, and what this module does instead:
- ImageNet weights: create_training_dataset asks `check_for_weights`, which downloads them with
  urllib when they are not in site-packages. We hand it a checkpoint of randomly initialised
  backbone weights, written with DeepLabCut's own graph builder, so nothing is fetched.
- Small frames: the TF data loader refuses images that its scale jitter shrinks below
  `min_input_size` (64 px) — and refuses in its loader thread, so training waits forever. 128-px
  frames need `min_input_size: 32`; a few batches are drawn in the main thread first, so a loader
  error is raised here instead of hanging.
- Slow graph builds: tf-keras runs AutoGraph on each legacy layer call while the graph is built
  (most of a minute on 2 cores). The outputs are the same without it, so graph building runs with
  AutoGraph off (a private TensorFlow switch; if it moves, building is only slower).

MobileNetV2 trains from random weights as it is; DeepLabCut builds ResNets with BatchNorm in
inference mode, which diverges at the first step from random weights, so only MobileNets are offered.

Run as `python -m dlcwatch.demo.tinydlc_tf FOLDER`; prints the path of the project's config.yaml.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import sys
import traceback
from pathlib import Path

from dlcwatch.demo.tinydlc import labelled_project

NET_TYPES = ("mobilenet_v2_0.35", "mobilenet_v2_0.5", "mobilenet_v2_0.75", "mobilenet_v2_1.0")
# train/pose_cfg.yaml settings on top of DeepLabCut's. min_input_size: 128-px frames at the loader's
# smallest scale (0.5) are 64 px, DeepLabCut's default minimum. The rest suits a toy learnt from
# scratch in a few hundred steps: frames at full size, no rotation, occlusion or blur augmentation,
# and a higher learning rate than the 0.005 meant for fine-tuning ImageNet weights (measured: 300
# steps, dots found to within about 10 px, against 15-18 px with DeepLabCut's defaults).
TRAINING = {"min_input_size": 32, "global_scale": 1.0, "rotation": 0, "covering": False,
            "elastic_transform": False, "motion_blur": False, "multi_step": [[0.02, 1_000_000]]}


def build_tiny_tf_project(folder: str | Path, *, iterations: int = 300, net_type: str = NET_TYPES[0],
                          frames: int = 150, size: int = 128, labeled: int = 20) -> Path:
    """Given an empty or missing folder, build and train a tiny TensorFlow-engine project there;
    return its config.yaml. Raise ValueError for a net type other than a MobileNetV2."""
    if net_type not in NET_TYPES:
        raise ValueError(f"net type {net_type!r}: choose one of {', '.join(NET_TYPES)}")
    quiet_tensorflow()
    import deeplabcut
    from deeplabcut.utils import auxiliaryfunctions

    config = labelled_project(folder, "tinytf", {"engine": "tensorflow", "default_net_type": net_type,
                                                 "default_augmenter": "default", "batch_size": 8},
                              frames=frames, size=size, labeled=labeled)
    random_weights = Path(folder).absolute() / "random-weights" / f"{net_type}-random.ckpt"
    with offline_weights(random_weights):
        deeplabcut.create_training_dataset(str(config), num_shuffles=1, Shuffles=[1], userfeedback=False,
                                           net_type=net_type, augmenter_type="default",
                                           engine=deeplabcut.Engine.TF)
    train_pose_cfg = Path(deeplabcut.return_train_network_path(str(config), shuffle=1, trainingsetindex=0)[0])
    pose_cfg = auxiliaryfunctions.read_plainconfig(str(train_pose_cfg))
    pose_cfg.update(TRAINING)
    auxiliaryfunctions.write_plainconfig(str(train_pose_cfg), pose_cfg)
    write_random_backbone(train_pose_cfg, random_weights)
    check_data_loader(train_pose_cfg)
    with autograph_off():
        deeplabcut.train_network(str(config), shuffle=1, trainingsetindex=0, max_iters=iterations,
                                 display_iters=max(1, iterations // 5), save_iters=iterations,
                                 max_snapshots_to_keep=1)
    return config


def quiet_tensorflow() -> None:
    """Set what TensorFlow and DeepLabCut read at import: CPU only, no cuDNN/cuBLAS chatter, no debug mode."""
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    os.environ.setdefault("CUDA_VISIBLE_DEVICES", "")
    os.environ.setdefault("DLClight", "True")
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    # deeplabcut/__init__ reads $DEBUG; any truthy value changes create_new_project's behaviour.
    os.environ.pop("DEBUG", None)


@contextlib.contextmanager
def offline_weights(checkpoint: Path):
    """While inside, DeepLabCut's `check_for_weights` names `checkpoint` instead of downloading
    ImageNet weights; the training set's pose_cfg.yaml files then start from it (`init_weights`).

    The file's stem must not contain "snapshot": DeepLabCut's trainer would then restore every
    variable from it, not only the backbone's."""
    from deeplabcut.utils import auxfun_models

    checkpoint.parent.mkdir(parents=True, exist_ok=True)
    downloading = auxfun_models.check_for_weights
    auxfun_models.check_for_weights = lambda net_type, parent_path: str(checkpoint)
    try:
        yield
    finally:
        auxfun_models.check_for_weights = downloading


def write_random_backbone(train_pose_cfg: Path, checkpoint: Path) -> None:
    """Given a shuffle's train/pose_cfg.yaml, save randomly initialised weights of its MobileNetV2
    backbone at `checkpoint`, the variables and names DeepLabCut's trainer restores."""
    import tensorflow as tf
    import tf_slim as slim
    from deeplabcut.pose_estimation_tensorflow.config import load_config
    from deeplabcut.pose_estimation_tensorflow.nnets import PoseNetFactory

    tf.compat.v1.disable_eager_execution()
    tf.compat.v1.reset_default_graph()
    images = tf.compat.v1.placeholder(tf.float32, shape=[None, None, None, 3])
    with autograph_off():
        PoseNetFactory.create(load_config(str(train_pose_cfg))).test(images)
    backbone = slim.get_variables_to_restore(include=["MobilenetV2"])
    with tf.compat.v1.Session() as session:
        session.run(tf.compat.v1.global_variables_initializer())
        tf.compat.v1.train.Saver(backbone).save(session, str(checkpoint), write_meta_graph=False)
    tf.compat.v1.reset_default_graph()


def check_data_loader(train_pose_cfg: Path, batches: int = 5) -> None:
    """Draw a few training batches here. DeepLabCut's trainer draws them in a thread of its own, and an
    error there (an image too small for min_input_size) leaves training waiting forever."""
    from deeplabcut.pose_estimation_tensorflow.config import load_config
    from deeplabcut.pose_estimation_tensorflow.datasets import PoseDatasetFactory

    dataset = PoseDatasetFactory.create(load_config(str(train_pose_cfg)))
    for _ in range(batches):
        dataset.next_batch()


def autograph_off():
    """A context in which TensorFlow builds graphs without AutoGraph (same outputs, several times faster)."""
    try:
        from tensorflow.python.autograph.core import ag_ctx
    except ImportError:  # a TensorFlow that moved its private switch: build with AutoGraph, slower
        return contextlib.nullcontext()
    return ag_ctx.ControlStatusCtx(status=ag_ctx.Status.DISABLED)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m dlcwatch.demo.tinydlc_tf",
                                     description="Build and train a tiny TensorFlow-engine DeepLabCut project "
                                                 "offline (needs deeplabcut[tf]).")
    parser.add_argument("folder", help="where to create the project")
    parser.add_argument("--iterations", type=int, default=300, help="training iterations (default 300)")
    parser.add_argument("--net-type", default=NET_TYPES[0], choices=NET_TYPES,
                        help=f"backbone (default {NET_TYPES[0]})")
    args = parser.parse_args(argv)
    try:
        config = build_tiny_tf_project(args.folder, iterations=args.iterations, net_type=args.net_type)
    except BaseException:  # noqa: BLE001
        # DeepLabCut's TF trainer feeds batches from a thread that is not a daemon; after an error in
        # training it stays blocked on the queue and the interpreter would never exit.
        traceback.print_exc()
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(1)
    print(config)
    return 0


if __name__ == "__main__":
    sys.exit(main())
