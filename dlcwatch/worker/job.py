"""The job itself: `python -m dlcwatch.worker SPEC.json`, run by an executor.

The model is built once for the job (worker/inference.py). For each video of the spec: stage it
under a safe ASCII name, analyze it into a folder of its own, optionally filter, and check that the
keypoints have one row per frame ffprobe counted; its QC picture is drawn beside the next video
(worker/pictures.py). The result file is rewritten (atomically) after every video, so what
finished is known even if the job is killed later; it says where the time went, for the job
(import, project, model) and for each video. Imports only what a DeepLabCut environment has.
"""

from __future__ import annotations

import logging
import shutil
import sys
import threading
import time
import traceback
from pathlib import Path
from typing import Callable

from dlcwatch.errors import BadVideo
from dlcwatch.jobs.spec import (
    BAD_VIDEO,
    ERROR,
    EXIT_ATTEMPT_FAILED,
    EXIT_BAD_INPUT,
    EXIT_OK,
    EXIT_USAGE,
    MISSING,
    NO_ANIMAL,
    OK,
    JobFolder,
    JobSpec,
    LabeledVideo,
    SpecError,
    VideoTask,
    read_result,
    staged_name,
    write_json_atomic,
)
from dlcwatch.worker import dlc, inference
from dlcwatch.worker.pictures import Pictures

log = logging.getLogger("dlcwatch.worker.job")

# OpenCV's words when a video cannot be opened or decoded: the video is bad, not the attempt.
BAD_VIDEO_MARKERS = ("could not open", "could not be opened", "cannot open", "failed to open", "invalid data",
                     "moov atom", "no frames", "0 frames", "could not read")


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    if len(argv) != 1:
        print("usage: python -m dlcwatch.worker SPEC.json", file=sys.stderr)
        return EXIT_USAGE
    try:
        spec = JobSpec.read(argv[0])
    except (OSError, SpecError) as error:
        print(f"dlcwatch worker: cannot read the job spec {argv[0]}: {error}", file=sys.stderr)
        return EXIT_USAGE
    return run_job(spec)


def run_job(spec: JobSpec) -> int:
    """Given a job spec, analyze its videos and write the result file; return the exit code."""
    work_dir = Path(spec.work_dir)
    result_path = Path(spec.result)
    # A requeued job (same spec) keeps what an earlier run of it already finished.
    previous = read_result(result_path) or {}
    result = {
        "job_id": spec.job_id, "started": time.time(), "finished": None, "exit_code": None,
        "host": _hostname(), "videos": {key: value for key, value in previous.get("videos", {}).items()
                                        if value.get("status") in (OK, NO_ANIMAL, BAD_VIDEO)},
    }
    results = ResultFile(result_path, result)
    results.write()
    pending = [video for video in spec.videos if str(video.id) not in result["videos"]]
    pictures = Pictures() if spec.qc_picture and pending else None
    try:
        try:
            deeplabcut, model, session = _load(spec, work_dir, result)
        except Exception as error:  # noqa: BLE001 - every failure here must reach the result file
            log.exception("cannot load DeepLabCut or the model")
            message = f"cannot load DeepLabCut or the model: {type(error).__name__}: {error}"
            for video in pending:
                result["videos"][str(video.id)] = {"status": ERROR, "message": message}
            return _finish(result, result_path)
        try:
            for number, video in enumerate(pending, start=1):
                analyze_one(session, deeplabcut, model, spec, video, work_dir, pictures,
                            record=lambda entry, key=str(video.id): results.record(key, entry),
                            more_follows=number < len(pending))
        finally:
            session.close()
    finally:
        if pictures:
            pictures.finish()  # every picture drawn, every video recorded
    return _finish(result, result_path)


class ResultFile:
    """The job's result file, rewritten whole (atomically) after every video. A video whose QC picture
    is drawn in the background is recorded from the drawing pool's thread, hence the lock."""

    def __init__(self, path: Path, result: dict):
        self.path, self.result = path, result
        self._lock = threading.Lock()

    def record(self, key: str, entry: dict) -> None:
        with self._lock:
            self.result["videos"][key] = entry
            write_json_atomic(self.path, self.result)

    def write(self) -> None:
        with self._lock:
            write_json_atomic(self.path, self.result)


def _load(spec: JobSpec, work_dir: Path, result: dict):
    """Import DeepLabCut, make the job's private project and build the model once; return
    (deeplabcut, Model, session). The result gets the versions, the engine and the load's timings."""
    started = time.monotonic()
    deeplabcut = dlc.load_deeplabcut()
    timings = {"import_s": dlc.elapsed(started)}
    step = time.monotonic()
    settings = spec.model
    tracking = settings.multi_animal
    config = dlc.prepare_project(Path(settings.config), JobFolder(work_dir).project,
                                 {} if tracking.tracker == "project" else {"default_track_method": tracking.tracker})
    model = dlc.resolve_model(deeplabcut, config, settings.shuffle, settings.trainingsetindex, settings.batch_size,
                              settings.device, {"auto_track": tracking.auto_track, "animals": tracking.animals})
    if model.multi_animal and model.auto_track:
        dlc.check_tracker()  # once here, not one wasted analysis per video
    timings["prepare_s"] = dlc.elapsed(step)
    step = time.monotonic()
    session = inference.open_session(deeplabcut, model)
    timings["model_s"] = dlc.elapsed(step)
    result.update(dlc_version=dlc.dlc_version(deeplabcut), engine=model.engine, device=model.device,
                  model_loads=session.loads, load_seconds=dlc.elapsed(started), timings=timings)
    if isinstance(session, inference.PerVideoSession):
        result["model_loads_why"] = session.reason
    log.info("DeepLabCut %s, %s engine on %s, loaded in %.1f s (import %.1f s, model %.1f s); the model loads %s%s",
             result["dlc_version"], model.engine, model.device, result["load_seconds"], timings["import_s"],
             timings["model_s"], session.loads, f": {session.reason}" if "model_loads_why" in result else "")
    return deeplabcut, model, session


def analyze_one(session, deeplabcut, model: dlc.Model, spec: JobSpec, video: VideoTask, work_dir: Path,
                pictures: Pictures | None, record: Callable[[dict], None], more_follows: bool = False) -> None:
    """Given one video entry of the spec, analyze it and `record` its entry for the result file: at
    once, or once its QC picture (drawn beside the next video where it can be) is in it.

    The entry's "timings" say where its time went (seconds): stage_s (link or copy), inference_s
    (decode + inference), write_s (DeepLabCut's files), track_s (multi-animal tracking), check_s,
    filter_s, behavior_s, labeled_video_s, qc_s."""
    entry, picture = _analyze(session, deeplabcut, model, spec, video, work_dir)
    staged = picture[0] if picture else None
    remove_copy = staged.unlink if staged and spec.copy_videos else (lambda: None)

    def finished() -> None:
        try:
            remove_copy()
        finally:
            record(entry)

    if picture and pictures:
        pictures.draw(entry, *picture, done=finished, more_follows=more_follows)
    else:
        finished()


def _analyze(session, deeplabcut, model: dlc.Model, spec: JobSpec, video: VideoTask, work_dir: Path
             ) -> tuple[dict, tuple | None]:
    """Analyze one video; return its entry and what its QC picture is drawn from (None: no picture)."""
    started = time.monotonic()
    timings: dict[str, float] = {}
    source = Path(video.path)
    folder = JobFolder(work_dir).video(video.id)
    try:
        # Outputs of an earlier attempt go first: DeepLabCut skips a video whose pickle exists
        # even when its .h5 was never written.
        if folder.exists():
            shutil.rmtree(folder)
        output = folder / "output"
        output.mkdir(parents=True)
        if not source.exists():
            return {"status": MISSING, "message": f"the source file {source} no longer exists"}, None
        step = time.monotonic()
        staged = folder / staged_name(video.id, str(source))
        if spec.copy_videos:
            shutil.copyfile(source, staged)
        else:
            staged.symlink_to(source)
        timings["stage_s"] = dlc.elapsed(step)
        log.info("video %s: analyzing %s", video.id, source)
        no_animal = False
        try:
            analysis = session.analyze(staged, output)
            scorer = analysis.scorer
            timings.update(analysis.timings)
        except dlc.NoAnimalFound:
            no_animal, scorer = True, ""
        except BadVideo:
            raise
        except Exception as error:  # noqa: BLE001
            if _looks_like_bad_video(error):
                raise BadVideo(f"DeepLabCut cannot read the video: {error}") from error
            raise
        step = time.monotonic()
        outputs = _outputs(model, output, staged.stem)
        if model.multi_animal:
            entry = _multi_animal_tables(model, outputs, output, staged.stem, video, no_animal)
            outputs = _outputs(model, output, staged.stem)
        else:
            entry = _single_animal_table(outputs, video)
        entry.update(scorer=scorer or entry.pop("scorer", ""), staged_stem=staged.stem)
        timings["check_s"] = dlc.elapsed(step)
        trackable = not model.multi_animal or (model.auto_track and entry["status"] == OK)
        if spec.filter.enabled and trackable:
            step = time.monotonic()
            dlc.filter_predictions(deeplabcut, model, staged, output, spec.filter.type, spec.filter.window_length)
            outputs.update(_outputs(model, output, staged.stem))
            timings["filter_s"] = dlc.elapsed(step)
        if spec.behavior_model and entry["status"] == OK:
            step = time.monotonic()
            labels, error = _behavior_labels(spec.behavior_model, outputs, video, output, staged.stem)
            outputs.update(labels)
            if error:
                entry["behavior_error"] = error
            timings["behavior_s"] = dlc.elapsed(step)
        if spec.model.labeled_video.mode != "off" and (not model.multi_animal or model.auto_track):
            step = time.monotonic()
            outputs.update(_labeled_video(deeplabcut, model, staged, output, outputs, video, spec.model.labeled_video,
                                          entry))
            timings["labeled_video_s"] = dlc.elapsed(step)
        entry.update(seconds=dlc.elapsed(started), timings=timings,
                     outputs={kind: str(path) for kind, path in outputs.items()})
        log.info("video %s: %d frames analyzed in %.1f s (%s)", video.id, entry["frames"], entry["seconds"],
                 ", ".join(f"{name} {value:.2f}" for name, value in timings.items()))
        return entry, (staged, outputs["keypoints_h5"], output, outputs.get("behavior_csv"), source.name)
    except BadVideo as error:
        log.error("video %s: bad video: %s", video.id, error)
        return {"status": BAD_VIDEO, "message": str(error), "seconds": dlc.elapsed(started), "timings": timings}, None
    except Exception as error:  # noqa: BLE001 - any other failure is this attempt's, not the video's
        log.error("video %s: attempt failed:\n%s", video.id, traceback.format_exc())
        return {"status": ERROR, "message": f"{type(error).__name__}: {error}", "seconds": dlc.elapsed(started),
                "timings": timings}, None


def _outputs(model: dlc.Model, output: Path, stem: str) -> dict[str, Path]:
    """Return the files to deliver; of a single-animal project's pickles only the meta (its table holds
    the same detections, the full pickle would only double the size)."""
    outputs = dlc.find_outputs(output, stem)
    if not model.multi_animal:
        for kind in ("dlc_detections", "dlc_assemblies"):
            outputs.pop(kind, None)
    return outputs


def _single_animal_table(outputs: dict, video: VideoTask) -> dict:
    """Check a single-animal table has one row per frame; return the video's result entry so far."""
    if "keypoints_h5" not in outputs:
        raise RuntimeError(f"DeepLabCut wrote no .h5 for the video (found {sorted(p.name for p in outputs.values())})")
    rows = dlc.count_rows(outputs["keypoints_h5"])
    if rows != video.frames:
        raise BadVideo(f"DeepLabCut produced {rows} rows but ffprobe counted {video.frames} frames: "
                       "the file is damaged or its frame count is unreliable")
    return {"status": OK, "frames": rows}


def _multi_animal_tables(model: dlc.Model, outputs: dict, output: Path, stem: str, video: VideoTask,
                         no_animal: bool) -> dict:
    """Given a multi-animal video's outputs, give its table one row per frame (an empty table where no
    animal was tracked); return the video's result entry so far."""
    detections = outputs.get("dlc_detections")
    if detections is None:
        raise RuntimeError(f"DeepLabCut wrote no detections (_full.pickle) for the video "
                           f"(found {sorted(p.name for p in output.iterdir())})")
    frames = dlc.frames_analyzed(detections)
    if frames != video.frames:
        raise BadVideo(f"DeepLabCut read {frames} frames but ffprobe counted {video.frames} frames: "
                       "the file is damaged or its frame count is unreliable")
    prefix = detections.name[:-len("_full.pickle")]
    entry = {"status": OK, "frames": frames, "scorer": prefix[len(stem):]}
    if no_animal:
        seen = dlc.frames_with_detections(outputs["dlc_assemblies"]) if "dlc_assemblies" in outputs else 0
        table = dlc.write_empty_tracked_table(model.config, output, prefix, model.tracker_suffix, frames)
        reason = ("no animal found: DeepLabCut detected no animal in any frame" if not seen else
                  f"no animal found: animals were detected in {seen} of {frames} frames, but no track lasted "
                  "long enough to keep")
        log.info("video %s: %s", video.id, reason)
        entry.update(status=NO_ANIMAL, message=reason, tracking=dlc.tracking_summary(dlc.read_table(table)))
    elif model.auto_track:
        table = outputs.get("keypoints_h5")
        if table is None:
            raise RuntimeError("DeepLabCut tracked the video but wrote no table")
        try:
            entry["tracking"] = dlc.complete_tracked_table(table, outputs.get("keypoints_csv"), frames)
        except ValueError as error:
            raise BadVideo(str(error)) from error
    else:
        if "keypoints_h5" not in outputs:
            raise RuntimeError("DeepLabCut wrote no table of detections (save_as_df)")
        entry["tracking"] = {"frames": frames, "auto_track": False}
    return entry


def _labeled_video(deeplabcut, model: dlc.Model, staged: Path, output: Path, outputs: dict, video: VideoTask,
                   labeled: LabeledVideo, entry: dict) -> dict[str, Path]:
    """Make the labeled video; a failure here is recorded and costs the labeled video, never the keypoints."""
    table = outputs.get("keypoints_filtered_h5", outputs["keypoints_h5"])
    started = time.monotonic()
    try:
        path, shown = dlc.make_labeled_video(deeplabcut, model, staged, output, table, labeled.mode,
                                             float(labeled.clip_s), video.fps)
    except Exception as error:  # noqa: BLE001
        log.warning("video %s: no labeled video:\n%s", video.id, traceback.format_exc())
        entry["labeled_video_error"] = f"{type(error).__name__}: {error}"
        return {}
    entry["labeled_video"] = {**shown, "made_in_s": dlc.elapsed(started)}
    return {"labeled_video": path}


def _behavior_labels(model: str, outputs: dict, video: VideoTask, output: Path, stem: str) -> tuple[dict, str]:
    """Label every frame; return (new outputs, error). The keypoints are delivered either way."""
    keypoints = outputs.get("keypoints_filtered_h5", outputs["keypoints_h5"])
    try:
        from dlcwatch.behavior.predict import label_keypoints_file

        title = Path(video.path).stem  # the job's copy has an ASCII name; people know the original
        return label_keypoints_file(keypoints, Path(model), video.fps, output, stem, title=title), ""
    except Exception as error:  # noqa: BLE001 - a label failure must not cost the keypoints
        log.error("video %s: behavior labels failed: %s", video.id, error)
        return {}, str(error)


def _looks_like_bad_video(error: Exception) -> bool:
    text = str(error).lower()
    return any(marker in text for marker in BAD_VIDEO_MARKERS)


def _finish(result: dict, result_path: Path) -> int:
    statuses = {entry["status"] for entry in result["videos"].values()}  # NO_ANIMAL ends well: exit 0
    if ERROR in statuses:
        code = EXIT_ATTEMPT_FAILED
    elif BAD_VIDEO in statuses:
        code = EXIT_BAD_INPUT
    else:
        code = EXIT_OK
    result.update(finished=time.time(), exit_code=code)
    write_json_atomic(result_path, result)
    return code


def _hostname() -> str:
    import socket

    return socket.gethostname()

