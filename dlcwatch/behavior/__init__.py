"""Behavior labels: B-SOiD-style pose features, an unsupervised classifier, frame-by-frame labels.

Modules, one job each:

- ``keypoints``: read DeepLabCut keypoint tables (.h5 / .csv, single or multi animal) into arrays.
- ``features``: likelihood filtering, per-frame features, 10 Hz bins, frame-shift windows.
- ``train``: features → UMAP → HDBSCAN → random forest (``umap`` is imported only there).
- ``model_io``: save / load a model and its JSON sidecar, rename clusters, import a B-SOiD app model.
- ``predict``: label a keypoint file; :func:`dlcwatch.behavior.predict.label_keypoints_file` is
  what the analysis worker calls.
- ``plots``: embedding and ethogram PNGs (matplotlib's Agg canvas, no pyplot state).
- ``cli``: the ``dlcwatch behavior`` argparse sub-commands.

Everything except ``train`` (and ``cli train``) imports only numpy, pandas, scikit-learn, joblib,
matplotlib and the standard library, because it runs inside DeepLabCut's environment.

This module holds the two primitives every other module shares: the user-facing error type and
the atomic file writer (dlcwatch.files'). It imports no sub-module, so importing the package stays cheap.
"""

from __future__ import annotations

from pathlib import Path
from typing import IO, ContextManager

from dlcwatch.errors import BehaviorError
from dlcwatch.files import atomic_write

__all__ = ["BehaviorError", "atomic_output"]


def atomic_output(path: Path, *, binary: bool = False) -> ContextManager[IO]:
    """Given a destination path, return dlcwatch's atomic writer for it (text unless binary).

    A reader never sees a half-written file, and a crash leaves the old file (or nothing)."""
    return atomic_write(Path(path), binary=binary)
