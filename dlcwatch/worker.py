"""The job itself: `python -m dlcwatch.worker SPEC.json`, run by an executor.

For each video of the spec: stage it under a safe ASCII name, analyze it with DeepLabCut into a
folder of its own, optionally filter, and check that the keypoints have one row per frame
ffprobe counted. The result file is rewritten (atomically) after every video, so what finished
is known even if the job is killed later. Imports only what a DeepLabCut environment has.
"""

from __future__ import annotations

import logging
import shutil
import sys
import time
import traceback
from pathlib import Path

from dlcwatch import analysis
from dlcwatch.jobspec import (
    BAD_VIDEO,
    ERROR,
    EXIT_ATTEMPT_FAILED,
    EXIT_BAD_INPUT,
    EXIT_OK,
    EXIT_USAGE,
    MISSING,
    OK,
    read_json,
    read_result,
    staged_name,
    write_json_atomic,
)

log = logging.getLogger("dlcwatch.worker")

# OpenCV's words when a video cannot be opened or decoded: the video is bad, not the attempt.
BAD_VIDEO_MARKERS = ("could not open", "cannot open", "failed to open", "invalid data", "moov atom",
                     "no frames", "0 frames", "could not read")


class BadVideo(Exception):
    """The video cannot be analyzed by anyone: quarantine it."""


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    if len(argv) != 1:
        print("usage: python -m dlcwatch.worker SPEC.json", file=sys.stderr)
        return EXIT_USAGE
    try:
        spec = read_json(argv[0])
    except (OSError, ValueError) as error:
        print(f"dlcwatch worker: cannot read the job spec {argv[0]}: {error}", file=sys.stderr)
        return EXIT_USAGE
    return run_job(spec)


def run_job(spec: dict) -> int:
    """Given a job spec, analyze its videos and write the result file; return the exit code."""
    work_dir = Path(spec["work_dir"])
    result_path = Path(spec["result"])
    # A requeued job (same spec) keeps what an earlier run of it already finished.
    previous = read_result(result_path) or {}
    result = {
        "job_id": spec["job_id"], "started": time.time(), "finished": None, "exit_code": None,
        "host": _hostname(), "videos": {key: value for key, value in previous.get("videos", {}).items()
                                        if value.get("status") in (OK, BAD_VIDEO)},
    }
    write_json_atomic(result_path, result)
    pending = [video for video in spec["videos"] if str(video["id"]) not in result["videos"]]
    try:
        deeplabcut, model = _load(spec, work_dir, result)
    except Exception as error:  # noqa: BLE001 - every failure here must reach the result file
        log.exception("cannot load DeepLabCut or the model")
        message = f"cannot load DeepLabCut or the model: {type(error).__name__}: {error}"
        for video in pending:
            result["videos"][str(video["id"])] = {"status": ERROR, "message": message}
        return _finish(result, result_path)
    for video in pending:
        result["videos"][str(video["id"])] = analyze_one(deeplabcut, model, spec, video, work_dir)
        write_json_atomic(result_path, result)
    return _finish(result, result_path)


def _load(spec: dict, work_dir: Path, result: dict):
    started = time.monotonic()
    deeplabcut = analysis.load_deeplabcut()
    settings = spec["model"]
    config = analysis.prepare_project(Path(settings["config"]), work_dir / "project")
    model = analysis.resolve_model(deeplabcut, config, settings["shuffle"], settings["trainingsetindex"],
                                   settings["batch_size"], settings["device"])
    result.update(dlc_version=analysis.dlc_version(deeplabcut), engine=model.engine, device=model.device,
                  load_seconds=analysis.elapsed(started))
    log.info("DeepLabCut %s, %s engine on %s, loaded in %.1f s", result["dlc_version"], model.engine,
             model.device, result["load_seconds"])
    return deeplabcut, model


def analyze_one(deeplabcut, model: analysis.Model, spec: dict, video: dict, work_dir: Path) -> dict:
    """Given one video entry of the spec, analyze it; return its entry for the result file."""
    started = time.monotonic()
    source = Path(video["path"])
    folder = work_dir / f"video{video['id']}"
    try:
        # Outputs of an earlier attempt go first: DeepLabCut skips a video whose pickle exists
        # even when its .h5 was never written.
        if folder.exists():
            shutil.rmtree(folder)
        output = folder / "output"
        output.mkdir(parents=True)
        if not source.exists():
            return {"status": MISSING, "message": f"the source file {source} no longer exists"}
        staged = folder / staged_name(video["id"], str(source))
        if spec.get("copy_videos"):
            shutil.copyfile(source, staged)
        else:
            staged.symlink_to(source)
        log.info("video %s: analyzing %s", video["id"], source)
        try:
            scorer = analysis.analyze(deeplabcut, model, staged, output)
        except Exception as error:  # noqa: BLE001
            if _looks_like_bad_video(error):
                raise BadVideo(f"DeepLabCut cannot read the video: {error}") from error
            raise
        outputs = analysis.find_outputs(output, staged.stem)
        if "keypoints_h5" not in outputs:
            raise RuntimeError(f"DeepLabCut wrote no .h5 for the video (found {sorted(p.name for p in output.iterdir())})")
        rows = analysis.count_rows(outputs["keypoints_h5"])
        if rows != video["frames"]:
            raise BadVideo(f"DeepLabCut produced {rows} rows but ffprobe counted {video['frames']} frames: "
                           "the file is damaged or its frame count is unreliable")
        filtering = spec.get("filter") or {}
        if filtering.get("enabled"):
            analysis.filter_predictions(deeplabcut, model, staged, output, filtering["type"],
                                        filtering["window_length"])
            outputs = analysis.find_outputs(output, staged.stem)
        entry = {"status": OK, "scorer": scorer, "frames": rows, "staged_stem": staged.stem}
        if spec.get("behavior_model"):
            labels, error = _behavior_labels(spec["behavior_model"], outputs, video, output, staged.stem)
            outputs.update(labels)
            if error:
                entry["behavior_error"] = error
        outputs.update(_quality_picture(staged, outputs["keypoints_h5"], output, outputs.get("behavior_csv"),
                                        source.name))
        if spec.get("copy_videos"):
            staged.unlink()
        log.info("video %s: %d frames analyzed in %.1f s", video["id"], rows, time.monotonic() - started)
        return {**entry, "seconds": analysis.elapsed(started),
                "outputs": {kind: str(path) for kind, path in outputs.items()}}
    except BadVideo as error:
        log.error("video %s: bad video: %s", video["id"], error)
        return {"status": BAD_VIDEO, "message": str(error), "seconds": analysis.elapsed(started)}
    except Exception as error:  # noqa: BLE001 - any other failure is this attempt's, not the video's
        log.error("video %s: attempt failed:\n%s", video["id"], traceback.format_exc())
        return {"status": ERROR, "message": f"{type(error).__name__}: {error}", "seconds": analysis.elapsed(started)}


def _behavior_labels(model: str, outputs: dict, video: dict, output: Path, stem: str) -> tuple[dict, str]:
    """Label every frame; return (new outputs, error). The keypoints are delivered either way."""
    keypoints = outputs.get("keypoints_filtered_h5", outputs["keypoints_h5"])
    try:
        from dlcwatch.behavior.predict import label_keypoints_file

        title = Path(video["path"]).stem  # the job's copy has an ASCII name; people know the original
        return label_keypoints_file(keypoints, Path(model), video["fps"], output, stem, title=title), ""
    except Exception as error:  # noqa: BLE001 - a label failure must not cost the keypoints
        log.error("video %s: behavior labels failed: %s", video["id"], error)
        return {}, str(error)


def _quality_picture(staged: Path, keypoints: Path, output: Path, behavior_csv: Path | None,
                     title: str) -> dict[str, Path]:
    """Draw the QC picture; a failure here is logged and costs the picture, never the keypoints."""
    try:
        from dlcwatch.qc import make_qc_png

        return {"qc_png": make_qc_png(keypoints, staged, output / f"{staged.stem}_qc.png",
                                      behavior_csv=behavior_csv, title=title)}
    except Exception:  # noqa: BLE001
        log.warning("could not draw the QC picture:\n%s", traceback.format_exc())
        return {}


def _looks_like_bad_video(error: Exception) -> bool:
    text = str(error).lower()
    return any(marker in text for marker in BAD_VIDEO_MARKERS)


def _finish(result: dict, result_path: Path) -> int:
    statuses = {entry["status"] for entry in result["videos"].values()}
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


if __name__ == "__main__":
    sys.exit(main())
