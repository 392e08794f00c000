"""Intake under a lab's load: admitting multi-GB videos, and rescanning 10,000-100,000 known files.

Part 1 (--videos): for each size, make an MJPEG .avi (1280x1024, 200 fps) and measure
  - by hand: `sha256sum FILE` then `ffprobe -count_packets` (the baseline, in the same run);
  - the old intake: ffprobe -count_packets, then sha256 in Python (two full reads);
  - the new intake's one read: the header frame count + sha256 (examine());
  - the pipe alternative: sha256 while ffprobe counts packets from a pipe (what MKV/TS get);
  - the longest gap between watchdog pings of a real daemon (tick 0.2 s) while it admits the file.
  The file is deleted right after its size is measured.
Part 2 (--scan): N known videos in N/100 folders, in a real SQLite store; CPU, stat calls and
  peak Python memory of a no-change poll and of a full rescan, and of the old scan (list every
  folder, stat every file, one SQL lookup per file) as the baseline in the same run.

Timings on a shared machine are noisy: compare ratios within one run, not seconds across runs.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import threading
import time
import tracemalloc
from pathlib import Path

from dlcwatch.intake.fingerprint import sha256_file
from dlcwatch.config import load_config
from dlcwatch.daemon import Daemon
from dlcwatch.intake.scan import FileSeen, is_candidate
from dlcwatch.intake.admission import Intake, _hash_and_count, examine, open_for_reading
from dlcwatch.intake.probe import probe_video
from dlcwatch.reads import Read
from dlcwatch.states import VideoState
from dlcwatch.store import Store
from dlcwatch.demo.synthetic import write_long_video

import yaml


def wall(function) -> tuple[float, object]:
    started = time.perf_counter()
    result = function()
    return time.perf_counter() - started, result


def by_hand(path: Path) -> float:
    started = time.perf_counter()
    subprocess.run(["sha256sum", str(path)], check=True, capture_output=True)
    subprocess.run(["ffprobe", "-v", "error", "-select_streams", "v:0", "-count_packets", "-show_entries",
                    "stream=nb_read_packets", "-of", "json", str(path)], check=True, capture_output=True)
    return time.perf_counter() - started


def lab(folder: Path) -> Path:
    for name in ("videos", "model"):
        (folder / name).mkdir(parents=True, exist_ok=True)
    (folder / "model" / "config.yaml").write_text("Task: none\n")
    config = {"watch": {"roots": [{"path": str(folder / "videos")}], "settle_s": 0.1, "rescan_interval_s": 0.2},
              "state": {"database": str(folder / "state" / "db.sqlite")}, "output": {"root": str(folder / "results")},
              "staging": {"dir": str(folder / "staging")},
              "model": {"config": str(folder / "model" / "config.yaml"), "device": "cpu"},
              "executor": {"kind": "local"}, "daemon": {"tick_s": 0.2}}
    path = folder / "config.yaml"
    path.write_text(yaml.safe_dump(config))
    return path


def longest_gap_while_admitting(video: Path, folder: Path) -> tuple[float, float]:
    """Drop the video into a daemon under a notify socket; return (longest ping gap while it
    was read, seconds from drop to queued)."""
    config = load_config(lab(folder))
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    listener.bind(str(folder / "notify.sock"))
    listener.settimeout(0.1)
    pings: list[float] = []
    stop = threading.Event()

    def listen():
        while not stop.is_set():
            try:
                if b"WATCHDOG=1" in listener.recv(65536):
                    pings.append(time.monotonic())
            except socket.timeout:
                pass

    os.environ.update(NOTIFY_SOCKET=str(folder / "notify.sock"), WATCHDOG_USEC="2000000",
                      WATCHDOG_PID=str(os.getpid()))
    daemon = Daemon(config, watch_events=False)
    target = Path(config.watch.roots[0].path) / video.name
    times = {}

    def conduct():
        watching = Store(config.state.database, read_only=True)
        try:
            time.sleep(1.0)
            times["dropped"] = time.monotonic()
            os.rename(video, target)
            while True:
                found = watching.video_by_path(str(target))
                if found is not None and found.state is not VideoState.SETTLING:
                    times["queued"] = time.monotonic()
                    break
                time.sleep(0.05)
        finally:
            watching.close()
            daemon.stop_requested = True

    threads = [threading.Thread(target=listen), threading.Thread(target=conduct)]
    for thread in threads:
        thread.start()
    try:
        daemon.run()
    finally:
        daemon.close()
        stop.set()
        for thread in threads:
            thread.join()
        listener.close()
        os.rename(target, video)
        for name in ("NOTIFY_SOCKET", "WATCHDOG_USEC", "WATCHDOG_PID"):
            os.environ.pop(name, None)
    during = [at for at in pings if times["dropped"] - 0.5 <= at <= times["queued"] + 0.5]
    gaps = [later - earlier for earlier, later in zip(during, during[1:])]
    return max(gaps), times["queued"] - times["dropped"]


def bench_video(gigabytes: float, folder: Path) -> dict:
    made, (path, frames) = wall(lambda: write_long_video(folder / f"bench-{gigabytes:g}GB.avi", gigabytes))
    try:
        size = path.stat().st_size
        subprocess.run(["cat", str(path)], stdout=subprocess.DEVNULL, check=True)  # same cache state for all
        row = {"gigabytes": round(size / 1e9, 2), "frames": frames, "made_s": round(made, 1)}
        row["by_hand_s"] = by_hand(path)
        row["old_two_reads_s"], _ = wall(lambda: (probe_video(path), sha256_file(path)))
        read = Read(1, str(path), size, 0)
        row["new_one_read_s"], examined = wall(lambda: examine(read))
        assert examined.info.frames == frames and examined.full_reads == 1, examined
        row["pipe_count_s"], (_, counted) = wall(lambda: _hash_and_count(Read(2, str(path), size, 0), open_for_reading))
        assert counted == frames, counted
        row["longest_loop_gap_s"], row["daemon_admission_s"] = longest_gap_while_admitting(path, folder / "lab")
        row["ratio_new_to_by_hand"] = row["new_one_read_s"] / row["by_hand_s"]
        row["ratio_daemon_to_by_hand"] = row["daemon_admission_s"] / row["by_hand_s"]
        return {key: round(value, 3) if isinstance(value, float) else value for key, value in row.items()}
    finally:
        path.unlink(missing_ok=True)
        shutil.rmtree(folder / "lab", ignore_errors=True)


def known_tree(folder: Path, files: int, per_folder: int = 100) -> tuple[Store, object]:
    """Make `files` empty .mp4 files in files/per_folder folders, known as done in a real store."""
    config = load_config(lab(folder))
    root = Path(config.watch.roots[0].path)
    store = Store(config.state.database)
    rows = []
    for index in range(files):
        sub = root / f"session{index // per_folder:04d}"
        if index % per_folder == 0:
            sub.mkdir()
        path = sub / f"mouse{index:06d}.mp4"
        path.touch()
        stat = path.stat()
        rows.append((str(path), str(root), path.relative_to(root).as_posix(), VideoState.DONE.value, stat.st_size,
                     stat.st_mtime_ns, time.time(), time.time()))
    with store.transaction() as db:
        db.executemany("INSERT INTO videos (path, root, relpath, state, size, mtime_ns, created, updated) "
                       "VALUES (?, ?, ?, ?, ?, ?, ?, ?)", rows)
    old = time.time() - 3600  # folders written an hour ago: past the racy window
    for sub in [root, *root.iterdir()]:
        os.utime(sub, (old, old))
    return store, config


def measure(function, again=None) -> tuple[float, int]:
    """Return (CPU seconds of function(), peak Python memory of again() or a second function()):
    tracemalloc slows Python down several times, so time and memory come from separate calls."""
    started = time.process_time()
    function()
    cpu = time.process_time() - started
    tracemalloc.start()
    (again or function)()
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    return cpu, peak


def old_scan(store: Store, root) -> int:
    """The scan before issue 15 (its code as it was): list every folder, stat every file, one SQL
    lookup per file."""
    found, _ = old_list_candidates(root.path, root.include, root.exclude, root.recursive)
    for seen in found:
        store.video_by_path(seen.path)
    return len(found)


def old_list_candidates(root: str, include: list[str], exclude: list[str], recursive: bool,
                        skip_dirs: tuple[str, ...] = ()) -> tuple[list[FileSeen], list[str]]:
    """Given a watch root, return (candidate videos found, problems met while listing).

    A folder that cannot be read is reported and skipped; the rest of the tree is still listed."""
    found: list[FileSeen] = []
    problems: list[str] = []
    pending = [root]
    while pending:
        folder = pending.pop()
        try:
            entries = list(os.scandir(folder))
        except OSError as error:
            problems.append(f"cannot list {folder}: {error.strerror or error}")
            continue
        for entry in entries:
            try:
                if entry.is_dir(follow_symlinks=False):
                    if recursive and not entry.name.startswith(".") and entry.path not in skip_dirs:
                        pending.append(entry.path)
                    continue
                if not entry.is_file():
                    continue
                relpath = is_candidate(root, entry.path, include, exclude, recursive, skip_dirs)
                if relpath is None:
                    continue
                stat = entry.stat()
            except OSError as error:
                problems.append(f"cannot read {entry.path}: {error.strerror or error}")
                continue
            found.append(FileSeen(entry.path, relpath, stat.st_size, stat.st_mtime_ns))
    # Oldest first: of two identical files seen in one scan, the earlier one is the original.
    found.sort(key=lambda seen: (seen.mtime_ns, seen.path))
    return found, problems



def bench_scan(files: int, folder: Path) -> dict:
    store, config = known_tree(folder, files)
    try:
        root = config.watch.roots[0]
        intake = Intake(config.watch, store)
        first_cpu, first_peak = measure(lambda: intake.tick(0.0),  # the first scan is a full one
                                        lambda: intake.scan_root(root, 0.0, full=True))
        before = dict(intake.scan_counts())
        started = time.process_time()
        intake.tick(1.0)  # a whole intake tick, settle() included
        poll_cpu = time.process_time() - started
        poll_counts = {key: intake.scan_counts().get(key, 0) - before.get(key, 0) for key in before}
        _, poll_peak = measure(lambda: intake.tick(2.0))
        before = dict(intake.scan_counts())
        started = time.process_time()
        intake.scan_root(root, 3.0, full=True)
        full_cpu = time.process_time() - started
        full_counts = {key: intake.scan_counts().get(key, 0) - before.get(key, 0) for key in before}
        _, full_peak = measure(lambda: intake.scan_root(root, 4.0, full=True))
        old_cpu, old_peak = measure(lambda: old_scan(store, root))
        assert all(video.state is VideoState.DONE for video in store.videos(limit=10))
        return {"files": files, "folders": files // 100,
                "poll_cpu_s": round(poll_cpu, 3), "poll_folder_stats": poll_counts["folder_stats"],
                "poll_listings": poll_counts["listings"], "poll_file_stats": poll_counts["file_stats"],
                "poll_peak_mb": round(poll_peak / 1e6, 2),
                "full_cpu_s": round(full_cpu, 3), "full_file_stats": full_counts["file_stats"],
                "full_peak_mb": round(full_peak / 1e6, 2), "first_scan_cpu_s": round(first_cpu, 3),
                "old_scan_cpu_s": round(old_cpu, 3), "old_peak_mb": round(old_peak / 1e6, 2),
                "ratio_poll_to_old": round(poll_cpu / old_cpu, 4), "ratio_full_to_old": round(full_cpu / old_cpu, 3)}
    finally:
        store.close()
        shutil.rmtree(folder, ignore_errors=True)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--videos", type=float, nargs="*", default=[], metavar="GB",
                        help="sizes of videos to admit, e.g. 2.6 20 (each is deleted right after)")
    parser.add_argument("--scan", type=int, nargs="*", default=[], metavar="FILES",
                        help="numbers of known files to rescan, e.g. 10000 100000")
    parser.add_argument("--dir", default=None, help="where to make the files (default: a temporary folder)")
    arguments = parser.parse_args()
    base = Path(arguments.dir or tempfile.mkdtemp(prefix="dlcwatch-bench-"))
    base.mkdir(parents=True, exist_ok=True)
    try:
        for files in arguments.scan:
            print(json.dumps({"scan": bench_scan(files, base / f"scan{files}")}), flush=True)
        for gigabytes in arguments.videos:
            print(json.dumps({"video": bench_video(gigabytes, base)}), flush=True)
    finally:
        if arguments.dir is None:
            shutil.rmtree(base, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
