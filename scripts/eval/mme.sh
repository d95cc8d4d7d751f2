#!/usr/bin/env bash
# MME: perception score (Table 1); cognition is reported too
#   bash scripts/eval/mme.sh                       # LLaVA-1.5-7B + PruMerge, 1 GPU
#   NUM_GPUS=8 REDUCTION=prumerge_plus bash scripts/eval/mme.sh
#   ADAPTER=outputs/llava15-7b-prumerge-lora bash scripts/eval/mme.sh
# Settings: see scripts/eval/common.sh.
source "$(dirname "$0")/common.sh"
run_benchmark mme
