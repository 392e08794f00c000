"""dlcwatch: watch folders for behavior videos, run DeepLabCut on them, deliver the results."""

__version__ = "0.1.0"
