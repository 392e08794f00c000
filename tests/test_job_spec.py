"""The job spec: one typed description written by the daemon and read by the worker, both through
dlcwatch.jobs.spec, with a clear error for a spec this version cannot use."""

from __future__ import annotations

import json

import pytest

from dlcwatch.jobs.spec import (SPEC_VERSION, Filtering, JobSpec, LabeledVideo, ModelSpec, SpecError, Tracking,
                                VideoTask)


def a_spec() -> JobSpec:
    return JobSpec(job_id=7, work_dir="/jobs/job7", result="/jobs/job7/result.json",
                   model=ModelSpec(config="/models/lab/config.yaml", shuffle=2, batch_size=16, device="cpu",
                                   multi_animal=Tracking(auto_track=False, tracker="box", animals=3),
                                   labeled_video=LabeledVideo("clip", 5.0)),
                   videos=[VideoTask(1, "/lab/été.mp4", 300, 30.0), VideoTask(2, "/lab/b.avi", None, None)],
                   filter=Filtering(True, "median", 7), behavior_model="/models/b.joblib")


def test_what_the_daemon_writes_the_worker_reads_back_whole(tmp_path):
    path = tmp_path / "spec.json"
    a_spec().write(path)
    assert JobSpec.read(path) == a_spec()
    written = json.loads(path.read_text())
    assert written["version"] == SPEC_VERSION and written["videos"][0]["path"] == "/lab/été.mp4"
    assert written["model"]["multi_animal"] == {"auto_track": False, "tracker": "box", "animals": 3}


def test_options_left_out_take_the_defaults(tmp_path):
    minimal = {"version": SPEC_VERSION, "job_id": 1, "work_dir": "/w", "result": "/w/r.json",
               "model": {"config": "/m/config.yaml"}, "videos": [{"id": 3, "path": "/v.mp4"}]}
    spec = JobSpec.from_dict(minimal)
    assert spec.model.labeled_video == LabeledVideo() and spec.filter.enabled is False
    assert spec.videos == [VideoTask(3, "/v.mp4")]


@pytest.mark.parametrize("change, message", [
    (lambda d: d.update(version=SPEC_VERSION + 1), "same dlcwatch version on both sides"),
    (lambda d: d["model"].pop("config"), "spec.model: missing field config"),
    (lambda d: d["videos"][1].update(colour="red"), r"spec.videos\[1\]: unknown field\(s\) colour"),
    (lambda d: d.update(videos={"id": 1}), "spec.videos: expected a list"),
    (lambda d: d["model"].update(multi_animal=[]), "spec.model.multi_animal: expected an object"),
])
def test_a_spec_this_version_cannot_use_says_which_field(tmp_path, change, message):
    path = tmp_path / "spec.json"
    a_spec().write(path)
    data = json.loads(path.read_text())
    change(data)
    path.write_text(json.dumps(data))
    with pytest.raises(SpecError, match=message):
        JobSpec.read(path)


def test_a_damaged_spec_file_is_a_spec_error_and_a_missing_one_an_os_error(tmp_path):
    (tmp_path / "spec.json").write_text('{"version": 1, "job_')
    with pytest.raises(SpecError, match="not JSON"):
        JobSpec.read(tmp_path / "spec.json")
    with pytest.raises(OSError):
        JobSpec.read(tmp_path / "none.json")
