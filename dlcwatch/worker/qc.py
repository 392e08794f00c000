"""The QC picture: one PNG per analyzed video, for a person to judge the tracking at a glance.

Panels: likelihood over time per body part; the share of frames under the likelihood
threshold per body part; the behavior ethogram when a behavior CSV exists; a few frames of
the video with the keypoints drawn on them.

This runs inside the analysis job, so it imports only numpy, pandas, matplotlib (the Agg
canvas, never pyplot, which keeps global state and may pick a GUI backend), cv2 and the
standard library.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import cv2
import numpy as np
import pandas as pd
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.colors import TwoSlopeNorm
from matplotlib.figure import Figure
from matplotlib.patches import Patch

from dlcwatch.behavior.keypoints import AnimalKeypoints, animals_from_table, read_keypoint_table
from dlcwatch.behavior.plots import label_colours
from dlcwatch.errors import BehaviorError
from dlcwatch.files import atomic_write

__all__ = ["make_qc_png", "build_qc_figure", "load_keypoints", "Keypoints"]

# Mean likelihood per bin above this many frames: a line of 100 000 points is a solid
# block of ink, and drawing it takes seconds per body part.
MAX_PLOT_POINTS = 1500
# Beyond this many body parts, lines become a tangle: draw a heatmap instead.
MAX_LINES = 8
MAX_HEATMAP_BINS = 600
MARKERS = ("o", "s", "^", "D", "v", "P", "*", "X")
_MARKER_NAMES = {"o": "●", "s": "■", "^": "▲", "D": "◆", "v": "▼", "P": "plus", "*": "star", "X": "cross"}
DPI = 100
FIGURE_WIDTH_IN = 16


@dataclass
class Keypoints:
    """A DLC keypoint table as arrays: one column per (individual, body part).

    ``individual`` is "" for single-animal tables. Arrays have shape (frames, points).
    """

    scorer: str
    points: list[tuple[str, str]]
    x: np.ndarray
    y: np.ndarray
    likelihood: np.ndarray
    multi_animal: bool = False
    bodyparts: list[str] = field(default_factory=list)
    individuals: list[str] = field(default_factory=list)

    @property
    def n_frames(self) -> int:
        return int(self.x.shape[0])


def load_keypoints(keypoints_h5: Path) -> Keypoints:
    """Given a DeepLabCut keypoint file (.h5 or .csv), return its Keypoints.

    Read with dlcwatch.behavior.keypoints, the one reader of DeepLabCut tables, so single- and
    multi-animal headers are understood the same way everywhere. Raise BehaviorError when the
    file is missing or holds no DeepLabCut keypoint table.
    """
    table = read_keypoint_table(Path(keypoints_h5))
    try:
        animals = animals_from_table(table)
    except BehaviorError as error:
        raise BehaviorError(f"{keypoints_h5}: {error}") from error
    return _plot_keypoints(animals, scorer=str(table.columns.get_level_values(0)[0]))


def _plot_keypoints(animals: list[AnimalKeypoints], scorer: str) -> Keypoints:
    """Given the animals of a table, return their points side by side, as the plots use them."""
    multi = any(animal.individual is not None for animal in animals)
    points = [(animal.individual or "", bodypart) for animal in animals for bodypart in animal.bodyparts]
    return Keypoints(
        scorer=scorer, points=points,
        x=np.concatenate([animal.xy[:, :, 0] for animal in animals], axis=1),
        y=np.concatenate([animal.xy[:, :, 1] for animal in animals], axis=1),
        likelihood=np.concatenate([animal.likelihood for animal in animals], axis=1),
        multi_animal=multi,
        bodyparts=list(dict.fromkeys(bodypart for _, bodypart in points)),
        individuals=list(dict.fromkeys(individual for individual, _ in points)),
    )


@dataclass
class _Video:
    """What could be learned from the video: frames per second, frame count, sample frames."""

    fps: float | None = None
    frame_count: int | None = None
    frames: list[tuple[int, np.ndarray]] = field(default_factory=list)  # (index, RGB image)
    problem: str | None = None


def _read_video(video_path: Path, keypoint_frames: int, n_frames: int) -> _Video:
    """Given a video, the keypoint frame count and how many frames to show, return a _Video.

    Never raise: a video that cannot be read gives a _Video with ``problem`` set.
    """
    video = _Video()
    if not Path(video_path).is_file():
        video.problem = f"video not found: {Path(video_path).name}"
        return video
    capture = cv2.VideoCapture(str(video_path))
    try:
        if not capture.isOpened():
            video.problem = f"OpenCV could not open {Path(video_path).name}"
            return video
        fps = capture.get(cv2.CAP_PROP_FPS)
        count = int(capture.get(cv2.CAP_PROP_FRAME_COUNT) or 0)
        video.fps = fps if fps and np.isfinite(fps) and 0 < fps < 10_000 else None
        video.frame_count = count if count > 0 else None
        if n_frames <= 0:
            return video
        usable = min(keypoint_frames, count) if count > 0 else keypoint_frames
        if usable <= 0:
            video.problem = "no frames to show"
            return video
        # Evenly spaced, away from the very first and last frames (often black or cut).
        wanted = np.unique(np.linspace(0, usable - 1, n_frames + 2)[1:-1].round().astype(int))
        for index in wanted:
            capture.set(cv2.CAP_PROP_POS_FRAMES, int(index))
            ok, frame = capture.read()
            if ok and frame is not None:
                video.frames.append((int(index), cv2.cvtColor(frame, cv2.COLOR_BGR2RGB)))
        if not video.frames:
            video.problem = f"OpenCV could not decode frames of {Path(video_path).name}"
    except cv2.error as error:
        video.problem = f"OpenCV failed on {Path(video_path).name}: {error}"
    finally:
        capture.release()
    return video


def _read_behavior(behavior_csv: Path | None) -> tuple[pd.DataFrame | None, str | None]:
    """Given a behavior CSV path (or None), return (table, None) or (None, problem text).

    The table (from dlcwatch.behavior.predict) has frame, time, label_id, label_name,
    probability, and a first column ``individual`` for multi-animal videos.
    """
    if behavior_csv is None:
        return None, None
    try:
        table = pd.read_csv(behavior_csv)
    except FileNotFoundError:
        return None, f"behavior file not found: {Path(behavior_csv).name}"
    except Exception as error:  # noqa: BLE001 - any parse error only costs the panel
        return None, f"behavior file unreadable: {type(error).__name__}"
    missing = {"frame", "label_id", "label_name"} - set(table.columns)
    if missing:
        return None, f"behavior file lacks columns: {', '.join(sorted(missing))}"
    table = table.dropna(subset=["frame", "label_id", "label_name"])
    if table.empty:
        return None, "behavior file has no rows"
    table = table.assign(label_name=table["label_name"].astype(str),
                         label_id=pd.to_numeric(table["label_id"], errors="coerce").fillna(-1).astype(int))
    if "individual" in table.columns:
        table = table.assign(individual=table["individual"].astype(str))
    return table, None


def _label_order(table: pd.DataFrame) -> list[str]:
    """Given the behavior table, return its label names by label id, "unlabeled" (id < 0) last."""
    ids = table.groupby("label_name")["label_id"].min()
    return sorted(ids.index, key=lambda name: (ids[name] < 0, ids[name], name))


def _label_colors(table: pd.DataFrame) -> dict[str, tuple]:
    """Given the behavior table, return a color per label name: dlcwatch.behavior.plots' color of
    its label id, so a behavior has one color in every picture."""
    ids = table.groupby("label_name")["label_id"].min()
    by_id = label_colours([int(ids[name]) for name in ids.index])
    return {name: by_id[int(ids[name])] for name in ids.index}


def _behavior_runs(table: pd.DataFrame) -> dict[str, list[tuple[int, int]]]:
    """Given one animal's behavior rows, return {label name: [(first frame, length), ...]}.

    A run ends where the label changes or frames are missing.
    """
    table = table.sort_values("frame")
    frames = table["frame"].to_numpy(dtype=int)
    labels = table["label_name"].astype(str).to_numpy()
    runs: dict[str, list[tuple[int, int]]] = {name: [] for name in _label_order(table)}
    start = 0
    for i in range(1, len(frames) + 1):
        if i == len(frames) or labels[i] != labels[start] or frames[i] != frames[i - 1] + 1:
            runs[labels[start]].append((int(frames[start]), int(frames[i - 1] - frames[start] + 1)))
            start = i
    return runs


def _ethogram_rows(table: pd.DataFrame) -> int:
    """Given the behavior table, return the ethogram's row count: one per individual or per label."""
    if "individual" in table.columns:
        return table["individual"].nunique()
    return table["label_name"].nunique()


def _binned_mean(values: np.ndarray, max_points: int) -> tuple[np.ndarray, np.ndarray, int]:
    """Given (frames, series) values, return (bin centre frames, binned means, frames per bin)."""
    n = values.shape[0]
    per_bin = max(1, int(np.ceil(n / max_points)))
    if per_bin == 1:
        return np.arange(n, dtype=float), values, 1
    n_bins = int(np.ceil(n / per_bin))
    padded = np.full((n_bins * per_bin, values.shape[1]), np.nan)
    padded[:n] = values
    with np.errstate(invalid="ignore"):
        means = np.nanmean(padded.reshape(n_bins, per_bin, -1), axis=1)
    centres = np.arange(n_bins) * per_bin + (per_bin - 1) / 2
    return centres, means, per_bin


def _colors(n: int) -> list:
    """Given a count, return that many distinct colors (tab10, then tab20 for more)."""
    from matplotlib import colormaps

    cmap = colormaps["tab10" if n <= 10 else "tab20"]
    return [cmap(i % cmap.N) for i in range(n)]


def build_qc_figure(keypoints_h5: Path, video_path: Path, *, likelihood_threshold: float = 0.6,
                    behavior_csv: Path | None = None, n_frames: int = 4, title: str | None = None) -> Figure:
    """Given a keypoint file, its video and options, return the QC figure (not yet saved).

    `title` names the video in the heading (default: the video's file name); jobs analyze a
    renamed copy, and a person wants to see the original name.

    Raise BehaviorError for a missing or malformed keypoint file and
    ValueError for a threshold outside [0, 1] or a negative n_frames. Problems with the
    video or the behavior file never raise: the panel is left out and the figure says why.
    """
    if not 0.0 <= likelihood_threshold <= 1.0:
        raise ValueError(f"likelihood_threshold must be within [0, 1], not {likelihood_threshold}")
    if n_frames < 0:
        raise ValueError(f"n_frames must be 0 or more, not {n_frames}")
    keypoints = load_keypoints(keypoints_h5)
    video = _read_video(Path(video_path), keypoints.n_frames, n_frames)
    behavior, behavior_problem = _read_behavior(behavior_csv)

    # Time in seconds where the video tells the frame rate, frame numbers otherwise; both
    # time panels share the unit so they line up.
    scale = 1.0 / video.fps if video.fps else 1.0
    x_label = "time (s)" if video.fps else "frame"

    bodyparts = keypoints.bodyparts
    header_lines = _header_lines(keypoints, video, Path(video_path), likelihood_threshold, behavior_problem)
    header_height = 0.45 + 0.22 * len(header_lines)
    top_height = max(3.6, 0.22 * len(keypoints.points) + 1.2)
    behavior_height = (1.0 + 0.3 * _ethogram_rows(behavior)) if behavior is not None else 0.0
    show_frames = n_frames > 0
    frames_height = _frames_height(video) if show_frames else 0.0
    # The ethogram shares the plots' subfigure so that its time axis lines up with the
    # likelihood plot above it.
    heights = [h for h in (header_height, top_height + behavior_height, frames_height) if h > 0]

    fig = Figure(figsize=(FIGURE_WIDTH_IN, sum(heights)), dpi=DPI, layout="constrained")
    FigureCanvasAgg(fig)
    rows = fig.subfigures(len(heights), 1, height_ratios=heights, squeeze=False)[:, 0]
    row_iter = iter(rows)
    # One colour per animal where there are several (people follow animals, and a swap of
    # identities shows as a colour jumping from one animal to the other); else per body part.
    keys = keypoints.individuals if keypoints.multi_animal else bodyparts
    colors = dict(zip(keys, _colors(len(keys)), strict=True))

    header = next(row_iter)
    header.text(0.5, 0.97, f"QC: {title or Path(video_path).name}", ha="center", va="top", fontsize=15,
                fontweight="bold")
    header.text(0.5, 0.97 - 0.45 / header_height, "\n".join(header_lines), ha="center", va="top",
                fontsize=10, linespacing=1.5)

    plots = next(row_iter)
    if behavior is None:
        ax_lines, ax_bars = plots.subplots(1, 2, width_ratios=[3, 1.2])
    else:
        grid = plots.add_gridspec(2, 2, width_ratios=[3, 1.2], height_ratios=[top_height, behavior_height])
        ax_lines, ax_bars = plots.add_subplot(grid[0, 0]), plots.add_subplot(grid[0, 1])
        ax_behavior = plots.add_subplot(grid[1, 0], sharex=ax_lines)
        ax_shares = plots.add_subplot(grid[1, 1])
        _plot_ethogram(ax_behavior, ax_shares, behavior, scale, x_label)
    _plot_likelihood(ax_lines, keypoints, colors, likelihood_threshold, scale, x_label)
    _plot_under_threshold(ax_bars, keypoints, colors, likelihood_threshold)

    if show_frames:
        _plot_frames(next(row_iter), keypoints, video, colors, likelihood_threshold)
    return fig


def _frames_height(video: _Video) -> float:
    """Given the sample frames, return the inches their row needs: their aspect ratio at full width."""
    if not video.frames:
        return 0.6  # one line saying why there are none
    height, width = video.frames[0][1].shape[:2]
    per_frame_width = (FIGURE_WIDTH_IN - 0.5) / len(video.frames)
    return min(3.6, per_frame_width * height / max(width, 1)) + 0.7  # + titles


def _header_lines(keypoints: Keypoints, video: _Video, video_path: Path, threshold: float,
                  behavior_problem: str | None) -> list[str]:
    """Return the summary lines under the title: facts, the under-threshold share, problems."""
    n = keypoints.n_frames
    facts = [f"{n} frames"]
    if video.fps:
        facts.append(f"{n / video.fps:.1f} s at {video.fps:.3g} fps")
    if video.frame_count and video.frame_count != n:
        facts.append(f"the video has {video.frame_count} frames")
    facts.append(f"model {keypoints.scorer}")
    under = np.nan_to_num(keypoints.likelihood, nan=0.0) < threshold
    summary = f"{100 * under.mean() if under.size else 0.0:.1f}% of keypoints under likelihood {threshold:g}"
    if under.size:
        per_point = under.mean(axis=0)
        worst = int(np.argmax(per_point))
        summary += f" · worst: {_point_label(keypoints, worst)} ({100 * per_point[worst]:.0f}%)"
    lines = [" · ".join(facts), summary]
    if keypoints.multi_animal and n:
        lines.append("tracked: " + ", ".join(f"{individual} in {100 * share:.0f}% of frames"
                                             for individual, share in tracked_fractions(keypoints).items()))
    if video.problem:
        lines.append(f"Note: frames not shown: {video.problem}")
    if behavior_problem:
        lines.append(f"Note: no ethogram: {behavior_problem}")
    return lines


def tracked_fractions(keypoints: Keypoints) -> dict[str, float]:
    """Given multi-animal keypoints, return each individual's share of frames with any position."""
    shares = {}
    for individual in keypoints.individuals:
        columns = [j for j, (owner, _) in enumerate(keypoints.points) if owner == individual]
        seen = np.isfinite(keypoints.x[:, columns]).any(axis=1) if keypoints.n_frames else np.zeros(0, bool)
        shares[individual] = float(seen.mean()) if seen.size else 0.0
    return shares


def _point_label(keypoints: Keypoints, j: int) -> str:
    """Given a point index, return "bodypart" or "individual/bodypart"."""
    individual, bodypart = keypoints.points[j]
    return f"{individual}/{bodypart}" if keypoints.multi_animal else bodypart


def _plot_likelihood(ax, keypoints: Keypoints, colors: dict, threshold: float, scale: float,
                     x_label: str) -> None:
    """Plot likelihood over time per body part (the mean over individuals).

    Lines for a few body parts; a heatmap (a row per body part) for more, where lines
    would be an unreadable tangle.
    """
    # In multi-animal tables NaN means "not detected": that is likelihood 0 for QC.
    likelihood = np.nan_to_num(keypoints.likelihood, nan=0.0)
    by_animal = keypoints.multi_animal
    names = keypoints.individuals if by_animal else keypoints.bodyparts
    level = 0 if by_animal else 1
    per_bodypart = np.column_stack([
        likelihood[:, [j for j, point in enumerate(keypoints.points) if point[level] == name]].mean(axis=1)
        for name in names
    ]) if keypoints.n_frames else np.zeros((0, len(names)))
    heatmap = len(names) > MAX_LINES
    centres, means, per_bin = _binned_mean(per_bodypart, MAX_HEATMAP_BINS if heatmap else MAX_PLOT_POINTS)
    end = max(keypoints.n_frames - 1, 1) * scale

    if heatmap:
        # Red below the threshold, green above it, so trouble stands out at a glance.
        norm = TwoSlopeNorm(vmin=0.0, vcenter=min(max(threshold, 0.01), 0.99), vmax=1.0)
        image = ax.imshow(means.T, aspect="auto", interpolation="nearest", cmap="RdYlGn", norm=norm,
                          extent=(0, end if keypoints.n_frames else 1, len(names) - 0.5, -0.5))
        ax.set_yticks(range(len(names)), names, fontsize=8)
        bar = ax.figure.colorbar(image, ax=ax, location="right", fraction=0.04, pad=0.01)
        bar.set_label("likelihood")
        bar.ax.axhline(threshold, color="black", lw=1.5)
        bar.set_ticks(sorted({0.0, threshold, 1.0}))
    else:
        for k, name in enumerate(names):
            ax.plot(centres * scale, means[:, k], color=colors[name], lw=1.0, label=name)
        ax.axhline(threshold, color="red", ls="--", lw=1.2, label=f"threshold {threshold:g}")
        ax.set_ylim(-0.03, 1.03)
        ax.set_ylabel("likelihood")
        ax.grid(alpha=0.3)
        ax.legend(loc="upper left", bbox_to_anchor=(1.0, 1.0), fontsize=8, frameon=False)
        if keypoints.n_frames:
            ax.set_xlim(0, end)
    ax.set_xlabel(x_label)
    title = "Likelihood over time per animal, mean over its body parts (untracked: 0)" if by_animal \
        else "Likelihood over time per body part"
    if per_bin > 1:
        title += f" (mean per {per_bin} frames)"
    ax.set_title(title, loc="left", fontsize=11)


def _plot_under_threshold(ax, keypoints: Keypoints, colors: dict, threshold: float) -> None:
    """Plot, per body part, the share of frames under the threshold (grouped by individual)."""
    with np.errstate(invalid="ignore"):
        under = (np.nan_to_num(keypoints.likelihood, nan=0.0) < threshold).mean(axis=0) * 100 \
            if keypoints.n_frames else np.zeros(len(keypoints.points))
    bodyparts = keypoints.bodyparts
    individuals = keypoints.individuals
    group = len(individuals)
    height = 0.8 / group
    for i, individual in enumerate(individuals):
        ys, widths, bar_colors = [], [], []
        for j, (ind, bodypart) in enumerate(keypoints.points):
            if ind != individual:
                continue
            ys.append(bodyparts.index(bodypart) + (i - (group - 1) / 2) * height)
            widths.append(under[j])
            bar_colors.append(colors.get(bodypart))
        label = individual if keypoints.multi_animal else None
        bars = ax.barh(ys, widths, height=height * 0.9, color=colors[individual] if keypoints.multi_animal else bar_colors,
                       label=label, edgecolor="black", linewidth=0.3)
        if group == 1 or len(bodyparts) * group <= 40:
            ax.bar_label(bars, labels=[f"{w:.0f}%" for w in widths], fontsize=7, padding=2)
    ax.set_yticks(range(len(bodyparts)), bodyparts, fontsize=8)
    ax.invert_yaxis()  # first body part on top, as in the legend
    ax.set_xlim(0, 112)  # room for the percent labels
    ax.set_xlabel(f"% of frames with likelihood < {threshold:g}")
    ax.set_title("Frames under threshold", loc="left", fontsize=11)
    ax.grid(axis="x", alpha=0.3)
    if keypoints.multi_animal:
        ax.legend(title="individual", fontsize=7, title_fontsize=8, loc="lower right")


def _plot_ethogram(ax, ax_shares, behavior: pd.DataFrame, scale: float, x_label: str) -> None:
    """Plot the behavior labels over time and each label's share of frames.

    One row per label for one animal; for several, one band per individual, colored by label.
    """
    colors = _label_colors(behavior)
    labels = _label_order(behavior)
    if "individual" in behavior.columns:
        rows = list(dict.fromkeys(behavior["individual"]))
        for row, individual in enumerate(rows):
            for label, spans in _behavior_runs(behavior[behavior["individual"] == individual]).items():
                ax.broken_barh([(start * scale, length * scale) for start, length in spans],
                               (row - 0.4, 0.8), facecolors=colors[label])
        handles = [Patch(facecolor=colors[label], label=label) for label in labels]
        ax.legend(handles=handles, loc="upper left", bbox_to_anchor=(1.0, 1.0), fontsize=8,
                  frameon=False, title="behavior", title_fontsize=8)
    else:
        rows = labels
        for row, (label, spans) in enumerate(_behavior_runs(behavior).items()):
            ax.broken_barh([(start * scale, length * scale) for start, length in spans],
                           (row - 0.4, 0.8), facecolors=colors[label])
    ax.set_yticks(range(len(rows)), rows, fontsize=8)
    ax.set_ylim(len(rows) - 0.5, -0.5)
    ax.set_xlabel(x_label)
    ax.set_title("Behavior (ethogram)", loc="left", fontsize=11)
    ax.grid(axis="x", alpha=0.3)

    counts = behavior["label_name"].value_counts()
    shares = [100 * counts.get(label, 0) / len(behavior) for label in labels]
    bars = ax_shares.barh(range(len(labels)), shares, color=[colors[label] for label in labels],
                          edgecolor="black", linewidth=0.3)
    ax_shares.bar_label(bars, labels=[f"{share:.0f}%" for share in shares], fontsize=7, padding=2)
    ax_shares.set_yticks(range(len(labels)), labels, fontsize=8)
    ax_shares.set_ylim(len(labels) - 0.5, -0.5)
    ax_shares.set_xlim(0, 112)
    ax_shares.set_xlabel("% of frames" + (" (all individuals)" if "individual" in behavior.columns else ""))
    ax_shares.set_title("Time per behavior", loc="left", fontsize=11)
    ax_shares.grid(axis="x", alpha=0.3)


def _plot_frames(subfig, keypoints: Keypoints, video: _Video, colors: dict, threshold: float) -> None:
    """Show sample frames with their keypoints, or say why there are none."""
    if not video.frames:
        ax = subfig.subplots()
        ax.axis("off")
        ax.text(0.5, 0.5, f"Frames not shown: {video.problem or 'no frames read'}", ha="center",
                va="center", fontsize=11, color="#a00000", transform=ax.transAxes)
        return
    axes = np.atleast_1d(subfig.subplots(1, len(video.frames)))
    if keypoints.multi_animal:
        caption = (f"Sample frames: color = animal ({', '.join(keypoints.individuals)}), shape = body part ("
                   + ", ".join(f"{_MARKER_NAMES.get(MARKERS[i % len(MARKERS)], MARKERS[i % len(MARKERS)])} {part}"
                               for i, part in enumerate(keypoints.bodyparts))
                   + f"), filled = likelihood ≥ {threshold:g}, × = under")
    else:
        caption = f"Sample frames: color = body part, filled = likelihood ≥ {threshold:g}, × = under"
    subfig.suptitle(caption, fontsize=10, x=0.01, ha="left")
    for ax, (index, image) in zip(axes, video.frames, strict=True):
        ax.imshow(image)
        ax.set_xticks([])
        ax.set_yticks([])
        time = f" ({index / video.fps:.1f} s)" if video.fps else ""
        ax.set_title(f"frame {index}{time}", fontsize=9)
        if index >= keypoints.n_frames:
            continue
        xs, ys, ls = keypoints.x[index], keypoints.y[index], keypoints.likelihood[index]
        for j, (individual, bodypart) in enumerate(keypoints.points):
            if not (np.isfinite(xs[j]) and np.isfinite(ys[j])):
                continue
            if keypoints.multi_animal:
                marker = MARKERS[keypoints.bodyparts.index(bodypart) % len(MARKERS)]
                color = colors[individual]
            else:
                marker, color = "o", colors[bodypart]
            good = np.isfinite(ls[j]) and ls[j] >= threshold
            if not good:
                # A white cross underneath keeps the colored one visible on any background.
                ax.scatter(xs[j], ys[j], s=48, marker="x", color="white", linewidths=3.6, zorder=2)
            ax.scatter(xs[j], ys[j], s=40 if good else 48, marker=marker if good else "x",
                       color=color, edgecolors="white" if good else None,
                       linewidths=0.7 if good else 2.0, zorder=3)
        height, width = image.shape[:2]
        # Keypoints outside the image would otherwise stretch the axes.
        ax.set_xlim(-0.5, width - 0.5)
        ax.set_ylim(height - 0.5, -0.5)


def make_qc_png(keypoints_h5: Path, video_path: Path, out_png: Path, *, likelihood_threshold: float = 0.6,
                behavior_csv: Path | None = None, n_frames: int = 4, title: str | None = None) -> Path:
    """Given a keypoint file and its video, write the QC picture to out_png and return out_png.

    The file appears whole or not at all (written to a temporary file, then renamed).
    Raise BehaviorError for a missing or malformed keypoint file, and
    OSError when the picture cannot be written.
    """
    out_png = Path(out_png)
    fig = build_qc_figure(keypoints_h5, video_path, likelihood_threshold=likelihood_threshold,
                          behavior_csv=behavior_csv, n_frames=n_frames, title=title)
    out_png.parent.mkdir(parents=True, exist_ok=True)
    with atomic_write(out_png) as stream:
        fig.savefig(stream, format="png", dpi=DPI)
    return out_png
