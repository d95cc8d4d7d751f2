#!/usr/bin/env bash
# ScienceQA-IMG: option-letter accuracy (Table 1 'SQA-IMG')
#   bash scripts/eval/sqa.sh                       # LLaVA-1.5-7B + PruMerge, 1 GPU
#   NUM_GPUS=8 REDUCTION=prumerge_plus bash scripts/eval/sqa.sh
#   ADAPTER=outputs/llava15-7b-prumerge-lora bash scripts/eval/sqa.sh
# Settings: see scripts/eval/common.sh.
source "$(dirname "$0")/common.sh"
run_benchmark sqa
