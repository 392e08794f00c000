"""Benchmark the worker against DeepLabCut's own analyze_videos, for each engine.

Side by side in one run, on the same tiny model and the same videos:

  A   one `deeplabcut.analyze_videos(config, [all videos])` call, in a process of its own
  B   one process per video, each an `analyze_videos(config, [video])` call (a job array of single videos)
  W   the worker on one spec of all the videos (`python -m dlcwatch.worker SPEC`), extras off
  W+  the same with its extras on: filtering (median, 5) and the QC picture

for short videos (10 s) and long ones (5 min, at a lower frame rate to keep the run short). Every
arm is a whole process, timed from start to exit (imports included, as a job pays them). Arms run
interleaved, in a rotated order each repetition, so that a busy spell on the machine falls on all
of them; the load average is recorded beside every run. Outputs are written to fresh folders
each time (analyze_videos skips a video whose results exist).

Run from the repository root (about 18 minutes on 2 cores with the defaults, training included):

    PYTHONPATH=. .venv/bin/python bench/bench_worker.py --tf-python .venv-tf/bin/python

`--engines pytorch` for PyTorch alone, `--pytorch-model` / `--tf-model CONFIG` to reuse trained
models, `--reps`, `--short`, `--long`, `--size`, `--long-fps` to change the work, `--sets` and
`--arms` to choose (arm Wt: the worker run as a plain script, paying the interpreter's teardown
that `python -m dlcwatch.worker` skips), `--threads 0` to leave thread counts to the libraries
(default: one inference thread, as on a shared 2-core machine). Writes the table (Markdown) to
stdout and every run, with the worker's own timings, to `--json`.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from dlcwatch.demo.synthetic import write_video  # noqa: E402
from dlcwatch.jobs.spec import SPEC_VERSION, read_json, write_json_atomic  # noqa: E402

ANALYZE_VIDEOS = """
import sys, json
import deeplabcut
config, destination, options, *videos = sys.argv[1:]
deeplabcut.analyze_videos(config, videos, destfolder=destination, save_as_csv=True, **json.loads(options))
"""
ARMS = ("A", "B", "W", "W+")
# The worker as a plain `python -c` script that returns from main(): the interpreter's teardown is
# paid as A pays it (`python -m dlcwatch.worker` skips it with os._exit). Only with --arms.
WITH_TEARDOWN = "Wt"
WORKER_WITH_TEARDOWN = "import sys; from dlcwatch.worker.job import main; sys.exit(main(sys.argv[1:]))"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--engines", default="pytorch,tensorflow")
    parser.add_argument("--tf-python", default=str(ROOT / ".venv-tf" / "bin" / "python"),
                        help="the interpreter of the TensorFlow-engine environment (scripts/install-dlc.sh --tf)")
    parser.add_argument("--pytorch-model", help="a trained PyTorch project's config.yaml (default: train a tiny one)")
    parser.add_argument("--tf-model", help="a trained TensorFlow project's config.yaml (default: train a tiny one)")
    parser.add_argument("--reps", type=int, default=2)
    parser.add_argument("--short", type=int, default=4, help="short videos (10 s at 30 fps)")
    parser.add_argument("--long", type=int, default=2, help="long videos (5 min at --long-fps)")
    parser.add_argument("--long-fps", type=float, default=10.0)
    parser.add_argument("--size", type=int, default=128, help="frame width and height, pixels")
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--threads", type=int, default=1, help="inference threads for every arm; 0: the libraries'")
    parser.add_argument("--long-b", action="store_true", help="also run B (a process per video) on the long videos")
    parser.add_argument("--arms", default=",".join(ARMS),
                        help=f"which arms, of {', '.join(ARMS + (WITH_TEARDOWN,))} ({WITH_TEARDOWN}: the worker "
                             "with the interpreter's teardown)")
    parser.add_argument("--sets", default="short,long")
    parser.add_argument("--workdir", help="keep models, videos and outputs here (default: a temporary folder)")
    parser.add_argument("--json", help="write every run, with its load average and the worker's timings, here")
    args = parser.parse_args(argv)

    engines = [engine.strip() for engine in args.engines.split(",") if engine.strip()]
    work = Path(args.workdir or tempfile.mkdtemp(prefix="bench-worker-")).absolute()
    work.mkdir(parents=True, exist_ok=True)
    pythons = {"pytorch": sys.executable, "tensorflow": args.tf_python}
    env = thread_environment(args.threads)
    models = {engine: Path(getattr(args, f"{'pytorch' if engine == 'pytorch' else 'tf'}_model") or
                           train_model(engine, pythons[engine], work / f"model-{engine}", env))
              for engine in engines}
    chosen = [arm.strip() for arm in args.arms.split(",") if arm.strip()]
    sets = {name: make_videos(work / name, count, seconds=seconds, fps=fps, size=args.size)
            for name, count, seconds, fps in (("short", args.short, 10, 30.0), ("long", args.long, 300, args.long_fps))
            if name in args.sets.split(",")}
    runs = []
    started = time.monotonic()
    for rep in range(args.reps):
        for set_name, videos in sets.items():
            for engine in engines:
                arms = [arm for arm in chosen if arm != "B" or set_name == "short" or args.long_b]
                shift = rep % len(arms)
                for arm in arms[shift:] + arms[:shift]:
                    run = run_arm(arm, engine, pythons[engine], models[engine], videos, work / "out", args, env)
                    run.update(rep=rep, set=set_name, engine=engine, arm=arm)
                    runs.append(run)
                    print(f"rep {rep} {set_name:5} {engine:10} {arm:2}: {run['wall_s']:7.1f} s, "
                          f"{run['frames'] / run['wall_s']:6.1f} fps, load {run['load_before']:.1f}", file=sys.stderr)
    if args.json:
        Path(args.json).write_text(json.dumps({"args": vars(args), "runs": runs, "sets": {
            name: {"videos": len(videos), "frames": sum(frames for _, frames in videos)} for name, videos in sets.items()},
            "bench_s": round(time.monotonic() - started, 1)}, indent=1))
    print(report(runs, sets, args))
    if not args.workdir:
        shutil.rmtree(work, ignore_errors=True)
    return 0


def thread_environment(threads: int) -> dict:
    env = {**os.environ, "PYTHONPATH": str(ROOT), "TF_CPP_MIN_LOG_LEVEL": "3", "CUDA_VISIBLE_DEVICES": "",
           "DLClight": "True", "HF_HUB_OFFLINE": "1"}
    if threads > 0:
        for name in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "TF_NUM_INTRAOP_THREADS", "TF_NUM_INTEROP_THREADS"):
            env[name] = str(threads)
    return env


def train_model(engine: str, python: str, folder: Path, env: dict) -> Path:
    if engine == "pytorch":
        command = [python, "-m", "dlcwatch.demo.tinydlc", str(folder), "--epochs", "10"]
    else:
        command = [python, "-m", "dlcwatch.demo.tinydlc_tf", str(folder), "--iterations", "300"]
    completed = subprocess.run(command, capture_output=True, text=True, env=env, timeout=1800)
    if completed.returncode != 0:
        raise SystemExit(f"could not train the {engine} model:\n{completed.stderr[-3000:]}")
    return Path(completed.stdout.strip().splitlines()[-1])


def make_videos(folder: Path, count: int, seconds: float, fps: float, size: int) -> list[tuple[Path, int]]:
    frames = int(round(seconds * fps))
    videos = []
    for number in range(count):
        path = folder / f"{folder.name}{number}.mp4"
        if not path.exists():
            write_video(path, frames=frames, size=size, fps=fps, phase=0.37 * number)
        videos.append((path, frames))
    return videos


def run_arm(arm: str, engine: str, python: str, model: Path, videos: list[tuple[Path, int]], out: Path,
            args: argparse.Namespace, env: dict) -> dict:
    """Run one arm once on fresh output folders; return its wall and CPU seconds, frames and load average."""
    destination = out / f"{engine}-{arm.replace('+', 'plus')}"
    if destination.exists():
        shutil.rmtree(destination)
    destination.mkdir(parents=True)
    options = {"batch_size": args.batch_size, **({"device": "cpu"} if engine == "pytorch" else {})}
    if arm == "A":
        commands = [[python, "-c", ANALYZE_VIDEOS, str(model), str(destination), json.dumps(options),
                     *(str(path) for path, _ in videos)]]
    elif arm == "B":
        commands = [[python, "-c", ANALYZE_VIDEOS, str(model), str(destination), json.dumps(options), str(path)]
                    for path, _ in videos]
    else:
        extras = arm == "W+"
        spec = {"version": SPEC_VERSION, "job_id": 1, "work_dir": str(destination),
                "result": str(destination / "result.json"),
                "model": {"config": str(model), "shuffle": 1, "trainingsetindex": 0, "batch_size": args.batch_size,
                          "device": "cpu", "labeled_video": {"mode": "off"}},
                "filter": {"enabled": extras, "type": "median", "window_length": 5}, "qc_picture": extras,
                "videos": [{"id": number + 1, "path": str(path), "frames": frames}
                           for number, (path, frames) in enumerate(videos)]}
        write_json_atomic(destination / "spec.json", spec)
        worker = ["-c", WORKER_WITH_TEARDOWN] if arm == WITH_TEARDOWN else ["-m", "dlcwatch.worker"]
        commands = [[python, *worker, str(destination / "spec.json")]]
    load_before = os.getloadavg()[0]
    cpu_before = resource.getrusage(resource.RUSAGE_CHILDREN)
    started = time.monotonic()
    for command in commands:
        completed = subprocess.run(command, capture_output=True, text=True, env=env, timeout=3600)
        if completed.returncode != 0:
            raise SystemExit(f"{arm} ({engine}) failed:\n{completed.stderr[-3000:]}")
    wall = time.monotonic() - started
    ended = time.time()
    cpu_after = resource.getrusage(resource.RUSAGE_CHILDREN)
    run = {"wall_s": round(wall, 2), "frames": sum(frames for _, frames in videos),
           "cpu_s": round(cpu_after.ru_utime - cpu_before.ru_utime + cpu_after.ru_stime - cpu_before.ru_stime, 2),
           "load_before": round(load_before, 2), "load_after": round(os.getloadavg()[0], 2)}
    if arm.startswith("W"):
        result = read_json(destination / "result.json")
        statuses = {entry["status"] for entry in result["videos"].values()}
        if statuses != {"ok"}:
            raise SystemExit(f"{arm} ({engine}): videos ended {statuses}")
        # From the result file's last write to the process's end: the interpreter's teardown, if any.
        run["worker"] = {"load": result.get("timings"), "model_loads": result.get("model_loads"),
                         "steps": sum_steps(result), "exit_after_result_s": round(ended - result["finished"], 2)}
    return run


def sum_steps(result: dict) -> dict:
    steps: dict[str, float] = {}
    for entry in result["videos"].values():
        for name, seconds in entry.get("timings", {}).items():
            steps[name] = round(steps.get(name, 0.0) + seconds, 3)
    return steps


def report(runs: list[dict], sets: dict, args: argparse.Namespace) -> str:
    """Return the Markdown table: fps per arm (median of the repetitions, min–max) and the ratios."""
    lines = ["| engine | videos | A fps | B fps | W fps | W+ fps | W/A | W/B | W+ time / W time | "
             "W CPU / A CPU | W+ CPU / W CPU |", "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|"]
    teardown = []
    for engine in dict.fromkeys(run["engine"] for run in runs):
        for set_name, videos in sets.items():
            mine = [run for run in runs if run["engine"] == engine and run["set"] == set_name]
            by_arm = {arm: [run for run in mine if run["arm"] == arm] for arm in ARMS + (WITH_TEARDOWN,)}
            fps = {arm: [run["frames"] / run["wall_s"] for run in found] for arm, found in by_arm.items() if found}

            def shown(arm: str) -> str:
                if arm not in fps:
                    return "–"
                values = fps[arm]
                return f"{statistics.median(values):.1f} ({min(values):.1f}–{max(values):.1f})"

            def ratio(top: str, bottom: str, key: str = "wall_s") -> str:
                """top's speed over bottom's (bottom's time over top's); with cpu_s, top's CPU over bottom's."""
                if top not in by_arm or bottom not in by_arm or not by_arm[top] or not by_arm[bottom]:
                    return "–"
                # Pairs from the same repetition, so that a busy spell cancels out.
                pairs = [bottom_run[key] / top_run[key] for top_run in by_arm[top] for bottom_run in by_arm[bottom]
                         if top_run["rep"] == bottom_run["rep"]]
                if key == "cpu_s":
                    pairs = [1 / value for value in pairs]
                return f"{statistics.median(pairs):.2f} ({min(pairs):.2f}–{max(pairs):.2f})"

            frames = sum(frames for _, frames in videos)
            label = f"{len(videos)} × {'10 s' if set_name == 'short' else '5 min'} ({frames} frames)"
            # ratio("W", "W+") is W+'s time over W's: what the extras cost, as a factor.
            lines.append(f"| {engine} | {label} | {shown('A')} | {shown('B')} | {shown('W')} | {shown('W+')} | "
                         f"{ratio('W', 'A')} | {ratio('W', 'B')} | {ratio('W', 'W+')} | {ratio('W', 'A', 'cpu_s')} | "
                         f"{ratio('W+', 'W', 'cpu_s')} |")
            if by_arm[WITH_TEARDOWN]:
                teardown.append(f"| {engine} | {label} | {shown(WITH_TEARDOWN)} | {ratio(WITH_TEARDOWN, 'A')} | "
                                f"{ratio('W', WITH_TEARDOWN)} |")
    if teardown:
        lines += ["", "| engine | videos | Wt fps (the worker with the interpreter's teardown) | Wt/A | W/Wt |",
                  "|---|---|---:|---:|---:|", *teardown]
    return "\n".join(lines)


if __name__ == "__main__":
    sys.exit(main())
