#!/usr/bin/env bash
# The paper's ablations on LLaVA-1.5 (training-free):
#   Table 4: PruMerge vs Sequential vs Spatial sampling at PruMerge's measured mean token count
#            on each benchmark (BUDGET = that mean, rounded; Spatial uses the nearest grid);
#   Table 5: AITS alone vs AITS + token supplement (= PruMerge).
#   bash scripts/eval/ablation.sh                 # BENCHMARKS="sqa textvqa pope mme"
# Writes OUTPUT/{prumerge,sequential,spatial,aits}/ and OUTPUT/table4.md, OUTPUT/table5.md (+ .csv).
ROOT="${OUTPUT:-outputs/eval/ablation}"
source "$(dirname "$0")/common.sh"
BENCHMARKS="${BENCHMARKS:-sqa textvqa pope mme}"
for benchmark in $BENCHMARKS; do
  OUTPUT="$ROOT/prumerge" REDUCTION=prumerge BUDGET= run_benchmark "$benchmark"
  tokens="$("$PYTHON" eval/tables.py mean-tokens "$ROOT/prumerge" --benchmark "$benchmark")"
  echo "== $benchmark: PruMerge kept $tokens visual tokens on average; baselines get the same budget"
  OUTPUT="$ROOT/sequential" REDUCTION=sequential BUDGET="$tokens" run_benchmark "$benchmark"
  OUTPUT="$ROOT/spatial" REDUCTION=spatial BUDGET="$tokens" run_benchmark "$benchmark"
  OUTPUT="$ROOT/aits" REDUCTION=aits BUDGET= run_benchmark "$benchmark"
done
"$PYTHON" eval/tables.py table "PruMerge=$ROOT/prumerge" "Sequential=$ROOT/sequential" "Spatial=$ROOT/spatial" \
  --baseline PruMerge --markdown "$ROOT/table4.md" --csv "$ROOT/table4.csv"
"$PYTHON" eval/tables.py table "AITS=$ROOT/aits" "AITS+TS=$ROOT/prumerge" \
  --baseline AITS --markdown "$ROOT/table5.md" --csv "$ROOT/table5.csv"
