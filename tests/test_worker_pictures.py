"""QC pictures drawn in a process of their own (worker/pictures.py): each lands in its video's entry
before the entry is recorded, and a picture that fails costs only itself. Real matplotlib and
ffmpeg videos; no DeepLabCut needed."""

from __future__ import annotations

import os
import threading

import numpy as np
import pandas as pd

from dlcwatch.demo.synthetic import write_video
from dlcwatch.worker.pictures import Pictures


def keypoints_file(path, frames: int):
    columns = pd.MultiIndex.from_product([["DLC_tiny"], ["nose", "tail"], ["x", "y", "likelihood"]],
                                         names=["scorer", "bodyparts", "coords"])
    values = np.tile([40.0, 50.0, 0.9, 80.0, 70.0, 0.4], (frames, 1))
    pd.DataFrame(values, columns=columns).to_hdf(path, key="df_with_missing", format="table")
    return path


def test_each_picture_lands_in_its_entry_before_the_entry_is_recorded(tmp_path):
    recorded = []
    threads = {}
    pictures = Pictures()
    for number in (1, 2, 3):
        video = write_video(tmp_path / f"video{number}.mp4", frames=20 + number)
        table = keypoints_file(tmp_path / f"video{number}DLC_tiny.h5", 20 + number)
        entry = {"status": "ok", "outputs": {"keypoints_h5": str(table)}, "timings": {"inference_s": 1.0}}

        def done(entry=entry, number=number):
            threads[number] = threading.get_ident()
            recorded.append(dict(entry, outputs=dict(entry["outputs"]), timings=dict(entry["timings"])))

        pictures.draw(entry, video, table, tmp_path, None, f"souris {number}.mp4", done=done,
                      more_follows=number < 3)
    pictures.finish()

    assert len(recorded) == 3
    for entry in recorded:
        assert entry["timings"]["qc_s"] > 0 and entry["timings"]["inference_s"] == 1.0
        with open(entry["outputs"]["qc_png"], "rb") as picture:
            assert picture.read(8) == b"\x89PNG\r\n\x1a\n"
    assert sorted(os.path.basename(entry["outputs"]["qc_png"]) for entry in recorded) == [
        "video1_qc.png", "video2_qc.png", "video3_qc.png"]
    # The first two from the pool's thread (the loop went on meanwhile); the last one here, at once.
    here = threading.get_ident()
    assert threads[1] != here and threads[2] != here and threads[3] == here


def test_a_picture_that_fails_costs_only_itself(tmp_path):
    video = write_video(tmp_path / "video1.mp4", frames=10)
    recorded = []
    for background in (True, False):
        entry = {"status": "ok", "outputs": {}}
        pictures = Pictures(background=background)
        pictures.draw(entry, video, tmp_path / "missing.h5", tmp_path, None, "x.mp4", done=lambda e=entry: recorded.append(e))
        pictures.finish()
    assert [entry["status"] for entry in recorded] == ["ok", "ok"]
    assert all("qc_png" not in entry["outputs"] and "missing.h5" in entry["qc_error"] for entry in recorded)
