"""PNG pictures: the training embedding coloured by cluster, and the ethogram of a labelled video.

Figures are drawn on matplotlib's Agg canvas directly, never through pyplot, so nothing here
touches the process-wide backend or figure registry of the program that calls it.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.colors import ListedColormap
from matplotlib.figure import Figure
from matplotlib.patches import Patch

from dlcwatch.files import atomic_write

__all__ = ["label_colours", "save_embedding_png", "save_ethogram_png"]

_UNLABELED_COLOUR = (0.85, 0.85, 0.85, 1.0)


def label_colours(label_ids: Sequence[int]) -> dict[int, tuple]:
    """Given label ids, return an RGBA colour for each: a fixed colour per id (tab20), grey for −1."""
    import matplotlib

    palette = matplotlib.colormaps["tab20"].colors
    # tab20 pairs a dark and a light shade; even ids take the dark ones first so neighbours differ.
    order = list(range(0, 20, 2)) + list(range(1, 20, 2))
    return {
        int(label): _UNLABELED_COLOUR if label < 0 else (*palette[order[int(label) % 20]], 1.0)
        for label in label_ids
    }


def _save(figure: Figure, path: Path) -> Path:
    """Render a figure to PNG at ``path`` atomically and return the path."""
    FigureCanvasAgg(figure)
    with atomic_write(path) as handle:
        figure.savefig(handle, format="png", dpi=100)
    return Path(path)


def save_embedding_png(
    embedding: np.ndarray, assignments: np.ndarray, path: Path, label_name: Callable[[int], str]
) -> Path:
    """Given a training embedding (bins × dimensions ≥ 2) and each bin's cluster (−1 noise), write a
    scatter of the first two dimensions coloured by cluster to ``path``; return the path."""
    figure = Figure(figsize=(7, 6))
    axes = figure.add_subplot()
    labels = sorted(int(label) for label in np.unique(assignments))
    colours = label_colours(labels)
    for label in labels:
        chosen = assignments == label
        name = "noise" if label < 0 else f"{label}: {label_name(label)}"
        axes.scatter(
            embedding[chosen, 0], embedding[chosen, 1], s=3, color=colours[label],
            label=f"{name} ({chosen.sum()})", alpha=0.4 if label < 0 else 0.8, linewidths=0,
        )
    axes.set_xlabel("UMAP 1")
    axes.set_ylabel("UMAP 2")
    axes.set_title(f"Training embedding: {len(assignments)} bins of 100 ms, {max(labels) + 1} clusters")
    axes.legend(markerscale=4, fontsize="small", loc="best", frameon=False)
    figure.tight_layout()
    return _save(figure, path)


def save_ethogram_png(
    rows: Sequence[tuple[str, np.ndarray]],
    fps: float,
    label_ids: Sequence[int],
    label_name: Callable[[int], str],
    path: Path,
    title: str = "",
) -> Path:
    """Given (row name, label id of every frame) pairs, the frame rate and the model's label ids,
    write an ethogram (one horizontal band per row, one colour per behavior) to ``path``."""
    present = sorted(set(int(v) for _, labels in rows for v in np.unique(labels)) | set(map(int, label_ids)))
    colours = label_colours(present)
    cmap = ListedColormap([colours[label] for label in present])
    n_frames = max((len(labels) for _, labels in rows), default=0)
    duration = n_frames / fps if fps > 0 else 0.0
    in_minutes = duration > 600
    scale = 60.0 if in_minutes else 1.0

    legend_columns = 1 if len(present) <= 12 else 2
    legend_rows = math.ceil(len(present) / legend_columns)
    height = max(1.6 + 0.5 * max(1, len(rows)), 0.9 + 0.2 * legend_rows)
    figure = Figure(figsize=(12, height))
    axes = figure.add_subplot()
    if n_frames == 0:
        axes.text(0.5, 0.5, "no frames", ha="center", va="center", transform=axes.transAxes)
        axes.set_yticks([])
    else:
        # Ids become consecutive colour indices (present is sorted), so one image draws every frame.
        image = np.full((len(rows), n_frames), np.nan)
        for index, (_, labels) in enumerate(rows):
            image[index, : len(labels)] = np.searchsorted(present, np.asarray(labels, dtype=np.int64))
        axes.imshow(
            image, aspect="auto", interpolation="nearest", cmap=cmap, vmin=-0.5, vmax=len(present) - 0.5,
            extent=(0, duration / scale, len(rows) - 0.5, -0.5),
        )
        axes.set_yticks(range(len(rows)))
        axes.set_yticklabels([name for name, _ in rows])
    axes.set_xlabel("time (min)" if in_minutes else "time (s)")
    axes.set_title(title or "Behavior labels")
    handles = [Patch(color=colours[label], label=label_name(label)) for label in present]
    axes.legend(
        handles=handles, loc="upper left", bbox_to_anchor=(1.01, 1.0), fontsize="small", frameon=False,
        ncol=legend_columns,
    )
    # Fixed margins (not tight_layout): the legend sits outside the axes on the right.
    figure.subplots_adjust(
        left=0.12, right=0.84 if legend_columns == 1 else 0.72, bottom=0.75 / height, top=1 - 0.45 / height
    )
    return _save(figure, path)
