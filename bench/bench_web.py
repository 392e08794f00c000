"""Web page latency at 100,000 videos: overview, video list, one video, one job, JSON.

A real `dlcwatch web` process on 127.0.0.1 serves a state database created by the real Store
(every migration) and filled in bulk with rows shaped like the daemon's: 100,000 videos over 30
days (most done, some queued, failed, quarantined, in flight), seven events per video as the
daemon writes them, one job per 8 videos, and an outbox. Each page is asked for REPEATS times over
one kept-alive HTTP connection; the wall time per answer (request sent to body read) is reported
as median and 95th percentile. Baseline, measured in the same run: the same pages on a database
of 1,000 videos, so the ratio says what 100x more videos cost. For the deep page of the list also
the naive alternative to keyset paging (LIMIT/OFFSET) is timed in SQL.

    PYTHONPATH=. .venv/bin/python bench/bench_web.py [--videos 100000] [--repeats 30]
"""

from __future__ import annotations

import argparse
import http.client
import json
import random
import socket
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import yaml

from dlcwatch.status import status_data
from dlcwatch.store import Store
from dlcwatch.store import ReadOnlyStore

DAY = 86400.0
GOAL_MS = 200.0
STATES = [("done", 0.90), ("queued", 0.05), ("failed", 0.015), ("quarantined", 0.01), ("duplicate", 0.01),
          ("missing", 0.005), ("submitted", 0.006), ("running", 0.004)]
# The schema's indexes for status (migration 0008_status_indexes), dropped to measure what they save.
STATUS_INDEXES = ("DROP INDEX events_new_state_at;"
                  "DROP INDEX videos_updated;")
PATH_OF_DONE = ["settling", "queued", "submitted", "running", "analyzed", "delivering", "done"]


def build(folder: Path, videos: int, seed: int = 1) -> Path:
    """Given a folder and a count, write a config and a filled state database; return the config."""
    database = folder / "state" / "dlcwatch.db"
    Store(database).close()  # the real schema, every migration applied
    rng = random.Random(seed)
    now = time.time()
    db = sqlite3.connect(database, isolation_level=None)
    db.execute("BEGIN")
    video_rows, event_rows, job_rows, member_rows = [], [], [], []
    for video_id in range(1, videos + 1):
        state = rng.choices([s for s, _ in STATES], [w for _, w in STATES])[0]
        created = now - 30 * DAY * (1 - video_id / videos) - rng.random() * 60
        updated = min(now, created + rng.random() * 3600)
        job_id = (video_id - 1) // 8 + 1
        relpath = f"cohort{video_id % 40:02d}/day{video_id % 30:02d}/mouse{video_id:06d}_session.mp4"
        reason = {"failed": "gave up after 3 attempt(s): ValueError", "quarantined": "not a readable video",
                  "done": f"delivered to /data/results/{relpath[:-4]}"}.get(state, f"now {state}")
        video_rows.append((video_id, f"/data/raw/{relpath}", "/data/raw", relpath, state, reason, 10_000_000,
                           1, created, f"{video_id:064x}", 9000, 30.0, 300.0, "h264", 640, 480, None,
                           job_id if state not in ("queued", "quarantined", "duplicate") else None, 1, None,
                           f"/data/results/{relpath[:-4]}" if state == "done" else None, created, updated))
        steps = PATH_OF_DONE if state == "done" else ["settling", "queued", state] if state != "queued" else \
            ["settling", "queued"]
        for index, new in enumerate(steps):
            old = steps[index - 1] if index else None
            event_rows.append((created + (updated - created) * index / len(steps), video_id,
                               job_id if new in ("submitted", "running") else None, old, new, f"now {new}"))
        member_rows.append((job_id, video_id))
    for job_id in range(1, (videos - 1) // 8 + 2):
        active = job_id > (videos - 1) // 8 - 60  # the newest jobs are still in flight
        created = now - 30 * DAY * (1 - job_id * 8 / videos)
        job_rows.append((job_id, "slurm", f"{100000 + job_id}_0", "running" if active else "finished", 1,
                         f"/scratch/jobs/job{job_id}/spec.json", f"/scratch/jobs/job{job_id}/result.json",
                         f"/scratch/jobs/job{job_id}/log.txt", "", '{"time_limit_min": 60}', created, created + 60,
                         None if active else created + 1800, created + 1800))
    db.executemany(f"INSERT INTO videos (id, path, root, relpath, state, reason, size, mtime_ns, stable_since, sha256,"
                   f" frames, fps, duration, codec, width, height, duplicate_of, job_id, attempts, not_before,"
                   f" output_dir, created, updated) VALUES ({','.join('?' * 23)})", video_rows)
    db.executemany("INSERT INTO jobs (id, executor, executor_job_id, state, attempt, spec_path, result_path, log_path,"
                   " reason, resources, created, started, ended, updated) VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?,?)",
                   job_rows)
    db.executemany("INSERT INTO job_videos (job_id, video_id) VALUES (?, ?)", member_rows)
    db.executemany("INSERT INTO events (at, video_id, job_id, old_state, new_state, message) VALUES (?,?,?,?,?,?)",
                   event_rows)
    db.executemany("INSERT INTO outbox (created, message, channels, next_try, sent) VALUES (?, ?, '[]', ?, ?)",
                   [(now - hour * 3600, json.dumps({"kind": "batch_done", "title": f"{hour} video(s) done"}),
                     now, now - hour * 3600) for hour in range(1, 50)])
    db.execute("COMMIT")
    db.close()
    # refresh_s 1, the smallest: the shared status is recomputed in the background all through
    # the measurement, as it would be with a viewer at every moment.
    config = {"watch": {"roots": [{"path": str(folder / "videos")}]}, "state": {"database": str(database)},
              "output": {"root": str(folder / "results")}, "model": {"config": str(folder / "model.yaml")},
              "web": {"refresh_s": 1}}
    (folder / "config.yaml").write_text(yaml.safe_dump(config))
    return folder / "config.yaml"


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def measure(config: Path, paths: dict[str, str], repeats: int) -> dict[str, list[float]]:
    """Given a config and named paths, serve it with `dlcwatch web`; return milliseconds per answer."""
    port = free_port()
    server = subprocess.Popen([sys.executable, "-m", "dlcwatch", "web", "--config", str(config), "--listen",
                               f"127.0.0.1:{port}"], stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT)
    try:
        connection = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
        deadline = time.monotonic() + 30
        while True:
            try:
                connection.request("GET", "/static/style.css")
                connection.getresponse().read()
                break
            except OSError:
                connection.close()
                if time.monotonic() > deadline:
                    raise SystemExit("dlcwatch web did not start") from None
                time.sleep(0.2)
        timings = {}
        for name, path in paths.items():
            samples = []
            for _ in range(repeats + 2):
                started = time.perf_counter()
                connection.request("GET", path)
                response = connection.getresponse()
                body = response.read()
                samples.append((time.perf_counter() - started) * 1000)
                if response.status != 200:
                    raise SystemExit(f"{path}: HTTP {response.status}: {body[:300]!r}")
            timings[name] = samples[2:]  # the first two warm the page's caches
        return timings
    finally:
        server.terminate()
        server.wait(timeout=15)


def pages(videos: int) -> dict[str, str]:
    return {"overview /": "/", "video list /videos": "/videos", "list, state filter": "/videos?state=failed",
            "list, name search": "/videos?q=mouse0123", "list, deep page (keyset)": f"/videos?before={videos // 100}",
            "one video /videos/ID": f"/videos/{videos // 2}", "one job /jobs/ID": f"/jobs/{videos // 16}",
            "/api/status": "/api/status", "/api/videos/ID": f"/api/videos/{videos // 2}"}


def sql_paging(database: Path, videos: int, repeats: int) -> tuple[float, float]:
    """Time the deep page both ways in SQL: keyset (id < X) and OFFSET; return median ms of each."""
    db = sqlite3.connect(f"file:{database}?mode=ro", uri=True)
    keyset, offset = [], []
    before = videos // 100
    for _ in range(repeats):
        started = time.perf_counter()
        db.execute("SELECT id, relpath, state FROM videos WHERE id < ? ORDER BY id DESC LIMIT 51", (before,)).fetchall()
        keyset.append((time.perf_counter() - started) * 1000)
        started = time.perf_counter()
        db.execute("SELECT id, relpath, state FROM videos ORDER BY id DESC LIMIT 51 OFFSET ?",
                   (videos - before,)).fetchall()
        offset.append((time.perf_counter() - started) * 1000)
    db.close()
    return statistics.median(keyset), statistics.median(offset)


def status_cost(database: Path, repeats: int) -> float:
    """Return the median ms of one status_data (what `dlcwatch status` and the overview compute)."""
    store = ReadOnlyStore(database)
    samples = []
    for _ in range(repeats):
        started = time.perf_counter()
        status_data(store)
        samples.append((time.perf_counter() - started) * 1000)
    store.close()
    return statistics.median(samples)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--videos", type=int, default=100_000)
    parser.add_argument("--baseline", type=int, default=1_000)
    parser.add_argument("--repeats", type=int, default=30)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="bench-web-") as temporary:
        results, costs = {}, {}
        for count in (args.baseline, args.videos):
            folder = Path(temporary) / f"n{count}"
            folder.mkdir()
            started = time.perf_counter()
            config = build(folder, count)
            database = folder / "state" / "dlcwatch.db"
            print(f"{count:,} videos: database built in {time.perf_counter() - started:.1f} s, "
                  f"{database.stat().st_size / 1e6:.0f} MB", flush=True)
            results[count] = measure(config, pages(count), args.repeats)
            costs[count] = status_cost(database, args.repeats)
        database = Path(temporary) / f"n{args.videos}" / "state" / "dlcwatch.db"
        keyset, offset = sql_paging(database, args.videos, args.repeats)
        # The baseline for status_data: the same database without the two indexes status needs.
        with sqlite3.connect(database, isolation_level=None) as db:
            db.executescript(STATUS_INDEXES)
        unindexed = status_cost(database, args.repeats)
    print(f"\n| page | {args.baseline:,} videos, median ms | {args.videos:,} videos, median ms | p95 ms | ratio "
          f"| under {GOAL_MS:.0f} ms |")
    print("|---|---|---|---|---|---|")
    for name in pages(args.videos):
        small, large = results[args.baseline][name], results[args.videos][name]
        p95 = statistics.quantiles(large, n=20)[-1]
        ratio = statistics.median(large) / statistics.median(small)
        print(f"| {name} | {statistics.median(small):.1f} | {statistics.median(large):.1f} | {p95:.1f} | "
              f"{ratio:.1f}x | {'yes' if p95 < GOAL_MS else 'NO'} |")
    print(f"\nstatus_data itself (the overview's numbers, `dlcwatch status`), median ms: {costs[args.baseline]:.1f} at "
          f"{args.baseline:,} videos, {costs[args.videos]:.1f} at {args.videos:,}; {unindexed:.1f} at {args.videos:,} "
          f"without the indexes events(new_state, at) and videos(updated) "
          f"({unindexed / costs[args.videos]:.1f}x slower)")
    print(f"deep page in SQL at {args.videos:,} videos: keyset {keyset:.2f} ms, OFFSET {offset:.2f} ms "
          f"({offset / keyset:.0f}x)")


if __name__ == "__main__":
    main()
