#!/usr/bin/env bash
# Every benchmark of Table 1 (+ GQA) for one setting, then the table for OUTPUT and a histogram of
# the kept visual tokens per image over the run (OUTPUT/kept_tokens.png, as paper Fig. 3a).
#   bash scripts/eval/all.sh                      # LLaVA-1.5-7B + PruMerge
#   BENCHMARKS="sqa mme" REDUCTION=none bash scripts/eval/all.sh
# Settings: see scripts/eval/common.sh; BENCHMARKS (default: all seven); WANDB_PROJECT logs the table.
source "$(dirname "$0")/common.sh"
for benchmark in ${BENCHMARKS:-vqav2 sqa textvqa pope mme mmbench gqa}; do
  run_benchmark "$benchmark"
done
"$PYTHON" eval/tables.py table "$OUTPUT" --markdown "$OUTPUT/table.md" --csv "$OUTPUT/table.csv" \
  ${WANDB_PROJECT:+--wandb-project "$WANDB_PROJECT" --wandb-dir "$OUTPUT"}
"$PYTHON" scripts/visualize.py histogram --counts "$OUTPUT" --output "$OUTPUT/kept_tokens.png"
