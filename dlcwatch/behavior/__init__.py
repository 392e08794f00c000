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
the atomic file writer. It imports no sub-module, so importing the package stays cheap.
"""

from __future__ import annotations

import contextlib
import os
import tempfile
from pathlib import Path
from typing import IO, Iterator

__all__ = ["BehaviorError", "atomic_output"]


class BehaviorError(Exception):
    """A problem the user can fix (bad input file, bad option, unreadable model).

    The command line prints its message without a traceback.
    """


@contextlib.contextmanager
def atomic_output(path: Path, *, binary: bool = False) -> Iterator[IO]:
    """Given a destination path, yield an open temporary file beside it; on success move it into place.

    The temporary file lives in the destination folder so that ``os.replace`` is a rename on the
    same file system: a reader never sees a half-written file, and a crash leaves the old file
    (or nothing) rather than a truncated one. On any exception the temporary file is removed and
    the exception propagates.
    """
    path = Path(path)
    handle = tempfile.NamedTemporaryFile(
        mode="wb" if binary else "w",
        dir=path.parent,
        prefix=f".{path.name}.",
        suffix=".tmp",
        delete=False,
        **({} if binary else {"encoding": "utf-8", "newline": ""}),
    )
    temporary = Path(handle.name)
    try:
        with handle:
            yield handle
            handle.flush()
            os.fsync(handle.fileno())
        # NamedTemporaryFile creates owner-only files; results are shared with the lab. (Reading
        # the umask would mean changing it, which races with other threads, so use the usual mode.)
        os.chmod(temporary, 0o644)
        os.replace(temporary, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            temporary.unlink()
        raise

