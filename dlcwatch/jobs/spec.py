"""What a job is made of: the spec the daemon writes, the result the worker writes, and where every
file of a job lives (JobFolder, ArrayFolder).

Both sides import this module, so it depends on the standard library only. Files are written
with dlcwatch.files' atomic writer, so a reader never sees half of one.
"""

from __future__ import annotations

import dataclasses
import json
import re
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from dlcwatch.files import write_json_atomic

SPEC_VERSION = 1

# Worker exit codes (sysexits.h): the executor reports them; the result file is the detail.
EXIT_OK = 0              # every video ended analyzed, bad or missing (see the result)
EXIT_USAGE = 64          # the spec could not be read: a bug or a damaged job folder
EXIT_BAD_INPUT = 65      # at least one video is bad; the rest are done
EXIT_ATTEMPT_FAILED = 75  # at least one video failed for a reason worth another attempt

# Per-video outcomes in the result file.
OK = "ok"
BAD_VIDEO = "bad_video"    # the video itself is unusable: quarantine, do not retry
NO_ANIMAL = "no_animal"    # analyzed, but no animal was found in it: deliver what there is, done
MISSING = "missing"        # the source file is gone
ERROR = "error"            # this attempt failed (out of memory, a crash, …): retry


class SpecError(ValueError):
    """A job spec that this worker cannot use: damaged, or written by another dlcwatch version."""


@dataclass(frozen=True)
class Tracking:
    """Multi-animal settings (model.multi_animal); ignored for single-animal projects."""

    auto_track: bool = True
    tracker: str = "project"   # project | ellipse | box | skeleton
    animals: int = 0           # 0: one per individual in the project


@dataclass(frozen=True)
class LabeledVideo:
    mode: str = "off"          # off | clip | full
    clip_s: float = 10.0


@dataclass(frozen=True)
class Filtering:
    enabled: bool = False
    type: str = "median"
    window_length: int = 5


@dataclass(frozen=True)
class ModelSpec:
    """The DeepLabCut model as the job sees it (paths in the job's file system)."""

    config: str
    shuffle: int = 1
    trainingsetindex: int = 0
    batch_size: int = 8
    device: str = "auto"
    multi_animal: Tracking = field(default_factory=Tracking)
    labeled_video: LabeledVideo = field(default_factory=LabeledVideo)


@dataclass(frozen=True)
class VideoTask:
    """One video of a job: its id, where the job reads it, and what intake counted."""

    id: int
    path: str
    frames: int | None = None
    fps: float | None = None


@dataclass(frozen=True)
class JobSpec:
    """What the daemon asks of one job; written by the daemon and read by the worker, both here."""

    job_id: int
    work_dir: str
    result: str
    model: ModelSpec
    videos: list[VideoTask]
    filter: Filtering = field(default_factory=Filtering)
    copy_videos: bool = False
    behavior_model: str | None = None
    qc_picture: bool = True   # the QC picture of every video (bench/bench_worker.py turns it off to compare)
    version: int = SPEC_VERSION

    def write(self, path: Path | str) -> None:
        write_json_atomic(path, dataclasses.asdict(self))

    @classmethod
    def read(cls, path: Path | str) -> "JobSpec":
        """Given a spec path, return the spec. Raise OSError if it cannot be read, SpecError if it is
        not a spec this version understands (the message says which field)."""
        try:
            data = read_json(path)
        except ValueError as error:
            raise SpecError(f"{path} is not JSON: {error}") from error
        return cls.from_dict(data)

    @classmethod
    def from_dict(cls, data: Any) -> "JobSpec":
        if not isinstance(data, dict):
            raise SpecError("a job spec is a JSON object")
        if data.get("version") != SPEC_VERSION:
            raise SpecError(f"spec version {data.get('version')!r}, this worker reads version {SPEC_VERSION}: "
                            "run the same dlcwatch version on both sides")
        return _build(cls, data, "spec")


def _build(kind: type, data: Any, where: str):
    """Given a spec dataclass, its JSON value and where it sits, return the instance; nested
    dataclasses and lists of them are built too. Raise SpecError naming a missing or unknown field."""
    if not isinstance(data, dict):
        raise SpecError(f"{where}: expected an object, found {type(data).__name__}")
    hints = typing.get_type_hints(kind)
    fields = {item.name: item for item in dataclasses.fields(kind)}
    unknown = sorted(set(data) - set(fields))
    if unknown:
        raise SpecError(f"{where}: unknown field(s) {', '.join(unknown)}")
    values = {}
    for name, item in fields.items():
        if name not in data:
            if item.default is dataclasses.MISSING and item.default_factory is dataclasses.MISSING:
                raise SpecError(f"{where}: missing field {name}")
            continue
        values[name] = _value(hints[name], data[name], f"{where}.{name}")
    return kind(**values)


def _value(hint, value: Any, where: str):
    if dataclasses.is_dataclass(hint):
        return _build(hint, value, where)
    if typing.get_origin(hint) is list:
        (item,) = typing.get_args(hint)
        if not isinstance(value, list):
            raise SpecError(f"{where}: expected a list")
        return [_value(item, one, f"{where}[{index}]") for index, one in enumerate(value)]
    return value


def read_json(path: str | Path) -> Any:
    with open(path, encoding="utf-8") as stream:
        return json.load(stream)


def read_result(path: str | Path) -> dict | None:
    """Given a result path, return the result, or None if the worker never wrote one."""
    try:
        result = read_json(path)
    except FileNotFoundError:
        return None
    except (OSError, ValueError):
        return None  # unreadable counts as no result: the job is retried
    return result if isinstance(result, dict) else None


def staged_name(video_id: int, source: str) -> str:
    """Given a video id and its source path, return the ASCII name it is analyzed under.

    DeepLabCut breaks on some characters in names; results are renamed back on delivery."""
    extension = "".join(c for c in Path(source).suffix.lower() if c.isascii() and (c.isalnum() or c == "."))
    return f"{video_folder_name(video_id)}{extension or '.mp4'}"


@dataclass(frozen=True)
class JobFolder:
    """Every file of one job, named here and nowhere else.

    jobs/job<id>/ holds its spec and log (a plain job), its result, a private view of the
    DeepLabCut project, and one folder per video for the staged input and DeepLabCut's outputs."""

    path: Path

    @classmethod
    def of(cls, jobs_dir: Path | str, job_id: int) -> "JobFolder":
        return cls(Path(jobs_dir) / f"job{job_id}")

    @property
    def spec(self) -> Path:
        return self.path / "spec.json"

    @property
    def log(self) -> Path:
        return self.path / "worker.log"

    @property
    def result(self) -> Path:
        return self.path / "result.json"

    @property
    def project(self) -> Path:
        return self.path / "project"

    def video(self, video_id: int) -> Path:
        return self.path / video_folder_name(video_id)


@dataclass(frozen=True)
class ArrayFolder:
    """Where the tasks of one job array keep their specs and logs: jobs/array<first job id>/, one per task index.

    Results stay in each task's own JobFolder. A task index may be the scheduler's placeholder
    (e.g. SLURM's ${SLURM_ARRAY_TASK_ID}), as the job script names the files."""

    path: Path

    @classmethod
    def of(cls, jobs_dir: Path | str, first_job_id: int) -> "ArrayFolder":
        return cls(Path(jobs_dir) / f"array{first_job_id}")

    def spec(self, task: int | str) -> Path:
        return self.path / f"spec-{task}.json"

    def log(self, task: int | str) -> Path:
        return self.path / f"task-{task}.log"

    @property
    def first_job_id(self) -> int:
        return int(self.path.name.removeprefix("array"))

    @staticmethod
    def task_of(spec_path: Path | str) -> int | None:
        """Given a job's spec path, return its task index if it is an array task's spec, else None."""
        match = re.fullmatch(r"spec-(\d+)\.json", Path(spec_path).name)
        return int(match[1]) if match else None


def video_folder_name(video_id: int) -> str:
    """Given a video id, return the name of its folder in a job (and in delivery's outgoing area)."""
    return f"video{video_id}"
