#!/usr/bin/env bash
# POPE: F1 averaged over the adversarial, popular and random splits (Table 1)
#   bash scripts/eval/pope.sh                       # LLaVA-1.5-7B + PruMerge, 1 GPU
#   NUM_GPUS=8 REDUCTION=prumerge_plus bash scripts/eval/pope.sh
#   ADAPTER=outputs/llava15-7b-prumerge-lora bash scripts/eval/pope.sh
# Settings: see scripts/eval/common.sh.
source "$(dirname "$0")/common.sh"
run_benchmark pope
