#!/usr/bin/env bash
# MMBench: dev scored offline (rule-based matching); test writes the server's xlsx (OUTPUT/mmbench/submissions/)
#   bash scripts/eval/mmbench.sh                       # LLaVA-1.5-7B + PruMerge, 1 GPU
#   NUM_GPUS=8 REDUCTION=prumerge_plus bash scripts/eval/mmbench.sh
#   ADAPTER=outputs/llava15-7b-prumerge-lora bash scripts/eval/mmbench.sh
# Settings: see scripts/eval/common.sh.
source "$(dirname "$0")/common.sh"
run_benchmark mmbench
