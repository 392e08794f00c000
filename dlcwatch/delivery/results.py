"""Where results land and what the manifest says about them.

For <watch root>/<rel>/<name>.<ext> the results go to <output root>/<rel>/<name>/, named after
the original video (the job analyzed it under a safe ASCII name), with manifest.json written
last: a folder with a manifest is complete and verified.
"""

from __future__ import annotations

import shutil
import time
from pathlib import Path, PurePosixPath
from typing import Callable

import dlcwatch
from dlcwatch.intake.fingerprint import sha256_file
from dlcwatch.errors import OutputsGone
from dlcwatch.files import Permissions, copy_verified, default_permissions, fsync_folder, make_folder, write_json_atomic
from dlcwatch.jobs.spec import read_json, video_folder_name
from dlcwatch.delivery.remote import RemoteDestination
from dlcwatch.store import Job, Video

MANIFEST = "manifest.json"


def output_permissions(output) -> Permissions:
    """Given the config's output section, return the permissions of delivered files and folders."""
    return Permissions.from_umask(file_mode=output.file_mode, dir_mode=output.dir_mode, group=output.group)


def output_folder(output_root: str | Path, video: Video) -> Path:
    """Given the output root and a video, return the folder its results go to."""
    relative = PurePosixPath(video.relpath)
    return Path(output_root).joinpath(*relative.parent.parts, Path(relative.name).stem)


def delivered_name(original_stem: str, staged_stem: str, output: Path) -> str:
    """Given a DeepLabCut output of the staged video, return its name after the original video."""
    name = output.name
    return original_stem + name[len(staged_stem):] if name.startswith(staged_stem) else name


def deliver(video: Video, job: Job, entry: dict, job_result: dict, output_root: str | Path,
            model: dict, now: float | None = None, *, remote: RemoteDestination | None = None,
            outgoing: Path | None = None, permissions: Permissions | None = None,
            progress: Callable[[int], None] | None = None) -> str:
    """Copy one video's results into the output tree, verified, manifest last; return the folder.

    Every file and every folder created gets `permissions` (default: the process umask's);
    `progress(bytes copied so far)` is called as the copies go (a delivery runs outside the loop).
    With `remote`, the folder is assembled under `outgoing` and then published over rsync.
    Raise OutputsGone if staging lost them, OSError if the destination refuses."""
    permissions = permissions or default_permissions()
    if remote is None:
        folder = output_folder(output_root, video)
        _set_aside_foreign(folder, video, _names_written(video, entry))
        make_folder(folder, below=Path(output_root), permissions=permissions)
        _assemble(folder, video, job, entry, job_result, model, now, permissions, progress)
        return str(folder)
    relative = output_folder(".", video)
    folder = Path(outgoing) / video_folder_name(video.id) / relative.name
    if folder.exists():
        shutil.rmtree(folder)
    folder.mkdir(parents=True)
    manifest = _assemble(folder, video, job, entry, job_result, model, now, permissions, progress)
    expected = {entry["file"]: entry["sha256"] for entry in manifest["outputs"].values()}
    expected[MANIFEST] = sha256_file(folder / MANIFEST)
    published = remote.publish(folder, relative.as_posix(), expected, video.sha256, permissions, progress)
    shutil.rmtree(folder.parent, ignore_errors=True)
    return published


def _assemble(folder: Path, video: Video, job: Job, entry: dict, job_result: dict, model: dict,
              now: float | None, permissions: Permissions, progress: Callable[[int], None] | None = None) -> dict:
    """Copy the outputs into `folder` under the original name, verified, and write the manifest."""
    outputs = {kind: Path(path) for kind, path in entry.get("outputs", {}).items()}
    gone = [str(path) for path in outputs.values() if not path.is_file()]
    if gone or not outputs:
        raise OutputsGone(f"outputs no longer in staging: {', '.join(gone) or 'none recorded'}")
    original_stem = Path(video.relpath).stem
    delivered = {}
    started = time.monotonic()
    for kind, source in sorted(outputs.items()):
        name = delivered_name(original_stem, entry["staged_stem"], source)
        before = sum(item["bytes"] for item in delivered.values())
        sha256 = copy_verified(source, folder / name, permissions=permissions,
                               progress=(lambda done: progress(before + done)) if progress else None)
        delivered[kind] = {"file": name, "sha256": sha256, "bytes": source.stat().st_size}
    manifest = {
        "dlcwatch_version": dlcwatch.__version__,
        "source": {"path": video.path, "bytes": video.size, "sha256": video.sha256, "frames": video.frames,
                   "fps": video.fps, "duration_s": video.duration, "codec": video.codec,
                   "width": video.width, "height": video.height},
        "model": {"config": model.get("config"), "shuffle": model.get("shuffle"),
                  "trainingsetindex": model.get("trainingsetindex"), "scorer": entry.get("scorer"),
                  "engine": job_result.get("engine"), "device": job_result.get("device"),
                  "deeplabcut_version": job_result.get("dlc_version"), "loaded": job_result.get("model_loads")},
        "job": {"id": job.id, "executor": job.executor, "executor_job_id": job.executor_job_id,
                "host": job_result.get("host"), "attempts": video.attempts},
        "outputs": delivered,
        "analysis": {key: entry[key] for key in ("status", "message", "tracking", "labeled_video",
                                                 "labeled_video_error") if key in entry},
        # Where the time went: the job's model load once (import, project view, model) and this
        # video's steps (worker/job.py's analyze_one), as the job's result file has them.
        "timings": {"queued_at": video.created, "model_load_s": job_result.get("load_seconds"),
                    "model_load_steps_s": job_result.get("timings", {}), "analysis_s": entry.get("seconds"),
                    "analysis_steps_s": entry.get("timings", {}), "delivery_s": round(time.monotonic() - started, 3),
                    "delivered_at": time.time() if now is None else now},
    }
    write_json_atomic(folder / MANIFEST, manifest, permissions=permissions)
    fsync_folder(folder)
    return manifest


def _names_written(video: Video, entry: dict) -> set[str]:
    """Given a video and its result entry, return the file names a delivery writes."""
    stem = Path(video.relpath).stem
    names = {delivered_name(stem, entry.get("staged_stem", ""), Path(path)) for path in entry.get("outputs", {}).values()}
    return names | {MANIFEST}


def _set_aside_foreign(folder: Path, video: Video, ours: set[str]) -> None:
    """Keep results of a different video that happen to sit where ours go: rename them aside.

    A folder without a manifest that holds only files this delivery writes (and the temporary
    files of a copy) is an earlier delivery of this video, interrupted: it is completed in place."""
    if not folder.exists():
        return
    try:
        previous = read_json(folder / MANIFEST).get("source", {}).get("sha256")
    except (OSError, ValueError, AttributeError):
        previous = None
    if previous == video.sha256:
        return  # a re-delivery of the same video: replace file by file
    present = [path.name for path in folder.iterdir()]
    interrupted = all(name in ours or (name.startswith(".") and name.endswith(".part")) for name in present)
    if previous is None and interrupted:
        for name in present:
            if name.endswith(".part"):
                (folder / name).unlink(missing_ok=True)
        return
    stamp = time.strftime("%Y%m%dT%H%M%S")
    folder.rename(folder.with_name(f"{folder.name}.replaced-{stamp}"))
