"""Who can read the results: modes and group of every delivered file and folder, locally and over ssh.

The tests that create a group and users (groupadd/useradd, removed afterwards) and switch to them
(runuser) need root, as CI has; elsewhere they skip and say so."""

from __future__ import annotations

import contextlib
import grp
import hashlib
import os
import shutil
import stat
import subprocess
import sys
import sysconfig
import tempfile
import time
import uuid
from pathlib import Path

import pytest

from conftest import REPO, needs_dlc, write_config
from dlcwatch.delivery import results as delivery
from dlcwatch.config import ConfigError, load_config
from dlcwatch.files import Permissions, atomic_write, copy_verified, make_folder
from dlcwatch.jobs.spec import read_json
from dlcwatch.delivery.remote import RemoteDestination
from dlcwatch.store import Store
from dlcwatch.demo.synthetic import write_video

as_root = pytest.mark.skipif(os.geteuid() != 0 or shutil.which("useradd") is None or shutil.which("runuser") is None,
                             reason="creating a lab group and users needs root (and useradd, runuser)")


@contextlib.contextmanager
def umask(mask: int):
    old = os.umask(mask)
    try:
        yield
    finally:
        os.umask(old)


def mode(path: Path) -> int:
    return stat.S_IMODE(os.stat(path).st_mode)


def group_of(path: Path) -> str:
    return grp.getgrgid(os.stat(path).st_gid).gr_name


@pytest.fixture
def lab_group():
    """A lab group with two members, a service user and a student, made for this test and removed after."""
    tag = uuid.uuid4().hex[:6]
    group, service, student = f"dwlab{tag}", f"dwsvc{tag}", f"dwstu{tag}"
    home = Path(tempfile.mkdtemp(prefix="dlcwatch-lab-"))
    home.chmod(0o755)
    subprocess.run(["groupadd", group], check=True)
    try:
        for user in (service, student):
            subprocess.run(["useradd", "--no-create-home", "--home-dir", str(home / user), "--shell", "/bin/sh",
                            "--groups", group, user], check=True)
            (home / user).mkdir()
            shutil.chown(home / user, user, user)
        yield {"group": group, "service": service, "student": student, "home": home}
    finally:
        for user in (service, student):
            subprocess.run(["userdel", user], capture_output=True)
        subprocess.run(["groupdel", group], capture_output=True)
        shutil.rmtree(home, ignore_errors=True)


def python_for(user: str, home: Path) -> tuple[str, dict]:
    """Return an interpreter `user` may run with this test's packages, and its environment; skip if none.

    This environment's own interpreter may live where only root can go (pyenv under /root); the
    system's Python of the same version runs the same packages when they are put on its path."""
    env = {**os.environ, "HOME": str(home),
           "PYTHONPATH": os.pathsep.join([str(REPO), sysconfig.get_paths()["purelib"], sysconfig.get_paths()["platlib"]])}
    version = f"{sys.version_info.major}.{sys.version_info.minor}"
    reasons = []
    for python in (sys.executable, f"/usr/bin/python{version}", f"/usr/local/bin/python{version}"):
        probe = subprocess.run(["runuser", "-u", user, "--", python, "-c", "import dlcwatch, deeplabcut"],
                               capture_output=True, text=True, env=env)
        if probe.returncode == 0:
            return python, env
        reasons.append(f"{python}: {(probe.stderr.strip().splitlines() or ['?'])[-1]}")
    pytest.skip("no Python the service user may run has this environment's packages: " + "; ".join(reasons))


def can_read(user: str, path: Path) -> bool:
    """Return whether `user` can open and read the file (as that user, through the kernel's checks)."""
    return subprocess.run(["runuser", "-u", user, "--", "head", "-c", "1", str(path)],
                          capture_output=True).returncode == 0


def test_permissions_follow_the_umask_and_never_let_others_write():
    with umask(0o027):
        assert Permissions.from_umask() == Permissions(0o640, 0o750)
        assert Permissions.from_umask(group="lab") == Permissions(0o640, 0o2750, "lab")
    with umask(0o000):
        assert Permissions.from_umask() == Permissions(0o664, 0o775)
        assert Permissions.from_umask(file_mode=0o666, dir_mode=0o777) == Permissions(0o664, 0o775)


def test_every_written_file_gets_the_mode_not_mkstemps(tmp_path):
    with umask(0o022):
        with atomic_write(tmp_path / "a.json", binary=False) as stream:
            stream.write("{}")
        copy_verified(tmp_path / "a.json", tmp_path / "b.json")
        copy_verified(tmp_path / "a.json", tmp_path / "c.json", permissions=Permissions(0o600, 0o700))
    assert mode(tmp_path / "a.json") == 0o644 and mode(tmp_path / "b.json") == 0o644
    assert mode(tmp_path / "c.json") == 0o600
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.json", "b.json", "c.json"]  # no temporary left


@pytest.mark.parametrize("settings,expected", [
    ({"file_mode": "0666"}, "output.file_mode: 0666 would let anybody"),
    ({"dir_mode": "0640"}, "output.dir_mode: 0640 must let the service itself enter and read"),
    ({"file_mode": "rw-r-----"}, "output.file_mode: expected an octal mode"),
    ({"group": "no-such-group-here"}, "output.group: there is no group 'no-such-group-here'"),
])
def test_bad_output_modes_and_groups_are_refused_with_the_reason(lab, settings, expected, tmp_path):
    path = write_config(tmp_path, lab.model.config, output={"root": str(tmp_path / "results"), **settings})
    with pytest.raises(ConfigError, match=expected):
        load_config(path)


def test_modes_written_as_yaml_octal_or_strings_are_read_alike(lab, tmp_path):
    path = write_config(tmp_path, lab.model.config, output={"root": str(tmp_path / "results"), "dir_mode": "2750"})
    config = load_config(path)
    assert config.output.dir_mode == 0o2750 and config.output.file_mode is None
    path.write_text(path.read_text().replace("dir_mode: '2750'", "dir_mode: 0750"))  # YAML 1.1 reads 0750 as octal
    assert load_config(path).output.dir_mode == 0o750


def _analyzed_video(tmp_path: Path, relpath: str):
    """A store with one video whose job left outputs in staging; return (store, video, job, entry)."""
    store = Store(tmp_path / "state" / "db")
    video = store.add_video(str(tmp_path / "videos" / relpath), str(tmp_path / "videos"), relpath, size=3,
                            mtime_ns=1, now=1.0)
    job = store.create_job("local", [])
    outputs = tmp_path / "job" / f"video{video.id}"
    outputs.mkdir(parents=True)
    (outputs / f"video{video.id}DLC_resnet.h5").write_bytes(b"keypoints")
    (outputs / f"video{video.id}DLC_resnet_meta.pickle").write_bytes(b"meta")
    entry = {"staged_stem": f"video{video.id}", "scorer": "DLC_resnet",
             "outputs": {"keypoints_h5": str(outputs / f"video{video.id}DLC_resnet.h5"),
                         "meta": str(outputs / f"video{video.id}DLC_resnet_meta.pickle")}}
    return store, store.video(video.id), job, entry


@as_root
def test_local_delivery_gives_every_file_and_folder_the_lab_group(lab_group, tmp_path):
    store, video, job, entry = _analyzed_video(tmp_path, "day 1/cage 2/mouse.mp4")
    results = tmp_path / "results"
    results.mkdir()
    results.chmod(0o755)
    with umask(0o027):
        permissions = Permissions.from_umask(group=lab_group["group"])
    folder = Path(delivery.deliver(video, job, entry, {}, str(results), {}, permissions=permissions))
    assert folder == results / "day 1" / "cage 2" / "mouse"
    for created in (results / "day 1", results / "day 1" / "cage 2", folder):
        assert (mode(created), group_of(created)) == (0o2750, lab_group["group"]), created
    files = sorted(folder.iterdir())
    assert [p.name for p in files] == ["manifest.json", "mouseDLC_resnet.h5", "mouseDLC_resnet_meta.pickle"]
    for path in files:
        assert (mode(path), group_of(path)) == (0o640, lab_group["group"]), path
    assert mode(results) == 0o755  # the root was there before: the lab's, left as it was
    store.close()


@as_root
def test_remote_delivery_sets_and_checks_modes_and_group_on_the_far_side(lab_group, ssh_host, tmp_path):
    # Names sha256sum escapes in its output (a backslash, a newline): verified all the same.
    name = "rat\\01\nb"
    local = tmp_path / "outgoing" / name
    local.mkdir(parents=True)
    (local / f"{name}DLC.h5").write_bytes(b"keypoints")
    (local / "manifest.json").write_text('{"source": {"sha256": "abc"}}')
    expected = {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in local.iterdir()}
    far = lab_group["home"] / "far side"
    with umask(0o027):
        permissions = Permissions.from_umask(group=lab_group["group"])
    remote = RemoteDestination(ssh_host, str(far))
    remote.publish(local, f"day 1/{name}", expected, "abc", permissions)
    final = far / "day 1" / name
    for folder in (far, far / "day 1", final):
        assert (mode(folder), group_of(folder)) == (0o2750, lab_group["group"]), folder
    assert sorted(p.name for p in final.iterdir()) == sorted(expected)
    for path in final.iterdir():
        assert (mode(path), group_of(path)) == (0o640, lab_group["group"]), path
        assert can_read(lab_group["student"], path), path


@as_root
def test_a_group_the_far_side_lacks_is_an_error_and_nothing_is_delivered(ssh_host, tmp_path):
    local = tmp_path / "outgoing" / "v"
    local.mkdir(parents=True)
    (local / "manifest.json").write_text("{}")
    expected = {"manifest.json": hashlib.sha256(b"{}").hexdigest()}
    remote = RemoteDestination(ssh_host, str(tmp_path / "far"))
    with pytest.raises(OSError, match="no-such-group-here"):
        remote.publish(local, "v", expected, None, Permissions(0o640, 0o2750, "no-such-group-here"))
    assert not (tmp_path / "far" / "v").exists()


@needs_dlc
@as_root
def test_a_service_user_delivers_results_the_lab_group_can_open(lab_group, tiny_model, tmp_path):
    """The lab's world: dlcwatch runs as its own user under the unit's UMask=0027 with output.group;
    a student in that group opens every result, and nothing in staging or the state database."""
    base = lab_group["home"]
    service, student, group = lab_group["service"], lab_group["student"], lab_group["group"]
    model = base / "model"
    shutil.copytree(tiny_model.parent, model)
    videos = base / "videos"
    write_video(videos / "souris été.mp4", frames=30)
    work = base / service / "work"  # the service's own: state, staging
    results = base / "results"
    for folder in (work, results):
        folder.mkdir(parents=True)
        shutil.chown(folder, service, group)
    subprocess.run(["chmod", "-R", "a+rX", str(model), str(videos)], check=True)
    config_path = write_config(work, model / tiny_model.name, watch={"settle_s": 0.2},
                               output={"root": str(results), "group": group},
                               state={"database": str(work / "state" / "dlcwatch.db")},
                               staging={"dir": str(work / "staging")})
    config_text = config_path.read_text().replace(str(work / "videos"), str(videos))
    config_path.write_text(config_text)
    shutil.chown(config_path, service, group)
    python, env = python_for(service, base / service)
    completed = subprocess.run(
        ["runuser", "-u", service, "--", "sh", "-c", 'umask 0027 && exec "$0" -m dlcwatch run --until-idle --config "$1"',
         python, str(config_path)], capture_output=True, text=True, timeout=600, env=env)
    assert completed.returncode == 0, completed.stderr[-3000:]
    [manifest_path] = results.glob("**/manifest.json")
    manifest = read_json(manifest_path)
    assert manifest_path.parent == results / "souris été"
    delivered = sorted(manifest_path.parent.iterdir())
    assert len(delivered) == len(manifest["outputs"]) + 1
    for path in delivered:
        assert (mode(path), group_of(path)) == (0o640, group), path
        assert can_read(student, path), path
    assert (mode(manifest_path.parent), group_of(manifest_path.parent)) == (0o2750, group)
    # What the student must not see: the service's staging and state.
    assert mode(work / "staging") == 0o700 and mode(work / "state") == 0o700
    assert mode(work / "state" / "dlcwatch.db") == 0o600
    assert not can_read(student, work / "state" / "dlcwatch.db")
    staged = [p for p in (work / "staging").rglob("*") if p.is_file()]
    assert staged and not any(can_read(student, path) for path in staged)
