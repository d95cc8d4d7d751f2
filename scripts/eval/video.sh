#!/usr/bin/env bash
# Table 3 for one setting: MSVD-QA, MSRVTT-QA and ActivityNet-QA with Video-LLaVA-7B, judged by
# gpt-3.5-turbo, then the table (with the paper's Video-LLaVA rows for reference).
#   LOCAL_DATA=/data/video_qa OPENAI_API_KEY=... bash scripts/eval/video.sh                  # + PruMerge
#   LOCAL_DATA=/data/video_qa OPENAI_API_KEY=... REDUCTION=prumerge_plus bash scripts/eval/video.sh
# Settings: see scripts/eval/common.sh; VIDEO_BENCHMARKS (default: all three).
export MODEL="${MODEL:-LanguageBind/Video-LLaVA-7B-hf}" OUTPUT_ROOT="${OUTPUT_ROOT:-outputs/eval/video}"
source "$(dirname "$0")/common.sh"
for benchmark in ${VIDEO_BENCHMARKS:-msvd msrvtt activitynet}; do
  run_video_benchmark "$benchmark"
done
"$PYTHON" eval/tables.py video "$OUTPUT" --markdown "$OUTPUT/table3.md" --csv "$OUTPUT/table3.csv"
