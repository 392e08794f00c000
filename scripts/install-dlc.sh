#!/usr/bin/env bash
# Install dlcwatch with DeepLabCut into a virtual environment (default: .venv).
#   scripts/install-dlc.sh [VENV]         the PyTorch engine (DeepLabCut 3 models); DLCWATCH_EXTRAS=dlc,test
#                                         adds the test tools
#   scripts/install-dlc.sh --tf [VENV]    a job environment for TensorFlow-engine models (DeepLabCut 2.x
#                                         projects): deeplabcut[tf]==3.0.2, TensorFlow 2.15, numpy < 2,
#                                         about 8 GB; point executor.local.python (or executor.slurm.python)
#                                         at VENV/bin/python. It holds what jobs need, none of the daemon's
#                                         extras (web page, behavior training, tests).
# torch and torchvision are pinned and installed first, in both: a bare `torch` requirement makes pip
# choose a multi-GB build of its own, and deeplabcut imports torch even for the TensorFlow engine.
set -euo pipefail
engine=pytorch
if [ "${1:-}" = "--tf" ]; then
  engine=tensorflow
  shift
fi
venv=${1:-.venv}
extras=${DLCWATCH_EXTRAS:-dlc}
[ "$engine" = tensorflow ] && extras=tf
here=$(cd "$(dirname "$0")/.." && pwd)
python=${PYTHON:-python3}
[ -x "$venv/bin/python" ] || "$python" -m venv "$venv"
pip() { "$venv/bin/python" -m pip --disable-pip-version-check -q "$@"; }
pip install torch==2.14.1 torchvision==0.29.1
pip install -e "$here[$extras]"   # both extras pin filterpy 1.4.5: 2.0.0 breaks multi-animal tracking
if [ "$engine" = tensorflow ]; then
  # TensorFlow 2.15 is built against numpy 1: deeplabcut[tf] takes numpy back below 2 from what
  # torch brought. Anything installed here later that wants numpy 2 would break it; pip check says so.
  pip check
  TF_CPP_MIN_LOG_LEVEL=3 CUDA_VISIBLE_DEVICES="" "$venv/bin/python" -c 'import tensorflow, deeplabcut, dlcwatch; print("dlcwatch", dlcwatch.__version__, "with DeepLabCut", deeplabcut.__version__, "and TensorFlow", tensorflow.__version__)' 2>/dev/null | tail -n 1
else
  "$venv/bin/python" -c 'import deeplabcut, dlcwatch; print("dlcwatch", dlcwatch.__version__, "with DeepLabCut", deeplabcut.__version__)' 2>/dev/null | tail -n 1
fi
