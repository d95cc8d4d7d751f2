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
pip_install() {
  # pip warns once per package about configured find-links folders that do not exist; hide that noise.
  "$VENV/bin/python" -m pip install --quiet --disable-pip-version-check "$@" \
    2> >(grep -v "is ignored: it is neither a file nor a directory" >&2)
}
# torch first, pinned (see setup.py): the rest then resolves against the tested torch.
pip_install "torch==2.14.1" "torchvision==0.29.1"
pip_install -e ".[train,eval,dev]"
echo "llava-prumerge installed in $VENV"
