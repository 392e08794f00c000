"""The model, loaded once per job: DeepLabCut's own inference API, one video at a time.

`deeplabcut.analyze_videos` builds the model every time it is called, and the worker must call
it once per video (each video has its own folder, its own failure, its own line in the result
file). A session builds the model once and then runs every video through the same steps that
`analyze_videos` runs for each video of its list, with the same DeepLabCut functions, so the
files are the ones it writes (names with the scorer, HDF key `df_with_missing`, the same columns,
`_meta.pickle`, `.csv`); tests/test_worker_outputs.py compares them with a plain
`analyze_videos` call on the same model and video.

- PyTorch engine: DeepLabCut's pose runner (`get_pose_inference_runner`, and the detector's
  for top-down models), `video_inference` per video, then the writers `analyze_videos` uses
  (its metadata, its full pickle, `create_df_from_prediction`; for multi-animal projects the
  assemblies, `convert_detections2tracklets` and `stitch_tracklets`).
- TensorFlow engine: DeepLabCut's session (`setup_GPUpose_prediction`, or `setup_pose_prediction`
  where `analyze_videos` uses it), then `AnalyzeVideo` per video, DeepLabCut's own per-video
  function. The graph is built with TensorFlow's AutoGraph off (`do_not_convert`): tf-keras
  converts every legacy layer call otherwise, which is most of the build time (about 11 s against
  2.5 s for a tiny MobileNet here) and changes nothing in the graph; the outputs are identical
  (tested).
- Anything else (TensorFlow multi-animal projects, conditional top-down models, a DeepLabCut
  without these functions) keeps `analyze_videos` per video, and the result file says so.
"""

from __future__ import annotations

import importlib.util
import os
import pickle
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

from dlcwatch.errors import BadVideo, EngineMissing
from dlcwatch.worker import dlc

LOAD_ONCE = "once per job"
PER_VIDEO = "once per video (analyze_videos)"


@dataclass
class Analysis:
    """What analyzing one video gave: DeepLabCut's scorer and where the time went (seconds)."""

    scorer: str
    timings: dict[str, float] = field(default_factory=dict)


class PerVideoSession:
    """`analyze_videos` once per video: the model is built for every video."""

    loads = PER_VIDEO

    def __init__(self, deeplabcut, model: dlc.Model, reason: str):
        self.deeplabcut, self.model, self.reason = deeplabcut, model, reason

    def analyze(self, video: Path, destination: Path) -> Analysis:
        started = time.monotonic()
        scorer = dlc.analyze(self.deeplabcut, self.model, video, destination)
        return Analysis(scorer, {"load_and_inference_s": dlc.elapsed(started)})

    def close(self) -> None:
        pass


class PytorchSession:
    """DeepLabCut's PyTorch pose runner, built once; `analyze` writes what analyze_videos writes."""

    loads = LOAD_ONCE

    def __init__(self, model: dlc.Model, api: dict, loader):
        self.model, self.api, self.loader = model, api, loader
        Task = api["Task"]
        self.project = loader.project_cfg
        self.train_fraction = self.project["TrainingFraction"][model.trainingsetindex]
        self.pose_cfg = api["read_plainconfig"](loader.model_folder.parent / "test" / "pose_cfg.yaml")
        self.snapshot_index, detector_index = api["parse_snapshot_index_for_analysis"](
            self.project, loader.model_cfg, None, None)
        self.detector_index = detector_index
        self.cropping = ((self.project["x1"], self.project["x2"], self.project["y1"], self.project["y2"])
                         if self.project.get("cropping", False) else None)
        metadata = loader.model_cfg["metadata"]
        self.bodyparts, self.unique_bodyparts = metadata["bodyparts"], metadata["unique_bodyparts"]
        self.multi_animal = bool(self.project["multianimalproject"])
        loader.model_cfg["device"] = model.device
        self.batch_size = model.batch_size
        snapshot = api["get_model_snapshots"](self.snapshot_index, loader.model_folder, loader.pose_task)[0]
        self.pose_runner = api["get_pose_inference_runner"](
            model_config=loader.model_cfg, snapshot_path=snapshot.path, max_individuals=len(metadata["individuals"]),
            batch_size=self.batch_size)
        self.detector_runner, detector_snapshot = None, None
        if loader.pose_task == Task.TOP_DOWN:
            if detector_index is None:
                raise ValueError("a top-down model needs a detector snapshot (detector_snapshotindex in config.yaml)")
            detector_snapshot = api["get_model_snapshots"](detector_index, loader.model_folder, Task.DETECT)[0]
            self.detector_runner = api["get_detector_inference_runner"](
                model_config=loader.model_cfg, snapshot_path=detector_snapshot.path,
                max_individuals=len(metadata["individuals"]), batch_size=self.project.get("detector_batch_size", 1))
        self.scorer = loader.scorer(snapshot, detector_snapshot)

    def analyze(self, video: Path, destination: Path) -> Analysis:
        api, timings = self.api, {}
        destination.mkdir(parents=True, exist_ok=True)
        prefix = video.stem + self.scorer
        full_pickle = destination / f"{prefix}_full.pickle"
        frames = api["VideoIterator"](str(video), cropping=self.cropping)
        started = time.monotonic()
        runtime = (time.time(),)
        predictions = api["video_inference"](video=frames, pose_runner=self.pose_runner,
                                             detector_runner=self.detector_runner)
        runtime += (time.time(),)
        timings["inference_s"] = dlc.elapsed(started)
        if not predictions:  # analyze_videos itself would stop on an OverflowError in its pickle writer
            raise BadVideo(f"DeepLabCut read no frame of {video.name}")
        started = time.monotonic()
        metadata = api["generate_metadata"](cfg=self.project, pytorch_config=self.loader.model_cfg,
                                            dlc_scorer=self.scorer, train_fraction=self.train_fraction,
                                            batch_size=self.batch_size, cropping=self.cropping, runtime=runtime,
                                            video=frames)
        with open(destination / f"{prefix}_meta.pickle", "wb") as stream:
            pickle.dump(metadata, stream, pickle.HIGHEST_PROTOCOL)
        with open(full_pickle, "wb") as stream:
            pickle.dump(api["generate_output_data"](self.pose_cfg, predictions), stream, pickle.HIGHEST_PROTOCOL)
        # A single-animal table always; a multi-animal one only untracked (save_as_df), as analyze_videos.
        if not self.multi_animal or not self.model.auto_track:
            api["create_df_from_prediction"](predictions=predictions, multi_animal=self.multi_animal,
                                             model_cfg=self.loader.model_cfg, dlc_scorer=self.scorer,
                                             output_path=destination, output_prefix=prefix, save_as_csv=True)
        timings["write_s"] = dlc.elapsed(started)
        if self.multi_animal:
            started = time.monotonic()
            self._assemble_and_track(video, destination, prefix, full_pickle)
            timings["track_s"] = dlc.elapsed(started)
        return Analysis(self.scorer, timings)

    def _assemble_and_track(self, video: Path, destination: Path, prefix: str, full_pickle: Path) -> None:
        api, model = self.api, self.model
        api["generate_assemblies_file"](full_data_path=full_pickle,
                                        output_path=destination / f"{prefix}_assemblies.pickle",
                                        num_bodyparts=len(self.bodyparts),
                                        num_unique_bodyparts=len(self.unique_bodyparts))
        if not model.auto_track:
            return
        config = str(model.config)
        try:
            api["convert_detections2tracklets"](
                config=config, videos=str(video), shuffle=model.shuffle, trainingsetindex=model.trainingsetindex,
                destfolder=str(destination), snapshot_index=self.snapshot_index,
                detector_snapshot_index=self.detector_index)
            api["stitch_tracklets"](config, [str(video)], None, model.shuffle, model.trainingsetindex,
                                    n_tracks=model.animals or None, destfolder=str(destination), save_as_csv=True,
                                    snapshot_index=self.snapshot_index, detector_snapshot_index=self.detector_index)
        except OSError as error:
            if dlc.no_animal_found(model, error):
                raise dlc.NoAnimalFound(str(error)) from error
            raise

    def close(self) -> None:
        self.pose_runner = self.detector_runner = None


class TensorflowSession:
    """DeepLabCut's TensorFlow session, built once; `analyze` is DeepLabCut's own AnalyzeVideo."""

    loads = LOAD_ONCE

    def __init__(self, model: dlc.Model, api: dict):
        import pandas as pd
        import tensorflow as tf

        self.model, self.api = model, api
        os.environ.pop("TF_CUDNN_USE_AUTOTUNE", None)  # as analyze_videos: training may have set it
        if model.device.startswith("cuda"):
            api["set_visible_devices"](int(model.device.partition(":")[2] or 0))
        tf.compat.v1.reset_default_graph()
        cfg = api["read_config"](str(model.config))
        self.cfg = cfg
        self.train_fraction = cfg["TrainingFraction"][model.trainingsetindex]
        model_folder = Path(cfg["project_path"]) / str(api["get_model_folder"](self.train_fraction, model.shuffle, cfg,
                                                                                modelprefix=""))
        dlc_cfg = api["load_config"](str(model_folder / "test" / "pose_cfg.yaml"))
        snapshots = api["get_snapshots_from_folder"](train_folder=model_folder / "train")
        index = -1 if cfg["snapshotindex"] == "all" else cfg["snapshotindex"]
        dlc_cfg["init_weights"] = str(model_folder / "train" / snapshots[index])
        iterations = Path(dlc_cfg["init_weights"]).name.split("-")[-1]
        dlc_cfg["num_outputs"] = cfg.get("num_outputs", dlc_cfg.get("num_outputs", 1))
        dlc_cfg["batch_size"] = cfg["batch_size"] = model.batch_size
        self.dlc_cfg = dlc_cfg
        self.scorer, self.legacy_scorer = api["get_scorer_name"](cfg, model.shuffle, self.train_fraction,
                                                                 trainingsiterations=iterations, modelprefix="")
        # analyze_videos' choice of code path: DeepLabCut's in-graph pose extraction unless several
        # outputs per body part are asked for; OpenVINO where it is installed.
        coordinates = ["x", "y", "likelihood"]
        self.in_graph = dlc_cfg["num_outputs"] == 1
        if not self.in_graph:
            suffixes = [""] + [str(number + 1) for number in range(1, dlc_cfg["num_outputs"])]
            coordinates = [name + suffix for suffix in suffixes for name in ("x", "y", "likelihood")]
        self.openvino = "CPU" if api["openvino_available"] else None
        if self.openvino:
            setup = lambda config: api["setup_openvino_pose_prediction"](config, device=self.openvino)  # noqa: E731
        else:
            setup = api["setup_GPUpose_prediction"] if self.in_graph else api["setup_pose_prediction"]
        self.session, self.inputs, self.outputs = tf.autograph.experimental.do_not_convert(setup)(dlc_cfg)
        self.columns = pd.MultiIndex.from_product([[self.scorer], dlc_cfg["all_joints_names"], coordinates],
                                                  names=["scorer", "bodyparts", "coords"])

    def analyze(self, video: Path, destination: Path) -> Analysis:
        destination.mkdir(parents=True, exist_ok=True)
        started = time.monotonic()
        scorer = self.api["AnalyzeVideo"](
            str(video), self.scorer, self.legacy_scorer, self.train_fraction, self.cfg, self.dlc_cfg, self.session,
            self.inputs, self.outputs, self.columns, True, str(destination), self.in_graph, (False, 0.5, 10),
            self.openvino)
        total = time.monotonic() - started
        # AnalyzeVideo times its decode + inference loop itself and stores it in the meta pickle.
        inference = dlc.inference_seconds(destination / f"{video.stem}{scorer}_meta.pickle")
        if inference is None:
            return Analysis(str(scorer), {"inference_and_write_s": round(total, 3)})
        return Analysis(str(scorer), {"inference_s": round(inference, 3), "write_s": round(total - inference, 3)})

    def close(self) -> None:
        if getattr(self, "session", None) is not None and hasattr(self.session, "close"):
            self.session.close()
        self.session = None


def open_session(deeplabcut, model: dlc.Model):
    """Given DeepLabCut and the job's model, build the model once; return the session that analyzes
    each video (a PerVideoSession, with its reason, where the model cannot be loaded once)."""
    if "pytorch" in model.engine:
        api, missing = _pytorch_api()
        if missing:
            return PerVideoSession(deeplabcut, model, f"this DeepLabCut has no {missing}")
        loader = api["DLCLoader"](model.config, trainset_index=model.trainingsetindex, shuffle=model.shuffle)
        if loader.pose_task == api["Task"].COND_TOP_DOWN:
            return PerVideoSession(deeplabcut, model, "conditional top-down models take conditions per video")
        return PytorchSession(model, api, loader)
    if importlib.util.find_spec("tensorflow") is None:
        raise EngineMissing(
            f"the model was trained with DeepLabCut's TensorFlow engine and this job's python ({sys.executable}) "
            "has no TensorFlow (No module named 'tensorflow'): make a TensorFlow job environment with "
            "`scripts/install-dlc.sh --tf VENV`, set the executor's python (executor.local.python, "
            "executor.slurm.python, ...) to VENV/bin/python, then `dlcwatch retry`")
    if model.multi_animal:
        return PerVideoSession(deeplabcut, model, "TensorFlow multi-animal projects are not tried here "
                                                  "with a real model")
    api, missing = _tensorflow_api()
    if missing:
        return PerVideoSession(deeplabcut, model, f"this DeepLabCut has no {missing}")
    return TensorflowSession(model, api)


def _pytorch_api() -> tuple[dict, str]:
    """Return DeepLabCut's PyTorch pieces a session uses by name, and the first one missing ("" if none).

    The public ones come from deeplabcut.pose_estimation_pytorch; the metadata, full-pickle and
    assemblies writers are analyze_videos' own (private in 3.0.2), used as they are, never copied."""
    wanted = {
        "deeplabcut.pose_estimation_pytorch": ("DLCLoader", "Task", "VideoIterator", "get_pose_inference_runner",
                                               "get_detector_inference_runner", "video_inference"),
        "deeplabcut.pose_estimation_pytorch.apis.utils": ("parse_snapshot_index_for_analysis", "get_model_snapshots"),
        "deeplabcut.pose_estimation_pytorch.apis.videos": ("create_df_from_prediction", "_generate_metadata",
                                                           "_generate_output_data", "_generate_assemblies_file"),
        "deeplabcut.pose_estimation_pytorch.apis.tracklets": ("convert_detections2tracklets",),
        "deeplabcut.refine_training_dataset.stitch": ("stitch_tracklets",),
        "deeplabcut.utils.auxiliaryfunctions": ("read_plainconfig",),
    }
    return _import_names(wanted)


def _tensorflow_api() -> tuple[dict, str]:
    """Return DeepLabCut's TensorFlow pieces a session uses by name, and the first one missing ("" if none)."""
    wanted = {
        "deeplabcut.pose_estimation_tensorflow.predict_videos": ("AnalyzeVideo",),
        "deeplabcut.pose_estimation_tensorflow.config": ("load_config",),
        "deeplabcut.pose_estimation_tensorflow.core.predict": ("setup_pose_prediction", "setup_GPUpose_prediction",
                                                               "setup_openvino_pose_prediction"),
        "deeplabcut.pose_estimation_tensorflow.core.openvino.session": ("is_openvino_available",),
        "deeplabcut.utils.auxiliaryfunctions": ("read_config", "get_model_folder", "get_snapshots_from_folder",
                                                "get_scorer_name"),
        "deeplabcut.utils.auxfun_models": ("set_visible_devices",),
    }
    api, missing = _import_names(wanted)
    if not missing:
        api["openvino_available"] = bool(api.pop("is_openvino_available"))
    return api, missing


def _import_names(wanted: dict[str, tuple[str, ...]]) -> tuple[dict, str]:
    import importlib

    api = {}
    for module_name, names in wanted.items():
        try:
            module = importlib.import_module(module_name)
        except ImportError:
            return {}, module_name
        for name in names:
            if not hasattr(module, name):
                return {}, f"{module_name}.{name}"
            api[name.lstrip("_")] = getattr(module, name)
    return api, ""
