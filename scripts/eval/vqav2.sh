#!/usr/bin/env bash
# VQAv2: vqav2_val scored here (accuracy); vqav2_test writes the EvalAI test-dev submission (OUTPUT/vqav2/submissions/)
#   bash scripts/eval/vqav2.sh                       # LLaVA-1.5-7B + PruMerge, 1 GPU
#   NUM_GPUS=8 REDUCTION=prumerge_plus bash scripts/eval/vqav2.sh
#   ADAPTER=outputs/llava15-7b-prumerge-lora bash scripts/eval/vqav2.sh
# Settings: see scripts/eval/common.sh.
source "$(dirname "$0")/common.sh"
run_benchmark vqav2
