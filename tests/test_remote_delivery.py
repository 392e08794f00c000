"""Results delivered to another machine over ssh + rsync: a real sshd on 127.0.0.1."""

import hashlib
import time

import pytest

import sshd
from conftest import needs_dlc, write_config
from dlcwatch.config import load_config
from dlcwatch.daemon import Daemon
from dlcwatch.errors import TransferError
from dlcwatch.jobs.spec import read_json
from dlcwatch.delivery.remote import RemoteDestination
from dlcwatch.schema import parse_remote
from dlcwatch.transport.ssh import SshHost
from dlcwatch.states import VideoState as S
from dlcwatch.demo.synthetic import write_video


def test_remote_roots_are_recognised():
    assert parse_remote("lab@nas:/data/results/") == ("lab@nas", "/data/results")
    assert parse_remote("nas.example.edu:/x") == ("nas.example.edu", "/x")
    assert parse_remote("/data/results") is None
    assert parse_remote("relative:folder") is None  # not absolute on the far side: a local name


@pytest.fixture
def ssh_server(tmp_path):
    with sshd.serving(tmp_path / "sshd", start=False) as server:
        yield server


def destination(server, root, control, key=None):
    host = SshHost(f"{server.user}@127.0.0.1", control, identity_file=str(key or server.client_key), port=server.port)
    return RemoteDestination(host, str(root))


def test_publish_verifies_and_renames_into_place(ssh_server, tmp_path):
    ssh_server.start()
    local = tmp_path / "outgoing" / "rat $(touch x); 'q'"
    local.mkdir(parents=True)
    (local / "rat $(touch x); 'q'DLC.h5").write_bytes(b"keypoints")
    (local / "manifest.json").write_text('{"source": {"sha256": "abc"}}')
    expected = {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in local.iterdir()}
    remote = destination(ssh_server, tmp_path / "far side", tmp_path / "control")
    where = remote.publish(local, "day 1/rat $(touch x); 'q'", expected, "abc")
    final = tmp_path / "far side" / "day 1" / "rat $(touch x); 'q'"
    assert where.endswith(str(final))
    assert sorted(p.name for p in final.iterdir()) == sorted(expected)
    assert not list((tmp_path / "far side" / "day 1").glob(".*incoming"))
    # Results of another video at the same place are kept aside, never overwritten.
    (local / "manifest.json").write_text('{"source": {"sha256": "other"}}')
    expected["manifest.json"] = hashlib.sha256((local / "manifest.json").read_bytes()).hexdigest()
    remote.publish(local, "day 1/rat $(touch x); 'q'", expected, "other")
    assert len(list((tmp_path / "far side" / "day 1").glob("rat*.replaced-*"))) == 1


def test_a_refused_login_is_a_clear_transfer_error(ssh_server, tmp_path):
    ssh_server.start()
    remote = destination(ssh_server, tmp_path / "x", tmp_path / "control", key=tmp_path / "no-such-key")
    with pytest.raises(TransferError, match="ssh .* failed"):
        remote.run("true")


@needs_dlc
def test_results_wait_in_staging_until_the_far_side_answers(ssh_server, tiny_model, tmp_path):
    far = tmp_path / "far side"
    config_path = write_config(
        tmp_path, tiny_model, watch={"settle_s": 0.2},
        output={"root": f"{ssh_server.user}@127.0.0.1:{far}",
                "ssh": {"identity_file": str(ssh_server.client_key), "port": ssh_server.port,
                        "options": ["ConnectTimeout=3"]}})
    source = write_video(tmp_path / "videos" / "souris été.mp4", frames=30)
    daemon = Daemon(load_config(config_path), watch_events=False)
    daemon.start()
    try:
        deadline = time.monotonic() + 300
        while not daemon.store.conditions() and time.monotonic() < deadline:  # sshd is not running yet
            daemon.tick(time.time())
            time.sleep(0.2)
        [video] = daemon.store.videos()
        assert video.state is S.ANALYZED and "cannot deliver" in daemon.store.conditions()[0]["message"]
        ssh_server.start()
        while daemon.store.video(video.id).state is not S.DONE and time.monotonic() < deadline:
            daemon.tick(time.time() + 7200)
            time.sleep(0.1)
        video = daemon.store.video(video.id)
        assert video.state is S.DONE and daemon.store.conditions() == []
        assert video.output_dir == f"{ssh_server.user}@127.0.0.1:{far}/souris été"
        manifest = read_json(far / "souris été" / "manifest.json")
        assert manifest["source"]["sha256"] == hashlib.sha256(source.read_bytes()).hexdigest()
        for entry in manifest["outputs"].values():
            assert hashlib.sha256((far / "souris été" / entry["file"]).read_bytes()).hexdigest() == entry["sha256"]
        assert not list((tmp_path / "staging" / "outgoing").glob("*"))
    finally:
        daemon.close()
