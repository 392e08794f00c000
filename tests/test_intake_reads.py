"""Whole-file reads outside the main loop: a multi-GB video made here with ffmpeg, read by a daemon
under a real notify socket; slow and hung storage through an injected reader (a slow or hung NFS
mount cannot be had here: the reader is the one stand-in, the rest is the real daemon)."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from conftest import write_config
from dlcwatch.config import load_config
from dlcwatch.daemon import Daemon
from dlcwatch.executors.local import _start_time
from dlcwatch.intake.admission import Intake, examine
from dlcwatch.reads import Read, ReadsBoard, format_gb
from dlcwatch.states import JobState
from dlcwatch.states import VideoState as S
from dlcwatch.store import Store
from dlcwatch.demo.synthetic import write_long_video, write_video


class SlowStream:
    """A file opened for reading that hands out `chunk` bytes per read after `delay_s`, and blocks
    for good once `hang_after` bytes went by (a hung NFS server) until `released` is set."""

    def __init__(self, path, *, chunk=256 * 1024, delay_s=0.0, hang_after=None, released=None):
        self._stream = open(path, "rb")
        self.chunk, self.delay_s, self.hang_after = chunk, delay_s, hang_after
        self.released = released or threading.Event()
        self.done = 0

    def read(self, size=-1):
        if self.hang_after is not None and self.done >= self.hang_after:
            self.released.wait()
        time.sleep(self.delay_s)
        data = self._stream.read(min(self.chunk, size if size > 0 else self.chunk))
        self.done += len(data)
        return data

    def __enter__(self):
        return self

    def __exit__(self, *exc_info):
        self._stream.close()


def only_video(store, field):
    """Return that field of the one video in the store, None while there is none."""
    videos = store.videos()
    return getattr(videos[0], field) if videos else None


def lab_config(tmp_path, **watch):
    model = tmp_path / "model" / "config.yaml"
    model.parent.mkdir(exist_ok=True)
    model.write_text("Task: none\n")
    return write_config(tmp_path, model, watch={"settle_s": 0.1, "rescan_interval_s": 0.2, **watch})


def test_examine_reads_the_file_once_and_counts_frames_where_the_container_has_no_count(tmp_path):
    # MP4 holds an exact count in its header; Matroska does not: its packets are counted from
    # the bytes the hash reads, through a pipe, still one read.
    mp4 = write_video(tmp_path / "a.mp4", frames=45, size=64)
    mkv = tmp_path / "a.mkv"
    subprocess.run(["ffmpeg", "-nostdin", "-v", "error", "-i", str(mp4), "-c", "copy", str(mkv)], check=True)
    for path in (mp4, mkv):
        read = Read(1, str(path), path.stat().st_size, 0)
        examined = examine(read)
        assert examined.info.frames == 45 and examined.full_reads == 1
        assert read.done_bytes == path.stat().st_size
    assert examine(Read(1, str(mkv), 0, 0)).sha256 == __import__("hashlib").sha256(mkv.read_bytes()).hexdigest()


def test_a_read_that_makes_progress_is_never_timed_out(tmp_path):
    config = load_config(lab_config(tmp_path, read_stall_s=1.0))
    video = write_video(tmp_path / "videos" / "slow.mp4", frames=300, size=128)
    chunk = video.stat().st_size // 12 + 1
    store = Store(config.state.database)
    # 12 reads 0.2 s apart: the read takes longer than read_stall_s, but makes progress.
    intake = Intake(config.watch, store, open_video=lambda path: SlowStream(path, chunk=chunk, delay_s=0.2))
    try:
        started = time.monotonic()
        now = 1000.0
        while only_video(store, "state") is not S.QUEUED:
            assert time.monotonic() - started < 60
            intake.tick(now)
            now += 0.5
            time.sleep(0.05)
        assert time.monotonic() - started > 1.5
        assert store.videos()[0].frames == 300
    finally:
        intake.close()
        store.close()


def test_a_hung_read_is_given_up_without_blocking_and_tried_again_later(tmp_path):
    config = load_config(lab_config(tmp_path, read_stall_s=1.0))
    video = write_video(tmp_path / "videos" / "hung.mp4", frames=200, size=128)
    store = Store(config.state.database)
    released = threading.Event()
    streams = []

    def open_video(path):
        # The first read hangs after 2 chunks, like an NFS server that stopped answering; later ones work.
        chunk = video.stat().st_size // 6
        streams.append(SlowStream(path, chunk=chunk, hang_after=2 * chunk if not streams else None,
                                  released=released))
        return streams[-1]

    intake = Intake(config.watch, store, open_video=open_video)
    board = ReadsBoard(store)
    published_paths = set()
    try:
        now, slowest_tick = 1000.0, 0.0
        deadline = time.monotonic() + 30
        while "no progress" not in (only_video(store, "reason") or ""):
            assert time.monotonic() < deadline, "the hung read was never given up"
            started = time.monotonic()
            intake.tick(now)
            slowest_tick = max(slowest_tick, time.monotonic() - started)
            board.publish([intake.reads], now)
            published_paths.update(read["path"] for read in store.reads())
            now += 0.1
            time.sleep(0.1)
        waiting = store.videos()[0]
        assert waiting.state is S.SETTLING and "hashing" in waiting.reason and "hanging" in waiting.reason
        assert slowest_tick < 0.5  # the loop never waited for the hung read
        assert published_paths == {str(video)}  # `dlcwatch status` saw the read while it hung
        assert waiting.not_before == pytest.approx(now - 0.1 + 1.0, abs=0.2)
        intake.tick(now)  # before not_before: no second read yet
        assert len(streams) == 1
        now += 2.0
        intake.tick(now)
        assert intake.reads.wait(30)
        intake.tick(now)
        assert store.videos()[0].state is S.QUEUED and len(streams) == 2
    finally:
        released.set()
        intake.close()
        store.close()


DAEMON_WITH_HUNG_READER = """
import sys, threading
sys.path.insert(0, {tests!r})
from test_intake_reads import SlowStream
from dlcwatch.config import load_config
from dlcwatch.daemon import Daemon

never = threading.Event()
chunk = int(sys.argv[2])
daemon = Daemon(load_config(sys.argv[1]), watch_events=False,
                open_video=lambda path: SlowStream(path, chunk=chunk, hang_after=chunk, released=never))
try:
    sys.exit(daemon.run())
finally:
    daemon.close()
"""


def test_status_shows_the_read_and_sigterm_does_not_wait_for_it(tmp_path):
    config_path = lab_config(tmp_path, read_stall_s=600.0)
    video = write_video(tmp_path / "videos" / "big one.mp4", frames=100, size=64)
    size = video.stat().st_size
    script = tmp_path / "daemon.py"
    script.write_text(DAEMON_WITH_HUNG_READER.format(tests=str(Path(__file__).parent)))
    daemon = subprocess.Popen([sys.executable, str(script), str(config_path), str(size // 4)],
                              stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 60
        shown = ""
        expected = f"hashing big one.mp4, {format_gb(size // 4)} of {format_gb(size)}"
        while expected not in shown:
            assert time.monotonic() < deadline, shown
            assert daemon.poll() is None
            time.sleep(0.3)
            shown = subprocess.run([sys.executable, "-m", "dlcwatch", "status", "--config", str(config_path)],
                                   capture_output=True, text=True, timeout=60).stdout
        assert "reading for" in shown
        asked = time.monotonic()
        daemon.send_signal(signal.SIGTERM)
        _, errors = daemon.communicate(timeout=10)
        assert time.monotonic() - asked < 5
    finally:
        if daemon.poll() is None:
            daemon.kill()
    assert daemon.returncode == 0, errors
    store = Store(tmp_path / "state" / "dlcwatch.db")
    try:
        assert store.reads() == []  # nothing claims to be read any more
        assert store.videos()[0].state is S.SETTLING  # read again on the next start
    finally:
        store.close()


class NotifySocket:
    """A datagram socket standing where systemd's notify socket would; records when each line came."""

    def __init__(self, path: Path):
        self.path = str(path)
        self.socket = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.socket.bind(self.path)
        self.socket.settimeout(0.1)
        self.lines: list[tuple[float, str]] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._listen, daemon=True)
        self._thread.start()

    def _listen(self):
        while not self._stop.is_set():
            try:
                data = self.socket.recv(65536)
            except socket.timeout:
                continue
            at = time.monotonic()
            self.lines.extend((at, line) for line in data.decode().splitlines())

    def close(self):
        self._stop.set()
        self._thread.join()
        self.socket.close()


STAND_IN_WORKER = """
import json, os, sys, time
# Stands in for a DeepLabCut worker (not needed to test the loop): waits for the go file, then
# writes an output and the result file as the worker (dlcwatch.worker.job) does, and exits 0.
go, result_path, output, video_id = sys.argv[1:]
while not os.path.exists(go):
    time.sleep(0.01)
with open(output, "w") as stream:
    stream.write("keypoints\\n")
entry = {"status": "ok", "frames": 10, "seconds": 0.1, "outputs": {"h5": output}, "staged_stem": "video" + video_id}
with open(result_path + ".tmp", "w") as stream:
    json.dump({"finished": True, "exit_code": 0, "videos": {video_id: entry}}, stream)
os.replace(result_path + ".tmp", result_path)
"""


def test_a_multi_gb_video_is_read_while_the_loop_pings_polls_and_delivers(tmp_path, monkeypatch):
    config = load_config(lab_config(tmp_path))
    (tmp_path / "incoming").mkdir()
    big, frames = write_long_video(tmp_path / "incoming" / "big.avi", 2.2)
    try:
        store = Store(config.state.database)
        small = store.add_video(str(tmp_path / "earlier" / "small.mp4"), str(tmp_path / "earlier"), "small.mp4",
                                size=1, mtime_ns=1, now=time.time())
        store.set_video_state(small.id, S.QUEUED, "queued", now=time.time())
        job = store.create_job("local", [small.id], now=time.time())
        job_dir = Path(config.staging.dir) / "jobs" / f"job{job.id}"
        job_dir.mkdir(parents=True)
        result_path, go = job_dir / "result.json", tmp_path / "go"
        worker = subprocess.Popen([sys.executable, "-c", STAND_IN_WORKER, str(go), str(result_path),
                                   str(job_dir / f"video{small.id}DLC_tiny.h5"), str(small.id)])
        store.update_job(job.id, spec_path=str(job_dir / "spec.json"), result_path=str(result_path),
                         log_path=str(job_dir / "worker.log"))
        store.set_job_state(job.id, JobState.SUBMITTED, "stand-in", executor_job_id=f"{worker.pid}:"
                            f"{_start_time(worker.pid)}", now=time.time())
        store.close()

        notify = NotifySocket(tmp_path / "notify.sock")
        monkeypatch.setenv("NOTIFY_SOCKET", notify.path)
        monkeypatch.setenv("WATCHDOG_USEC", "1000000")
        monkeypatch.setenv("WATCHDOG_PID", str(os.getpid()))
        daemon = Daemon(config, watch_events=False)
        daemon.executor.max_parallel = 0  # no new jobs: the admitted video stays queued (no model here)
        seen = {}

        def conduct():
            # Once the big video is being read: let the job end, and note when it is delivered.
            target = Path(config.watch.roots[0].path) / "big.avi"
            watching = Store(config.state.database, read_only=True)  # SQLite connections stay in their thread
            try:
                os.rename(big, target)
                deadline = time.monotonic() + 90
                while time.monotonic() < deadline and not daemon.intake.reads.in_progress():
                    time.sleep(0.005)
                go.touch()
                while time.monotonic() < deadline and watching.video(small.id).state is not S.DONE:
                    time.sleep(0.005)
                seen["delivered_while_reading"] = bool(daemon.intake.reads.in_progress())
                while time.monotonic() < deadline and watching.video_by_path(str(target)).state is S.SETTLING:
                    time.sleep(0.05)
            finally:
                watching.close()
                daemon.stop_requested = True

        conductor = threading.Thread(target=conduct)
        conductor.start()
        try:
            daemon.run()
        finally:
            conductor.join()
            daemon.close()
            notify.close()
            worker.wait()

        store = Store(config.state.database)
        try:
            admitted = store.video_by_path(str(Path(config.watch.roots[0].path) / "big.avi"))
            assert admitted.state is S.QUEUED and admitted.frames == frames
            assert store.video(small.id).state is S.DONE
            assert store.job(job.id).state is JobState.FINISHED
        finally:
            store.close()
        assert seen.get("delivered_while_reading"), "the delivery waited for the read"
        statuses = [line for _, line in notify.lines if line.startswith("STATUS=")]
        assert any("hashing big.avi (" in line for line in statuses), statuses[-5:]
        pings = [at for at, line in notify.lines if line == "WATCHDOG=1"]
        gaps = [later - earlier for earlier, later in zip(pings, pings[1:])]
        assert len(pings) > 5 and max(gaps) < 1.0, max(gaps)
    finally:
        for leftover in (big, Path(config.watch.roots[0].path) / "big.avi"):
            leftover.unlink(missing_ok=True)


def test_reads_on_one_file_system_wait_for_a_free_slot(tmp_path):
    from dlcwatch.reads import ReadPool

    release = threading.Event()
    started = []

    def work(read):
        started.append(read.key)
        release.wait(10)
        return read.key

    files = []
    for index in range(3):
        files.append(tmp_path / f"{index}.avi")
        files[-1].write_bytes(b"x")
    pool = ReadPool(work, per_filesystem=2, stall_s=60)
    for index, path in enumerate(files):
        pool.submit(index, str(path), 1)
    deadline = time.monotonic() + 5
    while len(started) < 2 and time.monotonic() < deadline:
        time.sleep(0.01)
    time.sleep(0.1)
    assert sorted(started) == [0, 1]  # the third waits: two readers on one file system
    assert [read.step for read in pool.in_progress()][-1] == "waiting to read"
    release.set()
    assert pool.wait(10)
    assert sorted(read.result for read in pool.collect()) == [0, 1, 2]
