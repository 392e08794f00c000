"""The job side: `python -m dlcwatch.worker SPEC.json` analyzes a spec's videos with DeepLabCut.

Imports only what a DeepLabCut environment has; the daemon never imports this package's modules."""
