#!/usr/bin/env bash
# TextVQA val with LLaVA-1.5's reference OCR tokens in the prompt (Table 1)
#   bash scripts/eval/textvqa.sh                       # LLaVA-1.5-7B + PruMerge, 1 GPU
#   NUM_GPUS=8 REDUCTION=prumerge_plus bash scripts/eval/textvqa.sh
#   ADAPTER=outputs/llava15-7b-prumerge-lora bash scripts/eval/textvqa.sh
# Settings: see scripts/eval/common.sh.
source "$(dirname "$0")/common.sh"
run_benchmark textvqa
