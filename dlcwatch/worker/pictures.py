"""QC pictures, drawn in a process of their own while the job analyzes the next video.

A QC picture takes about a second of matplotlib per video (and its import once), all of it on the
CPU: as long as the analysis of a short video on a GPU. Drawn beside the analysis, it costs the
job's wall time nothing while a core is free. The drawing process runs at a lower priority, so
the analysis keeps its cores on a crowded node, and is started with "spawn" (a fork of a process
running PyTorch's or TensorFlow's threads is not safe).

A picture that fails, or a drawing process that dies, costs only the picture: the video's entry
says why, the keypoints are delivered. The daemon delivers a video as soon as its entry appears in
the result file, so the entry is written there once its picture is in it.
"""

from __future__ import annotations

import logging
import os
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path
from typing import Callable

log = logging.getLogger("dlcwatch.worker.pictures")

# How much lower than the analysis the drawing process runs (nice increment).
PICTURE_NICENESS = 5


def draw(staged: Path, keypoints: Path, output: Path, behavior_csv: Path | None, title: str) -> tuple[str, float]:
    """Draw the QC picture of one analyzed video; return its path and the seconds it took."""
    started = time.monotonic()
    from dlcwatch.worker.qc import make_qc_png

    path = make_qc_png(keypoints, staged, output / f"{staged.stem}_qc.png", behavior_csv=behavior_csv, title=title)
    return str(path), round(time.monotonic() - started, 3)


def _start_drawing_process() -> None:
    """Run in the drawing process once: lower its priority and import matplotlib before the first picture."""
    try:
        os.nice(PICTURE_NICENESS)
    except OSError:
        pass
    import dlcwatch.worker.qc  # noqa: F401


class Pictures:
    """The job's QC pictures: `draw` one per analyzed video, `finish` at the end.

    With `background` false (or where no process can be started) each picture is drawn at once,
    in the job's own process. Either way `done` runs once the picture is in the entry (or its
    failure is): from the pool's thread for a picture drawn in the background. The drawing process
    starts with the first picture drawn in the background, not before: its imports would compete
    with the job's own while the model loads."""

    def __init__(self, background: bool = True):
        self._pool: ProcessPoolExecutor | None = None
        if background:
            try:
                import multiprocessing

                self._pool = ProcessPoolExecutor(max_workers=1, mp_context=multiprocessing.get_context("spawn"),
                                                 initializer=_start_drawing_process)
            except (OSError, ValueError, ImportError) as error:
                log.warning("QC pictures are drawn in the job's own process: %s", error)

    def draw(self, entry: dict, staged: Path, keypoints: Path, output: Path, behavior_csv: Path | None, title: str,
             done: Callable[[], None], more_follows: bool = True) -> None:
        """Draw the picture of the video whose result entry is `entry`: it lands in entry["outputs"]["qc_png"]
        and entry["timings"]["qc_s"] (or entry["qc_error"] says why there is none), then `done` runs.

        Without `more_follows` (the job's last video) nothing would run beside the drawing process,
        so the picture is drawn here, at once: no process is started for a job of one video, and
        matplotlib is already imported here (DeepLabCut imports it)."""
        arguments = (staged, keypoints, output, behavior_csv, title)
        if self._pool is not None and more_follows:
            try:
                future = self._pool.submit(draw, *arguments)
                future.add_done_callback(lambda drawn: _landed_in_background(drawn.result, entry, done))
                return
            except RuntimeError as error:  # the pool broke earlier: draw here from now on
                log.warning("QC pictures are drawn in the job's own process from now on: %s", error)
                self._pool = None
        _land(lambda: draw(*arguments), entry)
        done()

    def finish(self) -> None:
        """Wait for every picture (and its `done`), then stop the drawing process."""
        if self._pool is not None:
            self._pool.shutdown(wait=True)
            self._pool = None


def _land(picture: Callable[[], tuple[str, float]], entry: dict) -> None:
    """Put the picture `picture()` gives into the entry, or why there is none."""
    try:
        path, seconds = picture()
        entry.setdefault("outputs", {})["qc_png"] = path
        entry.setdefault("timings", {})["qc_s"] = seconds
    except Exception as error:  # noqa: BLE001 - a picture never costs the keypoints
        log.warning("could not draw the QC picture: %s: %s", type(error).__name__, error)
        entry["qc_error"] = f"{type(error).__name__}: {error}"


def _landed_in_background(picture: Callable[[], tuple[str, float]], entry: dict, done: Callable[[], None]) -> None:
    _land(picture, entry)
    try:
        done()
    except Exception:  # noqa: BLE001 - raised in the pool's thread, nobody else would see it
        log.exception("could not record the video after its QC picture")
