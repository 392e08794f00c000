"""QC pictures, drawn in a process of their own while the job analyzes the next video.

A QC picture takes about a second of matplotlib per video (and its import once), all of it on the
CPU: as long as the analysis of a short video on a GPU. Drawn beside the analysis, it costs the
job's wall time nothing while a core is free. The drawing process runs at a lower priority, so
the analysis keeps its cores on a crowded node, and is started with "spawn" (a fork of a process
running PyTorch's or TensorFlow's threads is not safe).

A picture that fails, or a drawing process that dies, costs only the picture: the video's entry
says why, the keypoints are delivered. Its entry gets the picture when it is ready; the result
file is rewritten then.
"""

from __future__ import annotations

import logging
import os
import time
from concurrent.futures import Future, ProcessPoolExecutor
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
    """The job's QC pictures: `draw` one per analyzed video, `collect` what is ready, `finish` at the end.

    With `background` false (or where no process can be started) each picture is drawn at once,
    in the job's own process."""

    def __init__(self, background: bool = True):
        self._pool: ProcessPoolExecutor | None = None
        self._pending: list[tuple[Future, dict, Callable[[], None]]] = []
        if background:
            try:
                import multiprocessing

                self._pool = ProcessPoolExecutor(max_workers=1, mp_context=multiprocessing.get_context("spawn"),
                                                 initializer=_start_drawing_process)
            except (OSError, ValueError, ImportError) as error:
                log.warning("QC pictures are drawn in the job's own process: %s", error)

    @property
    def background(self) -> bool:
        return self._pool is not None

    def draw(self, entry: dict, staged: Path, keypoints: Path, output: Path, behavior_csv: Path | None, title: str,
             done: Callable[[], None] = lambda: None) -> None:
        """Draw the picture of the video whose result entry is `entry`; it lands in entry["outputs"]["qc_png"]
        and entry["timings"]["qc_s"]. `done` runs once the picture no longer needs the staged video."""
        arguments = (staged, keypoints, output, behavior_csv, title)
        if self._pool is not None:
            try:
                self._pending.append((self._pool.submit(draw, *arguments), entry, done))
                return
            except RuntimeError as error:  # the pool broke earlier: draw here from now on
                log.warning("QC pictures are drawn in the job's own process from now on: %s", error)
                self._pool = None
        try:
            path, seconds = draw(*arguments)
            _record(entry, path, seconds)
        except Exception as error:  # noqa: BLE001 - a picture never costs the keypoints
            _record_failure(entry, error)
        finally:
            done()

    def collect(self, wait: bool = False) -> bool:
        """Put the pictures that are ready (all of them with `wait`) into their entries; return whether any landed."""
        landed = False
        still = []
        for future, entry, done in self._pending:
            if not (wait or future.done()):
                still.append((future, entry, done))
                continue
            try:
                _record(entry, *future.result())
            except Exception as error:  # noqa: BLE001 - a picture never costs the keypoints
                _record_failure(entry, error)
            finally:
                done()
            landed = True
        self._pending = still
        return landed

    def finish(self) -> bool:
        """Wait for every picture, stop the drawing process; return whether any picture landed."""
        landed = self.collect(wait=True)
        if self._pool is not None:
            self._pool.shutdown(wait=True)
            self._pool = None
        return landed


def _record(entry: dict, path: str, seconds: float) -> None:
    entry.setdefault("outputs", {})["qc_png"] = path
    entry.setdefault("timings", {})["qc_s"] = seconds


def _record_failure(entry: dict, error: Exception) -> None:
    log.warning("could not draw the QC picture: %s: %s", type(error).__name__, error)
    entry["qc_error"] = f"{type(error).__name__}: {error}"
