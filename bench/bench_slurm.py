"""SLURM polling cost: scheduler calls and daemon CPU per poll cycle, for 10 to 10,000 jobs in flight.

Ours: `Daemon.poll(now)` with the SLURM executor (one squeue for all jobs, sacct only for jobs squeue
no longer lists). Baseline: the same daemon with an executor that asks squeue once per job (a naive
tool), same parsing, same handling. Both talk to a RECORDED squeue: a runner that answers with text
in the format the real squeue prints for SQUEUE_FORMAT (checked against tests/slurm_cluster.sh), so
the numbers are the daemon's own CPU, without process starts or controller load.

Array tasks: the same measurement with every job in flight a task of a job array ('1000_17', arrays
of ARRAY_TASKS tasks), as the daemon submits them. squeue is asked by array id (`--jobs=1000`) and
answers with one line per task (`--array`); also reported: the length of that squeue argv against
the argv that would list every task id.

Optional (--latency, on by default when root): wall time from a settled (queued) video to its job
RUNNING on an idle real single-node SLURM started with tests/slurm_cluster.sh (stopped afterwards).

    PYTHONPATH=. .venv/bin/python bench/bench_slurm.py [--sizes 10,100,1000,10000] [--no-latency]
"""

from __future__ import annotations

import argparse
import os
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path

import yaml

from dlcwatch.config import load_config
from dlcwatch.daemon import Daemon
from dlcwatch.executors.slurm.executor import SlurmExecutor
from dlcwatch.executors.slurm.states import SQUEUE_FORMAT
from dlcwatch.run import CommandResult, run
from dlcwatch.states import JobState, VideoState
from dlcwatch.store import Store

ROOT = Path(__file__).resolve().parent.parent
FIRST_SLURM_ID = 1000
SCONTROL_CONFIG = ("Configuration data as of 2026-01-01T00:00:00\n"
                   "MaxArraySize            = 1001\n"
                   "MaxJobCount             = 100000\n")
ARRAY_TASKS = 1000        # tasks per array: indexes 0..999, within the MaxArraySize above
PLAIN, ARRAY = "plain jobs", "array tasks"


class RecordedSlurm:
    """A runner answering as the real commands would for a fixed set of jobs; counts each call and
    keeps the last squeue argv."""

    def __init__(self, lines: dict[str, str]):
        self.lines = lines          # SLURM job or task id ('1000', '1000_17') -> its squeue line
        self.tasks: dict[str, list[str]] = {}   # array id -> the lines of all its tasks
        for job_id, line in lines.items():
            array_id, _, task = job_id.partition("_")
            if task:
                self.tasks.setdefault(array_id, []).append(line)
        self.calls: Counter = Counter()
        self.squeue_argv: list[str] = []

    def __call__(self, argv, timeout):
        self.calls[argv[0]] += 1
        if argv[0] == "squeue":
            self.squeue_argv = list(argv)
            return CommandResult(0, self._squeue(argv))
        if argv[0] == "scontrol":
            return CommandResult(0, SCONTROL_CONFIG)
        if argv[0] == "sacct":
            return CommandResult(0)
        return CommandResult(127, stderr=f"{argv[0]}: not recorded", not_found=True)

    def _squeue(self, argv) -> str:
        """Answer `squeue --jobs=A,B,…`: a job or task id gets its own line, an array id the lines
        of all its tasks, as the real squeue does with --array."""
        ids = next(arg for arg in argv if arg.startswith("--jobs=")).split("=", 1)[1].split(",")
        out = []
        for job_id in ids:
            if job_id in self.lines:
                out.append(self.lines[job_id])
            elif job_id in self.tasks:
                # Without --array the real squeue prints an array's pending tasks as ONE line
                # ('1000_[0-999]'); only the one-line-per-task answer is recorded here.
                assert "--array" in argv, argv
                out.extend(self.tasks[job_id])
        return "".join(out)


class NaiveSlurmExecutor(SlurmExecutor):
    """The baseline: one squeue call per job, everything else the same."""

    def poll(self, jobs):
        statuses = {}
        for job in jobs:
            statuses.update(super().poll([job]))
        return statuses


def write_lab(folder: Path, **slurm) -> Path:
    model = folder / "model" / "config.yaml"
    model.parent.mkdir(parents=True, exist_ok=True)
    model.write_text("Task: none\n")
    (folder / "videos").mkdir(parents=True, exist_ok=True)
    config = {
        "watch": {"roots": [{"path": str(folder / "videos")}], "settle_s": 0.0},
        "state": {"database": str(folder / "state" / "dlcwatch.db")},
        "output": {"root": str(folder / "results")},
        "staging": {"dir": str(folder / "staging"), "min_free_gb": 0},
        "model": {"config": str(model), "device": "cpu"},
        "executor": {"kind": "slurm", "videos_per_job": 1, "slurm": {"poll_interval_s": 1.0, **slurm}},
        "daemon": {"tick_s": 0.1},
    }
    path = folder / "config.yaml"
    path.write_text(yaml.safe_dump(config))
    return path


def slurm_id_of(i: int, layout: str) -> str:
    """The SLURM id of our i-th job: a job id ('1000'), or a task id ('1000_17') with ARRAY_TASKS
    tasks to an array, as sbatch numbers them."""
    if layout == PLAIN:
        return str(FIRST_SLURM_ID + i)
    return f"{FIRST_SLURM_ID + i // ARRAY_TASKS}_{i % ARRAY_TASKS}"


def job_paths(jobs_dir: Path, job_id: int, i: int, layout: str) -> dict[str, str]:
    """Where the daemon puts a job's spec, result and log: in its own folder, except that an array
    task's spec and log sit in its array's folder (Daemon._submit_array)."""
    work = jobs_dir / f"job{job_id}"
    if layout == PLAIN:
        spec, log = work / "spec.json", work / "worker.log"
    else:
        array_dir = jobs_dir / f"array{job_id - i % ARRAY_TASKS}"
        spec, log = array_dir / f"spec-{i % ARRAY_TASKS}.json", array_dir / f"task-{i % ARRAY_TASKS}.log"
    return {"spec_path": str(spec), "result_path": str(work / "result.json"), "log_path": str(log)}


def fill_store(store: Store, folder: Path, n: int, now: float, layout: str = PLAIN) -> dict[str, str]:
    """Record n jobs of one video each, half submitted (squeue: PENDING), half running (squeue:
    RUNNING), as plain jobs or as array tasks; return the squeue line of each SLURM job or task id."""
    lines = {}
    for i in range(n):
        video = store.add_video(str(folder / "videos" / f"v{i}.mp4"), str(folder / "videos"), f"v{i}.mp4",
                                size=1, mtime_ns=1, now=now)
        store.set_video_state(video.id, VideoState.QUEUED, "settled", now=now)
        job = store.create_job("slurm", [video.id], now=now)
        store.update_job(job.id, now=now, **job_paths(folder / "staging" / "jobs", job.id, i, layout))
        slurm_id = slurm_id_of(i, layout)
        store.set_job_state(job.id, JobState.SUBMITTED, f"accepted as {slurm_id}", now=now, executor_job_id=slurm_id)
        if i % 2:
            store.set_job_state(job.id, JobState.RUNNING, "running", now=now)
            store.set_video_state(video.id, VideoState.RUNNING, "running", now=now)
            lines[slurm_id] = f"{slurm_id}|RUNNING|0|None|\n"
        else:
            lines[slurm_id] = f"{slurm_id}|PENDING|0|Priority|\n"
    return lines


def measure(n: int, repeats: int, layout: str = PLAIN) -> dict:
    """Build a store of n jobs in flight (plain jobs or array tasks) and time poll cycles over it:
    ours, and for plain jobs also the naive baseline (asking a whole array per task would be a
    strawman, so array tasks get no baseline)."""
    folder = Path(tempfile.mkdtemp(prefix="dlcwatch-bench-slurm-"))
    try:
        config = load_config(write_lab(folder, array_tasks=ARRAY_TASKS))
        store = Store(config.state.database)
        started = time.monotonic()
        lines = fill_store(store, folder, n, now=1000.0, layout=layout)
        row = {"n": n, "layout": layout, "build_s": time.monotonic() - started}
        kinds = {"ours": SlurmExecutor, "naive": NaiveSlurmExecutor} if layout == PLAIN else {"ours": SlurmExecutor}
        for name, kind in kinds.items():
            row[name] = poll_cycles(config, store, kind, RecordedSlurm(lines), repeats)
            assert len(store.active_jobs()) == n and len(store.videos([VideoState.SUBMITTED])) == (n + 1) // 2
        # In steady state every job is still listed by squeue: one squeue, no sacct, nothing else.
        assert row["ours"]["calls"] == {"squeue": 1}, row["ours"]["calls"]
        row["argv_bytes"] = argv_bytes(row["ours"]["squeue_argv"])
        row["task_by_task_bytes"] = argv_bytes(with_jobs(row["ours"]["squeue_argv"], list(lines)))
        store.close()
        return row
    finally:
        shutil.rmtree(folder, ignore_errors=True)


def poll_cycles(config, store: Store, kind, runner: RecordedSlurm, repeats: int) -> dict:
    """Run `repeats` poll cycles of a fresh daemon with executor `kind`; return the median CPU per
    cycle, the scheduler calls of one cycle (the same in every cycle) and the last squeue argv."""
    executor = kind(config.executor.slurm, runner=runner, clock=lambda: 0.0)
    daemon = Daemon(config, store=store, executor=executor, watch_events=False)
    cpu, calls = [], []
    for k in range(repeats):
        runner.calls.clear()
        now = 10_000.0 + 100.0 * k  # past _next_poll every time
        before = time.process_time()
        daemon.poll(now)
        cpu.append(time.process_time() - before)
        calls.append(dict(runner.calls))
    assert all(c == calls[0] for c in calls), calls
    return {"cpu_s": statistics.median(cpu), "calls": calls[0], "squeue_argv": runner.squeue_argv}


def argv_bytes(argv: list[str]) -> int:
    """The bytes an argv takes in execve: each argument and its terminating NUL."""
    return sum(len(os.fsencode(arg)) + 1 for arg in argv)


def with_jobs(argv: list[str], ids: list[str]) -> list[str]:
    """The same argv asking about the given ids, one by one: what a poller that does not group
    tasks by array would send."""
    return [f"--jobs={','.join(ids)}" if arg.startswith("--jobs=") else arg for arg in argv]


# ---------------------------------------------------------------------- real SLURM (optional)

SLEEPING_PYTHON = f"""#!{sys.executable}
import time
time.sleep(120)
"""


def real_slurm(samples: int) -> dict:
    """Start tests/slurm_cluster.sh; measure one real squeue call, and settled -> RUNNING wall time."""
    folder = Path(tempfile.mkdtemp(prefix="dlcwatch-bench-slurm-real-"))
    folder.chmod(0o755)  # munged (the munge user) must enter it
    prefix = folder / "cluster"
    env = {**os.environ, "SLURM_PREFIX": str(prefix), "SLURM_PORT": os.environ.get("BENCH_SLURM_PORT", "17917"),
           "SLURM_CPUS": "8", "FAKE_GPUS": "0"}
    script = ROOT / "tests" / "slurm_cluster.sh"
    started = subprocess.run(["bash", str(script), "start"], env=env, capture_output=True, text=True, timeout=600)
    if started.returncode != 0:
        shutil.rmtree(folder, ignore_errors=True)
        return {"skipped": f"slurm_cluster.sh start failed: {started.stderr.strip()[-300:]}"}
    slurm_env = {**os.environ, "SLURM_CONF": str(prefix / "etc" / "slurm.conf")}
    try:
        python = folder / "fake-python"
        python.write_text(SLEEPING_PYTHON)
        python.chmod(0o755)
        lab = folder / "lab"
        config = load_config(write_lab(lab, python=str(python), cpus=1, gpus=0, mem_gb=0, time_limit_min=5,
                                       poll_interval_s=1.0))  # the least allowed
        store = Store(config.state.database)
        runner = lambda argv, timeout: run(argv, timeout, env=slurm_env)  # noqa: E731
        daemon = Daemon(config, store=store, executor=SlurmExecutor(config.executor.slurm, runner=runner),
                        watch_events=False)
        # One real squeue call (an idle controller): wall time, and CPU of the command itself.
        squeue = ["squeue", "--noheader", "--array", "--states=all", "--jobs=1", f"--Format={SQUEUE_FORMAT}"]
        calls = 20
        t0, c0, k0 = time.monotonic(), time.process_time(), resource.getrusage(resource.RUSAGE_CHILDREN)
        for _ in range(calls):
            run(squeue, 10, env=slurm_env)
        k1 = resource.getrusage(resource.RUSAGE_CHILDREN)
        squeue_cpu = (time.process_time() - c0 + k1.ru_utime + k1.ru_stime - k0.ru_utime - k0.ru_stime) / calls
        squeue_wall = (time.monotonic() - t0) / calls
        latencies = []
        for i in range(samples):
            video = store.add_video(str(lab / "videos" / f"r{i}.mp4"), str(lab / "videos"), f"r{i}.mp4",
                                    size=1, mtime_ns=1)
            store.set_video_state(video.id, VideoState.QUEUED, "settled")  # the moment it settled
            t0 = time.monotonic()
            deadline = t0 + 60
            while store.video(video.id).state is not VideoState.RUNNING:
                if time.monotonic() > deadline:
                    raise RuntimeError(f"video {video.id} not running after 60 s: {store.video(video.id).reason}")
                daemon.submit(time.time())
                daemon.poll(time.time())
                time.sleep(0.05)
            latencies.append(time.monotonic() - t0)
        daemon.close()
        return {"squeue_wall_s": squeue_wall, "squeue_cpu_s": squeue_cpu,
                "latency_s": latencies}
    finally:
        subprocess.run(["bash", str(script), "stop"], env=env, capture_output=True, text=True, timeout=300)
        shutil.rmtree(folder, ignore_errors=True)


# ---------------------------------------------------------------------- report

def fmt_s(seconds: float) -> str:
    return f"{seconds * 1000:.2f} ms" if seconds < 1 else f"{seconds:.2f} s"


def calls_text(calls: dict) -> str:
    return ", ".join(f"{count} {program}" for program, count in sorted(calls.items())) or "none"


def fmt_bytes(count: int) -> str:
    return f"{count:,} B" if count < 10_000 else f"{count / 1000:,.1f} kB"


def print_plain_table(rows: list[dict]) -> None:
    """Plain jobs: ours against the naive one-squeue-per-job baseline."""
    print("| jobs in flight | scheduler calls per cycle: ours | naive | calls ratio (ours/naive) "
          "| daemon CPU per cycle: ours | naive | CPU ratio (ours/naive) | ours, per job |")
    print("|---:|---|---|---:|---:|---:|---:|---:|")
    for row in rows:
        ours, naive = row["ours"], row["naive"]
        ours_calls, naive_calls = sum(ours["calls"].values()), sum(naive["calls"].values())
        print(f"| {row['n']:,} | {calls_text(ours['calls'])} | {calls_text(naive['calls'])} "
              f"| 1/{naive_calls // max(ours_calls, 1):,} | {fmt_s(ours['cpu_s'])} | {fmt_s(naive['cpu_s'])} "
              f"| {ours['cpu_s'] / naive['cpu_s']:.2f} | {ours['cpu_s'] / row['n'] * 1e6:.0f} µs |")


def print_array_table(plain_rows: list[dict], array_rows: list[dict]) -> None:
    """Array tasks next to the same number of plain jobs (ours both times), and the squeue argv."""
    print(f"| in flight | arrays ({ARRAY_TASKS:,} tasks max) | scheduler calls per cycle: array tasks | plain jobs "
          "| daemon CPU per cycle: array tasks | plain jobs | CPU ratio (array/plain) | array tasks, per task "
          "| squeue argv: ours, by array id | task by task | plain jobs |")
    print("|---:|---:|---|---|---:|---:|---:|---:|---:|---:|---:|")
    for plain, array in zip(plain_rows, array_rows):
        arrays = -(-array["n"] // ARRAY_TASKS)
        print(f"| {array['n']:,} | {arrays:,} | {calls_text(array['ours']['calls'])} "
              f"| {calls_text(plain['ours']['calls'])} | {fmt_s(array['ours']['cpu_s'])} "
              f"| {fmt_s(plain['ours']['cpu_s'])} | {array['ours']['cpu_s'] / plain['ours']['cpu_s']:.2f} "
              f"| {array['ours']['cpu_s'] / array['n'] * 1e6:.0f} µs | {fmt_bytes(array['argv_bytes'])} "
              f"| {fmt_bytes(array['task_by_task_bytes'])} | {fmt_bytes(plain['argv_bytes'])} |")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="10,100,1000,10000")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--no-latency", action="store_true", help="skip the real-SLURM part")
    parser.add_argument("--samples", type=int, default=5, help="settled -> RUNNING samples on real SLURM")
    args = parser.parse_args()
    rows, array_rows = [], []
    for n in (int(size) for size in args.sizes.split(",")):
        repeats = args.repeats if n < 10_000 else max(3, args.repeats - 2)
        for layout, into in ((PLAIN, rows), (ARRAY, array_rows)):
            row = measure(n, repeats, layout)
            into.append(row)
            print(f"# {n} {layout}: store built in {row['build_s']:.1f} s", file=sys.stderr, flush=True)

    print_plain_table(rows)
    print()
    print_array_table(rows, array_rows)

    if not args.no_latency:
        if os.geteuid() != 0:
            print("\nreal SLURM part skipped: tests/slurm_cluster.sh needs root")
            return 0
        real = real_slurm(args.samples)
        if "skipped" in real:
            print(f"\nreal SLURM part skipped: {real['skipped']}")
            return 0
        lat = real["latency_s"]
        print()
        print("| real single-node SLURM (idle, tests/slurm_cluster.sh) | value |")
        print("|---|---:|")
        print(f"| one real squeue call: wall, mean of 20 | {fmt_s(real['squeue_wall_s'])} |")
        print(f"| one real squeue call: CPU (ours + the squeue process), mean of 20 | {fmt_s(real['squeue_cpu_s'])} |")
        for row in rows:  # what the recorded runner leaves out: each squeue is a process, and a controller RPC
            ours_real = row["ours"]["cpu_s"] + real["squeue_cpu_s"]
            naive_real = row["naive"]["cpu_s"] + row["n"] * real["squeue_cpu_s"]
            print(f"| {row['n']:,} jobs, CPU per cycle with real squeue processes (estimate): ours / naive "
                  f"| {fmt_s(ours_real)} / {fmt_s(naive_real)} ({ours_real / naive_real:.3f}) |")
        print(f"| settled (queued) -> job RUNNING, poll_interval_s = 1, median of {len(lat)} "
              f"| {fmt_s(statistics.median(lat))} |")
        print(f"| settled (queued) -> job RUNNING, poll_interval_s = 1, min–max | {fmt_s(min(lat))} – {fmt_s(max(lat))} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
