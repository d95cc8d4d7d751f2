#!/usr/bin/env bash
# One-epoch LoRA finetune of LLaVA-1.5 on reduced visual tokens (paper Sec. 4.1).
#   bash scripts/finetune_lora.sh [CONFIG.yaml] [--key value ...]
# Environment: NUM_GPUS (default: all visible GPUs, 1 on CPU), LAUNCHER=deepspeed|accelerate,
# HOSTFILE (DeepSpeed hostfile for multi-node), PYTHON (default: .venv/bin/python if present).
set -euo pipefail
cd "$(dirname "$0")/.."
CONFIG="${1:-configs/train/llava15_7b_lora.yaml}"
[ $# -gt 0 ] && shift
if [ -z "${PYTHON:-}" ]; then
  if [ -x .venv/bin/python ]; then PYTHON=.venv/bin/python; else PYTHON=python; fi
fi
BIN="$(dirname "$PYTHON")"
export WANDB_MODE="${WANDB_MODE:-offline}"   # set WANDB_MODE=online to sync to your account
export WANDB_DIR="${WANDB_DIR:-outputs}"      # wandb writes its run folders under $WANDB_DIR/wandb
mkdir -p "$WANDB_DIR"

if [ "$(basename "$CONFIG")" = "tiny.yaml" ]; then
  "$PYTHON" scripts/make_tiny_assets.py --output outputs/tiny-assets --if-stale
fi

GPUS=$("$PYTHON" -c "import torch; print(torch.cuda.device_count())")
if [ "$GPUS" = "0" ]; then
  export DS_ACCELERATOR=cpu   # DeepSpeed's CPU accelerator (gloo), for the tiny setting and tests
  GPUS=1
fi
NUM_GPUS="${NUM_GPUS:-$GPUS}"

case "${LAUNCHER:-deepspeed}" in
  deepspeed)
    exec "$BIN/deepspeed" ${HOSTFILE:+--hostfile "$HOSTFILE"} --num_gpus "$NUM_GPUS" \
      scripts/train.py "$CONFIG" "$@" ;;
  accelerate)
    exec "$BIN/accelerate" launch --num_processes "$NUM_GPUS" scripts/train.py "$CONFIG" "$@" ;;
  *)
    echo "LAUNCHER must be deepspeed or accelerate, got '${LAUNCHER}'" >&2; exit 2 ;;
esac
