#!/usr/bin/env bash
# GQA testdev-balanced accuracy (not in the paper's Table 1; peers report it)
#   bash scripts/eval/gqa.sh                       # LLaVA-1.5-7B + PruMerge, 1 GPU
#   NUM_GPUS=8 REDUCTION=prumerge_plus bash scripts/eval/gqa.sh
#   ADAPTER=outputs/llava15-7b-prumerge-lora bash scripts/eval/gqa.sh
# Settings: see scripts/eval/common.sh.
source "$(dirname "$0")/common.sh"
run_benchmark gqa
