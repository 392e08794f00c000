"""B-SOiD pose features, vectorised with numpy (no Python loop over frames).

The definitions follow B-SOiD (Hsu & Yttri 2021, ``bsoid_app``), so a classifier trained by the
B-SOiD app can be used on these features. For B body parts and P = B·(B−1)/2 pairs (in
``itertools.combinations`` order), the per-frame features, in this column order, are:

1. P distances between the two body parts of each pair, at the later frame of each step;
2. P angle changes, in degrees, of each pair's vector from one frame to the next; the sign is
   B-SOiD's: positive when the vector turns clockwise in (x, y) (image coordinates, y down,
   show that as counter-clockwise on screen);
3. B displacements of each body part from one frame to the next.

Row t describes the step from frame t to frame t + 1, so N frames give N − 1 rows. Each column is
smoothed with a centred boxcar of ``round(0.05·fps)·2 − 1`` frames (ends averaged over the frames
that exist), then bins of ``round(fps/10)`` rows are formed: distances averaged, angles and
displacements summed.

Where this deliberately differs from B-SOiD:

- fractional frame rates (29.97) keep their value: B-SOiD's app truncates them to int (29), which
  makes its bins 3 frames wide but its frame shifts only 2, so its labels drift out of step with
  the video. Here the bin width and the number of frame shifts are the same integer,
  ``round(fps/10)`` (at least 1, so at 5 fps and below a bin is one frame, longer than 100 ms);
- at 10 fps and below, where B-SOiD's smoothing width comes out as −1 and pandas refuses it,
  there is no smoothing;
- the last complete bin is kept (B-SOiD's ``range`` drops it);
- frames before a body part's first confident frame take that first confident position (B-SOiD
  keeps frame 0's raw value, confident or not);
- the likelihood histogram uses every frame (B-SOiD skips frame 0) and ignores NaN; histograms
  B-SOiD crashes on (counts that never stop falling) get a threshold too, see
  :func:`likelihood_threshold`;
- an angle change of exactly 180° is ±180° here; B-SOiD's ``sign(0)`` turns it into 0.

A body part that is never confident (every likelihood or position NaN: the only way the adaptive
threshold rejects all frames, since the highest likelihood always lies in the top bin) has no
position; its features are NaN, and so are the bins that use them. Training drops such bins;
prediction labels their frames −1 ("unlabeled"). A warning names the body part.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

__all__ = [
    "FEATURE_VERSION",
    "CleanPositions",
    "bin_features",
    "boxcar_centred",
    "clean_positions",
    "feature_names",
    "frame_features",
    "frame_shift_windows",
    "frames_per_bin",
    "likelihood_threshold",
    "pair_indices",
    "smoothing_window",
    "training_bins",
    "window_of_each_frame",
]

# Stored in every model; bump when any definition above changes so old models are refused.
FEATURE_VERSION = "bsoid-1"

_HISTOGRAM_BINS = 10


@dataclass(frozen=True)
class CleanPositions:
    """Positions after the likelihood filter, with what the filter did.

    ``xy``: frames × body parts × 2, unconfident frames replaced (NaN for a never-confident part);
    ``thresholds``: the likelihood threshold of each body part (NaN when it has no finite value);
    ``filled_fraction``: the share of frames replaced, per body part;
    ``never_confident``: indices of body parts with no confident frame at all.
    """

    xy: np.ndarray
    thresholds: np.ndarray
    filled_fraction: np.ndarray
    never_confident: tuple[int, ...]


def smoothing_window(fps: float) -> int:
    """Given a frame rate, return the boxcar width in frames: ``round(0.05·fps)·2 − 1``, at least 1.

    Rounding is B-SOiD's, expression included (halves to even: 50 fps → 3 frames), so models
    imported from the B-SOiD app see the features they were trained on. At 10 fps and below
    B-SOiD gets a width of −1 and fails; here the width is 1 (no smoothing).
    """
    return max(1, int(round(0.05 / (1 / fps))) * 2 - 1)


def frames_per_bin(fps: float) -> int:
    """Given a frame rate, return the frames in one 10 Hz bin, ``round(fps/10)``, at least 1.

    Rounding is B-SOiD's (halves to even: 25 fps → 2 frames). This is also the number of frame
    shifts, so every frame gets exactly one label.
    """
    return max(1, int(round(fps / 10)))


def pair_indices(n_bodyparts: int) -> tuple[np.ndarray, np.ndarray]:
    """Given a number of body parts, return the two index arrays of every pair in combinations order."""
    return np.triu_indices(n_bodyparts, k=1)


def feature_names(bodyparts: list[str] | tuple[str, ...]) -> list[str]:
    """Given body-part names, return the name of every feature column in order."""
    first, second = pair_indices(len(bodyparts))
    pairs = [f"{bodyparts[i]}-{bodyparts[j]}" for i, j in zip(first, second)]
    return (
        [f"distance {pair}" for pair in pairs]
        + [f"angle change {pair}" for pair in pairs]
        + [f"displacement {name}" for name in bodyparts]
    )


def likelihood_threshold(likelihood: np.ndarray) -> float:
    """Given one body part's likelihoods, return B-SOiD's adaptive threshold (NaN if none is finite).

    A 10-bin histogram of the likelihoods usually falls from a pile of bad detections to a trough,
    then rises to the pile of good ones; the threshold is the left edge of the first bin where the
    counts stop falling. Like B-SOiD, when that happens at bin 0 or 1 (the counts do not fall at
    the start), the next such bin is used instead. When the counts fall all the way (B-SOiD raises
    IndexError) the threshold is the left edge of the last bin, which keeps the highest tenth.
    """
    values = likelihood[np.isfinite(likelihood)]
    if values.size == 0:
        return float("nan")
    counts, edges = np.histogram(values, bins=_HISTOGRAM_BINS)
    stops_falling = np.flatnonzero(np.diff(counts) >= 0)
    if stops_falling.size == 0:
        return float(edges[-2])
    if stops_falling[0] > 1 or stops_falling.size == 1:
        return float(edges[stops_falling[0]])
    return float(edges[stops_falling[1]])


def clean_positions(xy: np.ndarray, likelihood: np.ndarray) -> CleanPositions:
    """Given positions (frames × body parts × 2) and likelihoods (frames × body parts), return
    CleanPositions: frames below each body part's threshold (or with NaN) take the position of the
    previous confident frame; frames before the first confident one take the first confident one.
    """
    xy = np.asarray(xy, dtype=np.float64)
    likelihood = np.asarray(likelihood, dtype=np.float64)
    n_frames, n_parts = likelihood.shape
    thresholds = np.array([likelihood_threshold(likelihood[:, part]) for part in range(n_parts)])
    if n_frames == 0:
        return CleanPositions(xy.copy(), thresholds, np.zeros(n_parts), ())
    with np.errstate(invalid="ignore"):
        good = (likelihood >= thresholds) & np.isfinite(xy).all(axis=-1)

    frame_index = np.arange(n_frames)[:, None]
    # For each frame, the index of the latest confident frame at or before it (−1 if none yet)...
    last_good = np.maximum.accumulate(np.where(good, frame_index, -1), axis=0)
    # ...and, for the frames before the first confident one, that first confident frame.
    first_good = np.where(good.any(axis=0), good.argmax(axis=0), 0)
    source = np.where(last_good >= 0, last_good, first_good[None, :])
    cleaned = np.take_along_axis(xy, source[:, :, None], axis=0)

    never = tuple(int(part) for part in np.flatnonzero(~good.any(axis=0)))
    cleaned[:, list(never), :] = np.nan
    return CleanPositions(cleaned, thresholds, 1.0 - good.mean(axis=0), never)


def boxcar_centred(values: np.ndarray, window: int, out: np.ndarray | None = None) -> np.ndarray:
    """Given rows × columns and an odd window, return the centred moving average along the rows
    (written into ``out`` when given, which must not overlap ``values``).

    Near the ends, and around NaN, the average is over the values that exist (pandas'
    ``rolling(window, min_periods=1, center=True).mean()``, which B-SOiD uses); an all-NaN
    stretch stays NaN.
    """
    values = np.asarray(values, dtype=np.float64)
    if out is None:
        out = np.empty_like(values)
    half = min(window // 2, max(0, values.shape[0] - 1))
    finite = np.isfinite(values)
    has_gaps = not finite.all()
    source = np.where(finite, values, 0.0) if has_gaps else values
    out[...] = source
    if half == 0 and not has_gaps:
        return out
    # Shifted additions, one per offset in the window (a handful), not one per frame; unlike a
    # running cumulative sum they carry no rounding drift along an hour of frames.
    counts = finite.astype(np.float64) if has_gaps else np.ones(values.shape[0])
    present = counts.copy()
    for offset in range(1, half + 1):
        out[offset:] += source[:-offset]
        out[:-offset] += source[offset:]
        counts[offset:] += present[:-offset]
        counts[:-offset] += present[offset:]
    if not has_gaps:
        counts = counts.reshape((-1,) + (1,) * (values.ndim - 1))
    with np.errstate(invalid="ignore", divide="ignore"):
        out /= counts
    return out


# Frames per block when computing raw features: small enough that the temporaries of a block
# stay in the CPU cache, large enough that numpy's per-call overhead does not matter.
_BLOCK_FRAMES = 4096


def _raw_features(xy: np.ndarray, out: np.ndarray) -> None:
    """Write unsmoothed features into ``out`` (frames × features): row t + 1 holds the step from
    frame t to t + 1 and the distances at frame t + 1; row 0 holds only frame 0's distances."""
    n_frames, n_parts = xy.shape[:2]
    n_pairs = n_parts * (n_parts - 1) // 2
    first, second = pair_indices(n_parts)
    out[0, n_pairs:] = np.nan
    for start in range(0, n_frames, _BLOCK_FRAMES):
        # Each block also reads the frame before it, for the steps that cross the block edge.
        begin = max(0, start - 1)
        stop = min(n_frames, start + _BLOCK_FRAMES)
        x, y = xy[begin:stop, :, 0], xy[begin:stop, :, 1]
        dx, dy = x[:, first] - x[:, second], y[:, first] - y[:, second]
        out[start:stop, :n_pairs] = np.hypot(dx, dy)[start - begin :]
        # z of (vector after) × (vector before): B-SOiD's sign convention for the turn between them.
        cross = dx[1:] * dy[:-1] - dy[1:] * dx[:-1]
        dot = dx[1:] * dx[:-1] + dy[1:] * dy[:-1]
        steps = slice(begin + 1, stop)
        out[steps, n_pairs : 2 * n_pairs] = np.degrees(np.arctan2(cross, dot))
        out[steps, 2 * n_pairs :] = np.hypot(np.diff(x, axis=0), np.diff(y, axis=0))


def frame_features(xy: np.ndarray, fps: float) -> np.ndarray:
    """Given cleaned positions (frames × body parts × 2) and the frame rate, return the smoothed
    per-step features: (frames − 1) × (2·pairs + body parts), in the module's column order."""
    xy = np.asarray(xy, dtype=np.float64)
    n_frames, n_parts = xy.shape[:2]
    n_pairs = n_parts * (n_parts - 1) // 2
    if n_frames < 2:
        return np.empty((0, 2 * n_pairs + n_parts))
    raw = np.empty((n_frames, 2 * n_pairs + n_parts))
    _raw_features(xy, raw)
    window = smoothing_window(fps)
    smoothed = np.empty_like(raw)
    # Distances are smoothed over all frames before dropping frame 0, as B-SOiD does; angle changes
    # and displacements exist from the first step (row 1) on.
    boxcar_centred(raw[:, :n_pairs], window, out=smoothed[:, :n_pairs])
    boxcar_centred(raw[1:, n_pairs:], window, out=smoothed[1:, n_pairs:])
    return smoothed[1:]


def bin_features(rows: np.ndarray, n_distances: int, bin_rows: int, offset: int = 0) -> np.ndarray:
    """Given per-step feature rows, the number of distance columns, a bin width and a start offset,
    return the complete bins from ``offset`` on: distance columns averaged, the others summed.

    Rows left over after the last complete bin are not used.
    """
    rows = np.asarray(rows, dtype=np.float64)
    n_bins = max(0, (rows.shape[0] - offset) // bin_rows)
    blocks = rows[offset : offset + n_bins * bin_rows].reshape(n_bins, bin_rows, rows.shape[1])
    return np.concatenate(
        [blocks[:, :, :n_distances].mean(axis=1), blocks[:, :, n_distances:].sum(axis=1)], axis=1
    )


def frame_shift_windows(rows: np.ndarray, n_distances: int, bin_rows: int) -> np.ndarray:
    """Given per-step feature rows, return B-SOiD's frame-shifted bins, interleaved.

    The binning is run ``bin_rows`` times, shifted by one row each time; interleaving the results
    gives one bin starting at every row: output row j is the bin of rows j … j + bin_rows − 1.
    There are ``len(rows) − bin_rows + 1`` of them (none when there are fewer rows than one bin).
    """
    n_windows = max(0, rows.shape[0] - bin_rows + 1)
    windows = np.empty((n_windows, rows.shape[1]))
    for shift in range(min(bin_rows, n_windows)):
        windows[shift::bin_rows] = bin_features(rows, n_distances, bin_rows, offset=shift)
    return windows


def window_of_each_frame(n_frames: int, bin_rows: int) -> np.ndarray:
    """Given the number of frames and the bin width, return for every frame the frame-shift
    window that labels it, or −1 when the video is shorter than one bin.

    Window j spans frames j … j + bin_rows; frame f takes the window whose span is centred on it
    (j = f − bin_rows // 2), clipped at both ends of the video.
    """
    n_windows = n_frames - 1 - bin_rows + 1
    if n_windows <= 0:
        return np.full(n_frames, -1, dtype=np.int64)
    return np.clip(np.arange(n_frames) - bin_rows // 2, 0, n_windows - 1)


def training_bins(xy: np.ndarray, likelihood: np.ndarray, fps: float) -> np.ndarray:
    """Given raw positions and likelihoods of one animal and the frame rate, return its
    non-overlapping 10 Hz feature bins (what B-SOiD trains on), NaN rows included."""
    cleaned = clean_positions(xy, likelihood)
    rows = frame_features(cleaned.xy, fps)
    n_parts = cleaned.xy.shape[1]
    return bin_features(rows, n_parts * (n_parts - 1) // 2, frames_per_bin(fps))
