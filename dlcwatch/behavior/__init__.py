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

Errors are dlcwatch.errors.BehaviorError and every file goes through dlcwatch.files' atomic
writer, as everywhere else. This module imports nothing, so importing the package stays cheap.
"""
