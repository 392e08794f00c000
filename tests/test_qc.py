"""The QC picture, from a synthetic keypoint table and a short synthetic video made with ffmpeg."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import cv2
import numpy as np
import pandas as pd
import pytest
from matplotlib.axes import Axes
from matplotlib.image import AxesImage
from matplotlib.text import Text

from dlcwatch.errors import BehaviorError
from dlcwatch.worker.qc import _behavior_runs, build_qc_figure, load_keypoints, make_qc_png

FRAMES = 60
SCORER = "DLC_resnet50_testJan1shuffle1_100000"
BODYPARTS = ["nose", "left_ear", "right_ear", "tail_base"]
# Frames under the 0.6 threshold per body part, by construction below.
UNDER = {"nose": 0, "left_ear": 15, "right_ear": 30, "tail_base": 60}


@pytest.fixture(scope="module")
def video(tmp_path_factory) -> Path:
    ffmpeg = shutil.which("ffmpeg")
    if ffmpeg is None:
        pytest.skip("ffmpeg is not installed")
    path = tmp_path_factory.mktemp("video") / "mouse1.mp4"
    subprocess.run([ffmpeg, "-nostdin", "-loglevel", "error", "-f", "lavfi",
                    "-i", "testsrc=size=128x128:rate=30", "-frames:v", str(FRAMES),
                    "-pix_fmt", "yuv420p", str(path)], check=True, timeout=60)
    return path


def keypoint_table(individuals: list[str] | None = None) -> pd.DataFrame:
    """A DLC table: points circling the centre; body part k is under threshold in UNDER[k] frames."""
    t = np.arange(FRAMES)
    columns, data = [], []
    for ind_index, individual in enumerate(individuals or [None]):
        for k, bodypart in enumerate(BODYPARTS):
            angle = t / 10 + k + ind_index
            likelihood = np.where(t < UNDER[bodypart], 0.2, 0.95)
            for coord, values in (("x", 64 + 40 * np.cos(angle)), ("y", 64 + 40 * np.sin(angle)),
                                  ("likelihood", likelihood)):
                columns.append((SCORER,) + ((individual,) if individuals else ()) + (bodypart, coord))
                data.append(values)
    names = ["scorer"] + (["individuals"] if individuals else []) + ["bodyparts", "coords"]
    return pd.DataFrame(np.array(data).T, columns=pd.MultiIndex.from_tuples(columns, names=names))


@pytest.fixture(scope="module")
def single_h5(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("kp") / "mouse1DLC.h5"
    keypoint_table().to_hdf(path, key="df_with_missing", format="table", mode="w")
    return path


@pytest.fixture(scope="module")
def multi_h5(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("kp") / "miceDLC.h5"
    keypoint_table(["mouse1", "mouse2"]).to_hdf(path, key="df_with_missing", format="table", mode="w")
    return path


@pytest.fixture(scope="module")
def behavior_csv(tmp_path_factory) -> Path:
    frame = np.arange(FRAMES)
    label = np.where(frame < 20, 0, np.where(frame < 45, 1, 2))
    path = tmp_path_factory.mktemp("behavior") / "mouse1_behavior.csv"
    pd.DataFrame({"frame": frame, "time": frame / 30, "label_id": label,
                  "label_name": np.array(["rest", "walk", "groom"])[label], "probability": 0.9}
                 ).to_csv(path, index=False)
    return path


def texts(figure) -> str:
    return "\n".join(t.get_text() for t in figure.findobj(Text))


def images(figure) -> list:
    return figure.findobj(AxesImage)


def axes_titled(figure, title: str):
    (found,) = [ax for ax in figure.findobj(Axes) if ax.get_title(loc="left") == title]
    return found


def test_png_is_written_and_decodes(tmp_path, single_h5, video, behavior_csv):
    out = tmp_path / "qc" / "mouse1_qc.png"
    assert make_qc_png(single_h5, video, out, behavior_csv=behavior_csv) == out
    picture = cv2.imread(str(out))
    assert picture is not None
    height, width = picture.shape[:2]
    assert width == 1600 and 600 <= height <= 2000
    assert picture.std() > 10  # not a blank canvas
    assert [p.name for p in out.parent.iterdir()] == ["mouse1_qc.png"]  # no temporary file left


def test_all_panels_with_the_right_numbers(single_h5, video, behavior_csv):
    figure = build_qc_figure(single_h5, video, behavior_csv=behavior_csv)
    text = texts(figure)
    for expected in ("QC: mouse1.mp4", "Likelihood over time per body part", "Frames under threshold",
                     "Behavior (ethogram)", "Time per behavior", "frame 12 (0.4 s)", "time (s)",
                     "2.0 s at 30 fps", f"model {SCORER}", "worst: tail_base (100%)"):
        assert expected in text
    bars = axes_titled(figure, "Frames under threshold").patches
    widths = {bodypart: bar.get_width() for bodypart, bar in zip(BODYPARTS, bars, strict=True)}
    assert widths == pytest.approx({bp: 100 * n / FRAMES for bp, n in UNDER.items()})
    shares = [bar.get_width() for bar in axes_titled(figure, "Time per behavior").patches]
    assert shares == pytest.approx([100 * 20 / 60, 100 * 25 / 60, 100 * 15 / 60])
    frames = images(figure)
    assert len(frames) == 4 and frames[0].get_array().shape[:2] == (128, 128)


def test_multi_animal_table(tmp_path, video):
    table = keypoint_table(["mouse1", "mouse2"])
    table.loc[FRAMES // 2:, (SCORER, "mouse2")] = np.nan  # mouse2 leaves half way: untracked, empty rows
    path = tmp_path / "miceDLC_el.h5"
    table.to_hdf(path, key="df_with_missing", format="table", mode="w")
    keypoints = load_keypoints(path)
    assert keypoints.multi_animal and keypoints.individuals == ["mouse1", "mouse2"]
    assert keypoints.x.shape == (FRAMES, 8)
    figure = build_qc_figure(path, video, n_frames=2)
    text = texts(figure)
    assert "tracked: mouse1 in 100% of frames, mouse2 in 50% of frames" in text
    assert "per animal" in text and "color = animal (mouse1, mouse2)" in text
    assert len(images(figure)) == 2
    # Each animal has one colour of its own, in the likelihood lines and on the frames.
    lines = {line.get_label(): line.get_color() for line in
             axes_titled(figure, "Likelihood over time per animal, mean over its body parts (untracked: 0)").lines}
    assert lines["mouse1"] != lines["mouse2"]
    first_frame = [ax for ax in figure.findobj(Axes) if ax.get_title().startswith("frame ")][0]
    drawn = {tuple(np.round(c.get_facecolor()[0], 3)) for c in first_frame.collections} - {(1.0, 1.0, 1.0, 1.0)}
    assert len(drawn) == 2  # both animals are in the first frame shown, one colour each (white: under a cross)


def test_many_body_parts_give_a_heatmap(tmp_path, video):
    table = keypoint_table()
    renamed = pd.concat({f"part{i}": table.xs(bp, axis=1, level="bodyparts", drop_level=True)[SCORER]
                         for i, bp in enumerate(BODYPARTS * 3)}, axis=1)
    renamed.columns = pd.MultiIndex.from_tuples([(SCORER,) + c for c in renamed.columns],
                                                names=["scorer", "bodyparts", "coords"])
    path = tmp_path / "many.h5"
    renamed.to_hdf(path, key="df_with_missing", format="table", mode="w")
    figure = build_qc_figure(path, video, n_frames=0)
    (heatmap,) = images(figure)
    assert heatmap.get_array().shape == (12, FRAMES)


@pytest.mark.parametrize("make_video", [
    lambda d: d / "missing.mp4",
    lambda d: (d / "broken.mp4").write_bytes(b"not a video" * 50) and d / "broken.mp4",
])
def test_unreadable_video_still_gives_a_picture(tmp_path, single_h5, make_video):
    video = make_video(tmp_path)
    out = make_qc_png(single_h5, video, tmp_path / "qc.png")
    assert cv2.imread(str(out)) is not None
    figure = build_qc_figure(single_h5, video)
    assert "Frames not shown" in texts(figure)
    assert images(figure) == []
    assert "frame\n" in texts(figure) + "\n"  # no frame rate: the time axis counts frames


def test_bad_behavior_file_is_noted_not_fatal(tmp_path, single_h5, video):
    broken = tmp_path / "behavior.csv"
    broken.write_text("frame,label\n1,rest\n")
    text = texts(build_qc_figure(single_h5, video, behavior_csv=broken, n_frames=0))
    assert "no ethogram: behavior file lacks columns: label_id, label_name" in text
    assert "Behavior (ethogram)" not in text


def test_bad_inputs_raise_and_leave_an_old_picture_alone(tmp_path, video):
    out = tmp_path / "qc.png"
    out.write_bytes(b"old")
    plain = tmp_path / "plain.h5"
    pd.DataFrame({"a": [1.0, 2.0]}).to_hdf(plain, key="df_with_missing", mode="w")
    with pytest.raises(BehaviorError, match="not a DeepLabCut keypoint table"):
        make_qc_png(plain, video, out)
    with pytest.raises(BehaviorError, match="not found"):
        make_qc_png(tmp_path / "none.h5", video, out)
    with pytest.raises(ValueError, match="likelihood_threshold"):
        make_qc_png(plain, video, out, likelihood_threshold=1.5)
    assert out.read_bytes() == b"old"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["plain.h5", "qc.png"]


def test_behavior_runs_split_on_label_changes_and_gaps():
    table = pd.DataFrame({"frame": [0, 1, 2, 5, 6, 7], "label_id": [1, 1, 0, 0, 1, 1],
                          "label_name": ["walk", "walk", "rest", "rest", "walk", "walk"]})
    assert _behavior_runs(table) == {"rest": [(2, 1), (5, 1)], "walk": [(0, 2), (6, 2)]}


def test_multi_animal_behavior_draws_a_band_per_individual(tmp_path, multi_h5, video, behavior_csv):
    one = pd.read_csv(behavior_csv)
    one.loc[50:, ["label_id", "label_name"]] = [-1, "unlabeled"]  # as predict.py writes them
    both = pd.concat([one.assign(individual="mouse1"), one.assign(individual="mouse2")])
    path = tmp_path / "mice_behavior.csv"
    both[["individual", *one.columns]].to_csv(path, index=False)
    figure = build_qc_figure(multi_h5, video, behavior_csv=path, n_frames=0)
    ethogram = axes_titled(figure, "Behavior (ethogram)")
    assert [t.get_text() for t in ethogram.get_yticklabels()] == ["mouse1", "mouse2"]
    assert [t.get_text() for t in ethogram.get_legend().get_texts()] == ["rest", "walk", "groom", "unlabeled"]
    shares = [bar.get_width() for bar in axes_titled(figure, "Time per behavior").patches]
    assert shares == pytest.approx([100 * 20 / 60, 100 * 25 / 60, 100 * 5 / 60, 100 * 10 / 60])
