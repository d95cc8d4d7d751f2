#!/usr/bin/env bash
# Create ./.venv and install llava-prumerge with every extra (train, eval, dev).
# Usage: bash scripts/setup.sh            (PYTHON=python3.11 to choose the interpreter)
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON="${PYTHON:-python3}"
VENV="${VENV:-.venv}"
if [ ! -x "$VENV/bin/python" ]; then
  "$PYTHON" -m venv "$VENV"
fi
# torch first, pinned: an unpinned resolve could pick a newer multi-GB build.
"$VENV/bin/python" -m pip install --quiet --disable-pip-version-check "torch==2.14.1" "torchvision==0.29.1"
"$VENV/bin/python" -m pip install --quiet --disable-pip-version-check -e ".[train,eval,dev]"
echo "llava-prumerge installed in $VENV"
