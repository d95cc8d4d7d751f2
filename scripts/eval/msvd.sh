#!/usr/bin/env bash
# MSVD-QA (Table 3): Video-LLaVA-7B answers through lmms-eval, then the gpt-3.5-turbo judge
#   LOCAL_DATA=/data/video_qa OPENAI_API_KEY=... bash scripts/eval/msvd.sh            # + PruMerge
#   LOCAL_DATA=/data/video_qa REDUCTION=none bash scripts/eval/msvd.sh                 # stock Video-LLaVA
#   JUDGE=0 ...                                     # answers only; judge later with eval/judge_video_qa.py
# LOCAL_DATA holds MSVD-QA/ in Video-ChatGPT's format (eval/README.md). Settings: scripts/eval/common.sh.
export MODEL="${MODEL:-LanguageBind/Video-LLaVA-7B-hf}" OUTPUT_ROOT="${OUTPUT_ROOT:-outputs/eval/video}"
source "$(dirname "$0")/common.sh"
run_video_benchmark msvd
