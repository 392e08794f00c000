"""The cluster's scratch folder over ssh + rsync, against a real sshd on 127.0.0.1 (the "cluster"
is this machine, its scratch folder a temporary one)."""

import hashlib
import os
import subprocess

import pytest

from dlcwatch.transport.scratch import ClusterScratch
from dlcwatch.errors import TransferError


@pytest.fixture
def scratch(ssh_host, tmp_path):
    return ClusterScratch(ssh_host, str(tmp_path / "cluster scratch ü"), tmp_path / "local jobs")


@pytest.fixture
def commands(monkeypatch):
    """Every local command run from now on, as argv lists (counted, then run as usual)."""
    seen, real_run = [], subprocess.run

    def counting_run(argv, *args, **kwargs):
        seen.append(list(argv))
        return real_run(argv, *args, **kwargs)
    monkeypatch.setattr(subprocess, "run", counting_run)
    return seen


def sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def video(tmp_path, name="souris été $(touch x); 'q'.MP4", size=300_000):
    path = tmp_path / "lab videos" / name
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(os.urandom(size))
    return path


# ---------------------------------------------------------------------- videos

def test_stage_video_copies_and_verifies_once(scratch, tmp_path, commands):
    source = video(tmp_path)
    remote = scratch.stage_video(source, 7, sha(source.read_bytes()))
    assert remote == f"{tmp_path}/cluster scratch ü/videos/video7.mp4" == scratch.remote_video_path(7, str(source))
    assert open(remote, "rb").read() == source.read_bytes()
    commands.clear()
    assert scratch.stage_video(source, 7, sha(source.read_bytes()).upper()) == remote
    assert not [argv for argv in commands if argv[0] == "rsync"]  # present and right: verified, not re-sent
    assert not (tmp_path / "x").exists()


def test_a_damaged_remote_copy_is_sent_again(scratch, tmp_path):
    source = video(tmp_path)
    remote = scratch.stage_video(source, 1, sha(source.read_bytes()))
    times = os.stat(remote)
    with open(remote, "r+b") as handle:  # same size, same time: rsync's quick check would miss it
        handle.seek(1000)
        handle.write(b"\0" * 100)
    os.utime(remote, ns=(times.st_atime_ns, times.st_mtime_ns))
    scratch.stage_video(source, 1, sha(source.read_bytes()))
    assert open(remote, "rb").read() == source.read_bytes()


def test_an_interrupted_copy_is_resumed(scratch, tmp_path):
    source = video(tmp_path, "rat.avi")
    partial = tmp_path / "cluster scratch ü" / "videos" / ".partial" / "video3.avi"
    partial.parent.mkdir(parents=True)
    partial.write_bytes(source.read_bytes()[:150_000])
    remote = scratch.stage_video(source, 3, sha(source.read_bytes()))
    assert open(remote, "rb").read() == source.read_bytes()
    assert not partial.exists()


def test_a_wrong_sha256_raises_and_leaves_no_copy(scratch, tmp_path):
    source = video(tmp_path)
    with pytest.raises(TransferError, match="recorded as 000000000000….*removed"):
        scratch.stage_video(source, 2, "0" * 64)
    assert not os.path.exists(scratch.remote_video_path(2, str(source)))
    with pytest.raises(TransferError, match="gone"):
        scratch.stage_video(tmp_path / "nothing.mp4", 2, "0" * 64)


def test_remove_videos(scratch, tmp_path):
    first, second = video(tmp_path, "a.mp4", 1000), video(tmp_path, "b b.mp4", 2000)
    staged = [scratch.stage_video(path, number, sha(path.read_bytes()))
              for number, path in enumerate([first, second])]
    for outside in ["/etc/passwd", f"{scratch.videos}/../jobs/x", f"{scratch.videos}/sub/x", f"{scratch.videos}/",
                    f"{scratch.videos}/.partial", scratch.videos, "relative/videos/x"]:
        with pytest.raises(ValueError):
            scratch.remove_videos([staged[0], outside])
    assert all(os.path.exists(path) for path in staged)
    scratch.remove_videos([*staged, f"{scratch.videos}/video99.mp4"])
    assert not any(os.path.exists(path) for path in staged)
    scratch.remove_videos([])


# ---------------------------------------------------------------------- model

def test_sync_model_mirrors_the_project_without_its_big_folders(scratch, tmp_path):
    project = tmp_path / "lab share" / "mice-Ana-2024 ü"
    files = {"config.yaml": b"Task: mice\n", "dlc-models/iteration-0/train/snapshot-100.pt": b"weights",
             "training-datasets/iteration-0/meta.pickle": b"meta", "videos/day1.mp4": b"big video",
             "labeled-data/day1/img001.png": b"png", "evaluation-results-pytorch/iteration-0/x.csv": b"csv",
             "dlc-models/iteration-0/test/old.pt": b"stale"}
    for name, data in files.items():
        (project / name).parent.mkdir(parents=True, exist_ok=True)
        (project / name).write_bytes(data)
    remote_config = scratch.sync_model(project / "config.yaml")
    far = tmp_path / "cluster scratch ü" / "model" / project.name
    assert remote_config == f"{far}/config.yaml"
    copied = {str(path.relative_to(far)) for path in far.rglob("*") if path.is_file()}
    assert copied == {"config.yaml", "dlc-models/iteration-0/train/snapshot-100.pt",
                      "training-datasets/iteration-0/meta.pickle", "dlc-models/iteration-0/test/old.pt"}
    (project / "dlc-models/iteration-0/test/old.pt").unlink()
    (project / "config.yaml").write_bytes(b"Task: mice, retrained\n")
    scratch.sync_model(project / "config.yaml")
    assert not (far / "dlc-models/iteration-0/test/old.pt").exists()
    assert (far / "config.yaml").read_bytes() == b"Task: mice, retrained\n"
    with pytest.raises(TransferError, match="not a file"):
        scratch.sync_model(project / "missing.yaml")


def test_sync_file_brings_the_sidecar_along(scratch, tmp_path):
    model = tmp_path / "behavior" / "mouse grooming.joblib"
    model.parent.mkdir()
    model.write_bytes(b"pickle")
    remote = scratch.sync_file(model, "behavior-3.joblib")
    assert remote == f"{scratch.model}/behavior-3.joblib" and open(remote, "rb").read() == b"pickle"
    assert not os.path.exists(f"{scratch.model}/behavior-3.json")
    model.with_suffix(".json").write_text('{"classes": 3}')
    model.write_bytes(b"pickle2")  # same size: still sent
    scratch.sync_file(model, "behavior-3.joblib")
    assert open(remote, "rb").read() == b"pickle2"
    assert open(f"{scratch.model}/behavior-3.json").read() == '{"classes": 3}'
    with pytest.raises(ValueError):
        scratch.sync_file(model, "../escape.joblib")


# ---------------------------------------------------------------------- jobs

def write(path, text="x"):
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)


def test_push_and_pull_round_trip_leaves_out_inputs_and_project(scratch, tmp_path):
    local = scratch.local_jobs_dir
    write(local / "job1" / "spec.json", '{"job_id": 1}')
    write(local / "array4 ü" / "spec-0.json", '{"job_id": 4}')
    scratch.push_jobs(["job1", "array4 ü"])
    far = tmp_path / "cluster scratch ü" / "jobs"
    assert (far / "job1" / "spec.json").read_text() == '{"job_id": 1}'
    assert (far / "array4 ü" / "spec-0.json").exists()
    # What a worker leaves on the cluster (see dlcwatch/worker.py analyze_one).
    write(far / "job1" / "result.json", '{"exit_code": 0}')
    write(far / "job1" / "worker.log", "log")
    write(far / "job1" / "project" / "config.yaml")
    write(far / "job1" / "video5" / "output" / "video5DLC_resnet50.h5", "keypoints")
    write(far / "job1" / "video5" / "output" / "video5_qc.png", "picture")
    write(far / "job1" / "video6" / "video6.avi", "copied input")
    (far / "job1" / "video5" / "video5.mp4").symlink_to(far.parent / "videos" / "video5.mp4")
    write(far / "array4 ü" / "task-0.log", "task log")
    write(far / "job2" / "result.json", "not asked for")
    write(local / "job1" / "local only.txt", "kept")
    scratch.pull_jobs(["job1", "array4 ü", "job404"])
    pulled = {str(path.relative_to(local)) for path in local.rglob("*") if not path.is_dir()}
    assert pulled == {"job1/spec.json", "job1/result.json", "job1/worker.log", "job1/local only.txt",
                      "job1/video5/output/video5DLC_resnet50.h5", "job1/video5/output/video5_qc.png",
                      "array4 ü/spec-0.json", "array4 ü/task-0.log"}
    assert (local / "job1" / "result.json").read_text() == '{"exit_code": 0}'
    scratch.remove_jobs(["job1", "job404"])
    assert not (far / "job1").exists() and (far / "job2").exists()


def test_pull_of_many_jobs_is_one_rsync(scratch, tmp_path, commands):
    far = tmp_path / "cluster scratch ü" / "jobs"
    names = [f"job{number}" for number in range(50)]
    for name in names[::2]:
        write(far / name / "result.json", name)
    commands.clear()
    scratch.pull_jobs(names)
    assert len(commands) == 1 and commands[0][0] == "rsync"
    assert sorted(path.name for path in scratch.local_jobs_dir.iterdir()) == sorted(names[::2])


def test_pull_before_anything_was_sent_is_fine(scratch):
    scratch.pull_jobs(["job1"])
    assert list(scratch.local_jobs_dir.iterdir()) == []


def test_bad_names_and_roots_are_refused(scratch, tmp_path):
    for bad in ["", ".", "..", "a/b", "../x", "job*", "job[1]", "a\nb"]:
        for method in (scratch.push_jobs, scratch.pull_jobs, scratch.remove_jobs):
            with pytest.raises(ValueError):
                method(["job1", bad])
    with pytest.raises(TransferError, match="no folder job9"):
        scratch.push_jobs(["job9"])
    for root in ["relative/scratch", "/", "//", ""]:
        with pytest.raises(ValueError):
            ClusterScratch(scratch.ssh, root, tmp_path)
