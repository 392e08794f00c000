"""Helpers for tests that compare the worker's files with what DeepLabCut's analyze_videos writes.

`run_analyze_videos` runs a plain `deeplabcut.analyze_videos` on a list of videos in a process of
its own (any interpreter: the TensorFlow engine lives in its own environment);
`assert_same_outputs` compares one video's files: the same names, HDF keys, columns, index and
values, the same CSV, the same pickles (the meta pickle's run times aside)."""

from __future__ import annotations

import json
import pickle
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd

from dlcwatch.jobs.spec import SPEC_VERSION, JobFolder, staged_name, write_json_atomic

# The meta pickle's entries that say when and how long the analysis ran: never the same twice.
RUN_TIMES = {"start", "stop", "run_duration"}

ANALYZE_VIDEOS = """
import json, sys
import deeplabcut
config, destination, options, *videos = sys.argv[1:]
print(json.dumps({"scorer": str(deeplabcut.analyze_videos(config, videos, destfolder=destination,
                                                          **json.loads(options)))}))
"""


# The worker in a process of its own, with two spies: DeepLabCut's model builder (module, name) records
# AutoGraph's status each time it runs (None without TensorFlow), and analyze_videos refuses to run.
# It prints the job's exit code and the record.
SPIED_WORKER = """
import importlib, json, sys
import deeplabcut
from dlcwatch.jobs.spec import JobSpec
from dlcwatch.worker.job import run_job

spec, module_name, builder_name = sys.argv[1:]
module = importlib.import_module(module_name)
build = getattr(module, builder_name)
builds = []
def recording(*args, **kwargs):
    autograph = sys.modules.get("tensorflow.python.autograph.core.ag_ctx")
    builds.append(autograph.control_status_ctx().status.name if autograph else None)
    return build(*args, **kwargs)
def refuse(*args, **kwargs):
    raise AssertionError("the worker called analyze_videos")
setattr(module, builder_name, recording)
deeplabcut.analyze_videos = refuse
code = run_job(JobSpec.read(spec))
print(json.dumps({"exit_code": code, "builds": builds}))
"""


def run_spied_worker(spec: dict, folder: Path, builder: str, python: str = sys.executable,
                     env: dict | None = None) -> dict:
    """Run the worker on `spec` with the spies above on `builder` ("module:function"); return
    {"exit_code": ..., "builds": [AutoGraph's status at each build]}."""
    write_json_atomic(folder / "spec.json", spec)
    completed = subprocess.run([python, "-c", SPIED_WORKER, str(folder / "spec.json"), *builder.split(":")],
                               capture_output=True, text=True, timeout=900, env=env)
    assert completed.returncode == 0, completed.stdout[-2000:] + completed.stderr[-4000:]
    return json.loads(completed.stdout.strip().splitlines()[-1])


def run_analyze_videos(config: Path, videos: list[Path], destination: Path, python: str = sys.executable,
                       env: dict | None = None, **options) -> str:
    """Run deeplabcut.analyze_videos(config, videos, destfolder=destination, **options) with `python`;
    return the scorer it names."""
    completed = subprocess.run([python, "-c", ANALYZE_VIDEOS, str(config), str(destination), json.dumps(options),
                                *map(str, videos)], capture_output=True, text=True, timeout=900, env=env)
    assert completed.returncode == 0, completed.stdout[-2000:] + completed.stderr[-4000:]
    return json.loads(completed.stdout.strip().splitlines()[-1])["scorer"]


def spec_for(config: Path, work: Path, videos: list[dict], **model) -> dict:
    """Return a job spec for the worker: the model on the CPU, no labeled video, these videos."""
    return {"version": SPEC_VERSION, "job_id": 3, "work_dir": str(work), "result": str(work / "result.json"),
            "model": {"config": str(config), "shuffle": 1, "trainingsetindex": 0, "batch_size": 4,
                      "device": "cpu", "labeled_video": {"mode": "off"}, **model},
            "videos": videos}


def job_project(work: Path) -> Path:
    """Return the config.yaml of the job's private view of the project, which the worker analyzed with:
    DeepLabCut's metadata names the model's paths, and a reference analysis must name the same."""
    return JobFolder(work).project / "config.yaml"


def staged_copies(videos: dict[int, Path], folder: Path) -> list[Path]:
    """Link the videos into `folder` under the names the worker analyzes them under."""
    folder.mkdir(parents=True)
    links = []
    for video_id, path in videos.items():
        link = folder / staged_name(video_id, str(path))
        link.symlink_to(path)
        links.append(link)
    return links


def deeplabcut_files(folder: Path, stem: str) -> set[str]:
    """Return the names of DeepLabCut's files for the video `stem` in `folder` (they carry the scorer)."""
    return {path.name for path in folder.iterdir() if path.name.startswith(stem + "DLC") and path.is_file()}


def assert_same_outputs(ours: Path, theirs: Path, stem: str, rewritten: set[str] = frozenset()) -> set[str]:
    """Assert that the DeepLabCut files of video `stem` in `ours` are those in `theirs`, name for name
    and value for value; `rewritten` names files the worker rewrites on purpose (compared by the
    caller). Return the names compared."""
    names = deeplabcut_files(theirs, stem)
    assert names and deeplabcut_files(ours, stem) == names
    for name in sorted(names - set(rewritten)):
        if name.endswith(".h5"):
            assert_same_table_file(ours / name, theirs / name)
        elif name.endswith(".csv"):
            assert_same_csv(ours / name, theirs / name)
        elif name.endswith("_meta.pickle"):
            mine, reference = read_pickle(ours / name)["data"], read_pickle(theirs / name)["data"]
            assert set(mine) == set(reference), name
            for key in set(reference) - RUN_TIMES:
                assert_same(mine[key], reference[key], f"{name}: {key}")
            assert mine["run_duration"] > 0
        elif name.endswith(".pickle"):
            assert_same(read_pickle(ours / name), read_pickle(theirs / name), name)
        else:
            raise AssertionError(f"a DeepLabCut file of a kind this test does not know: {name}")
    return names


def assert_same_table_file(ours: Path, theirs: Path) -> None:
    with pd.HDFStore(ours, mode="r") as mine, pd.HDFStore(theirs, mode="r") as reference:
        assert mine.keys() == reference.keys() == ["/df_with_missing"], ours.name
    assert_same_table(pd.read_hdf(ours, key="df_with_missing"), pd.read_hdf(theirs, key="df_with_missing"))


def assert_same_table(mine: pd.DataFrame, reference: pd.DataFrame) -> None:
    assert list(mine.columns.names) == list(reference.columns.names)
    assert mine.columns.equals(reference.columns)
    assert mine.index.equals(reference.index)
    assert len(mine) > 0
    np.testing.assert_allclose(mine.to_numpy(dtype=float), reference.to_numpy(dtype=float), rtol=1e-6, atol=1e-6)


def assert_same_csv(ours: Path, theirs: Path) -> None:
    mine, reference = ours.read_text().splitlines(), theirs.read_text().splitlines()
    header = 4 if "individuals" in reference[1] else 3
    assert mine[:header] == reference[:header] and len(mine) == len(reference), ours.name
    assert_same_table(pd.read_csv(ours, header=list(range(header)), index_col=0),
                      pd.read_csv(theirs, header=list(range(header)), index_col=0))


def read_pickle(path: Path):
    with open(path, "rb") as stream:
        return pickle.load(stream)


def assert_same(mine, reference, where: str) -> None:
    """Assert two pickled values are the same, numbers and arrays within float precision."""
    if isinstance(reference, dict):
        assert isinstance(mine, dict) and set(mine) == set(reference), where
        for key in reference:
            assert_same(mine[key], reference[key], f"{where}/{key}")
    elif isinstance(reference, (list, tuple)):
        assert type(mine) is type(reference) and len(mine) == len(reference), where
        for index, (one, other) in enumerate(zip(mine, reference)):
            assert_same(one, other, f"{where}[{index}]")
    elif isinstance(reference, pd.Index):
        assert isinstance(mine, pd.Index) and mine.equals(reference) and mine.names == reference.names, where
    elif isinstance(reference, pd.DataFrame):
        assert_same_table(mine, reference)
    elif isinstance(reference, np.ndarray):
        assert isinstance(mine, np.ndarray) and mine.shape == reference.shape, where
        if reference.dtype.kind in "fiub":
            np.testing.assert_allclose(mine, reference, rtol=1e-6, atol=1e-6, err_msg=where)
        else:
            assert (mine == reference).all(), where
    elif isinstance(reference, (float, np.floating)):
        assert np.isclose(mine, reference, rtol=1e-6, atol=1e-6, equal_nan=True), where
    else:
        assert mine == reference, where
