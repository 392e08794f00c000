"""`dlcwatch demo DIR`: a complete working example with nothing downloaded.

DIR/model     a tiny DeepLabCut project trained on the CPU in seconds
DIR/videos    the watched folder, with synthetic videos (awkward names included on purpose)
DIR/results   where keypoints and manifests are delivered
DIR/config.yaml   SQLite state + the local executor
"""

from __future__ import annotations

import importlib.util
import logging
import shutil
import sys
from pathlib import Path

import yaml

from dlcwatch.demo.synthetic import write_video
from dlcwatch.run import run

log = logging.getLogger("dlcwatch.demo.run")

TRAINING_TIMEOUT_S = 1800  # about a minute on a lab CPU; half an hour means something is wrong

# Names a lab really produces: accents, spaces, shell metacharacters, a sub-folder.
DEMO_VIDEOS = ["mouse01_openfield.mp4", "souris_été_ü.mp4", "session 2/rat $(touch x); 'B'.avi",
               "mouse04_openfield.mp4", "mouse05_openfield.mp4", "mouse06_openfield.mp4"]


def run_demo(folder: Path, *, videos: int = 3, setup_only: bool = False) -> int:
    """Given a folder, build the example there and (unless setup_only) run it until idle."""
    folder = folder.absolute()
    missing = [tool for tool in ("ffmpeg", "ffprobe") if shutil.which(tool) is None]
    if missing:
        raise SystemExit(f"dlcwatch demo needs ffmpeg (it makes the videos; ffprobe checks them), but "
                         f"{' and '.join(missing)} {'is' if len(missing) == 1 else 'are'} not installed: "
                         "`sudo apt-get install ffmpeg` (Debian/Ubuntu) or scripts/install-system-packages.sh")
    model_config = _tiny_model(folder / "model")
    for index, name in enumerate(DEMO_VIDEOS[:videos]):
        target = folder / "videos" / name
        if not target.exists():
            write_video(target, frames=90 + 30 * index, phase=index * 0.7)
    config_path = folder / "config.yaml"
    config = {
        "watch": {"roots": [{"path": str(folder / "videos")}], "settle_s": 1.0, "rescan_interval_s": 2.0},
        "state": {"database": str(folder / "state" / "dlcwatch.db")},
        "output": {"root": str(folder / "results")},
        "staging": {"dir": str(folder / "staging")},
        "model": {"config": str(model_config), "device": "cpu", "filter": {"enabled": True}},
        "executor": {"kind": "local", "videos_per_job": 4, "retry_backoff_s": 5.0,
                     "local": {"max_parallel": 1}},
        "daemon": {"tick_s": 0.5},
    }
    config_path.write_text("# Written by `dlcwatch demo`.\n" + yaml.safe_dump(config, sort_keys=False,
                                                                              allow_unicode=True))
    print(f"demo set up in {folder}\n  config:  {config_path}")
    if setup_only:
        print(f"run it with:  dlcwatch run --config '{config_path}'")
        return 0
    from dlcwatch.config import load_config
    from dlcwatch.daemon import Daemon
    from rich.console import Console

    from dlcwatch.status import render_status, status_data

    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    from dlcwatch.states import VIDEO_TERMINAL

    total = min(videos, len(DEMO_VIDEOS))
    daemon = Daemon(load_config(config_path))
    console = Console(highlight=False)
    try:
        with Progress(TextColumn("videos finished"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                      console=console, transient=True) as progress:
            task = progress.add_task("demo", total=total)

            def show(daemon: Daemon) -> None:
                counts = daemon.store.counts()
                progress.update(task, completed=sum(counts.get(state.value, 0) for state in VIDEO_TERMINAL))

            daemon.run(until_idle=True, on_tick=show)
        console.print(render_status(status_data(daemon.store)))
        done = daemon.store.counts().get("done", 0)
    finally:
        daemon.close()
    print(f"\nresults: {folder / 'results'}")
    print(f"status:  dlcwatch status --config '{config_path}'")
    return 0 if done == total else 1


def _tiny_model(folder: Path) -> Path:
    """Return the config.yaml of the demo model, training it first if it is not there yet."""
    existing = sorted(folder.glob("*/config.yaml"))
    if existing and any(existing[0].parent.glob("dlc-models-pytorch/**/snapshot-*.pt")):
        return existing[0]
    if importlib.util.find_spec("deeplabcut") is None:
        raise SystemExit("dlcwatch demo trains a small DeepLabCut model, so it needs DeepLabCut: "
                         "run scripts/install-dlc.sh (or pip install 'dlcwatch[dlc]' after torch)")
    folder.mkdir(parents=True, exist_ok=True)
    log_path = folder / "training.log"
    from rich.console import Console

    with Console().status(f"training a tiny DeepLabCut model in {folder} (about a minute on a CPU)"):
        completed = run([sys.executable, "-m", "dlcwatch.demo.tinydlc", str(folder)], TRAINING_TIMEOUT_S)
    log_path.write_text(completed.stdout + completed.stderr)
    if not completed.ok:
        raise SystemExit(f"training the demo model failed ({completed.reason('training')}); see {log_path}")
    return sorted(folder.glob("*/config.yaml"))[0]
