#!/usr/bin/env bash
# One-epoch LoRA finetune of LLaVA-1.5 on reduced visual tokens (paper Sec. 4.1).
#   bash scripts/finetune_lora.sh [CONFIG.yaml] [--key value ...]
# Without a CONFIG (no argument, or the first one starts with --) configs/train/llava15_7b_lora.yaml is used.
# Environment: NUM_GPUS (default: all visible GPUs, 1 on CPU), LAUNCHER=deepspeed|accelerate,
# HOSTFILE (DeepSpeed hostfile for multi-node), PYTHON (default: .venv/bin/python if present, else the
# python on PATH, e.g. an activated venv/conda env). The launchers run as modules of that interpreter,
# so no console script needs to sit next to it.
set -euo pipefail
cd "$(dirname "$0")/.."
CONFIG=configs/train/llava15_7b_lora.yaml
if [ $# -gt 0 ] && [[ "$1" != --* ]]; then
  CONFIG="$1"
  shift
fi
if [ -z "${PYTHON:-}" ]; then
  if [ -x .venv/bin/python ]; then
    PYTHON=.venv/bin/python
  elif command -v python > /dev/null; then
    PYTHON=python
  else
    PYTHON=python3
  fi
fi
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
  deepspeed)   # the `deepspeed` console script is this module's main()
    exec "$PYTHON" -m deepspeed.launcher.runner ${HOSTFILE:+--hostfile "$HOSTFILE"} --num_gpus "$NUM_GPUS" \
      scripts/train.py "$CONFIG" "$@" ;;
  accelerate)  # `accelerate launch` is this module's main()
    exec "$PYTHON" -m accelerate.commands.launch --num_processes "$NUM_GPUS" scripts/train.py "$CONFIG" "$@" ;;
  *)
    echo "LAUNCHER must be deepspeed or accelerate, got '${LAUNCHER}'" >&2; exit 2 ;;
esac
