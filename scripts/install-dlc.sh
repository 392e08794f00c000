#!/usr/bin/env bash
# Install dlcwatch with DeepLabCut into a virtual environment (default: .venv).
#   scripts/install-dlc.sh [VENV]
# torch and torchvision are pinned and installed first: a bare `torch` requirement makes pip
# choose a multi-GB build of its own. Set DLCWATCH_EXTRAS=dlc,test to add the test tools.
set -euo pipefail
venv=${1:-.venv}
extras=${DLCWATCH_EXTRAS:-dlc}
here=$(cd "$(dirname "$0")/.." && pwd)
python=${PYTHON:-python3}
[ -x "$venv/bin/python" ] || "$python" -m venv "$venv"
pip() { "$venv/bin/python" -m pip --disable-pip-version-check -q "$@"; }
pip install torch==2.14.1 torchvision==0.29.1
pip install -e "$here[$extras]"   # the dlc extra pins filterpy 1.4.5: 2.0.0 breaks multi-animal tracking
"$venv/bin/python" -c 'import deeplabcut, dlcwatch; print("dlcwatch", dlcwatch.__version__, "with DeepLabCut", deeplabcut.__version__)' 2>/dev/null | tail -n 1
