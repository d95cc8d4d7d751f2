#!/usr/bin/env bash
# Peers at equal budgets: every method at 64/128/192 visual tokens per image, PruMerge/PruMerge+
# adaptive and the full model, on the same model, prompts and scoring; then one comparison table
# (score, mean tokens, delta to the full model) with the peers' own published rows for reference.
#   bash scripts/eval/peers.sh                                        # LLaVA-1.5-7B, BENCHMARKS="sqa textvqa pope mme"
#   NUM_GPUS=8 BENCHMARKS="vqav2 sqa textvqa pope mme mmbench gqa" bash scripts/eval/peers.sh
#   METHODS="visionzip fastervlm" BUDGETS="64" bash scripts/eval/peers.sh
# Settings: see scripts/eval/common.sh; METHODS (at each budget; default: the five peers, PruMerge and
# PruMerge+), BUDGETS (64 128 192), ADAPTIVE (prumerge prumerge_plus; "" for none), FULL (1: also
# the unreduced model). Writes OUTPUT/<method>_b<budget>/, OUTPUT/<method>/, OUTPUT/none/ and
# OUTPUT/peers.md (+ .csv).
ROOT="${OUTPUT:-outputs/eval/peers}"
source "$(dirname "$0")/common.sh"
BENCHMARKS="${BENCHMARKS:-sqa textvqa pope mme}"
METHODS="${METHODS:-fastervlm visionzip divprune random pooling prumerge prumerge_plus}"
BUDGETS="${BUDGETS:-64 128 192}"
ADAPTIVE="${ADAPTIVE-prumerge prumerge_plus}"
runs=()
run_setting() {  # run_setting METHOD [BUDGET]
  local folder="$ROOT/$1${2:+_b$2}"
  for benchmark in $BENCHMARKS; do
    OUTPUT="$folder" REDUCTION="$1" BUDGET="${2:-}" run_benchmark "$benchmark"
  done
  runs+=("$folder")
}
[ "${FULL:-1}" != "0" ] && run_setting none
for method in $ADAPTIVE; do run_setting "$method"; done
for budget in $BUDGETS; do
  for method in $METHODS; do run_setting "$method" "$budget"; done
done
baseline=()
[ "${FULL:-1}" != "0" ] && baseline=(--baseline none)
"$PYTHON" eval/tables.py peers "${runs[@]}" "${baseline[@]}" --markdown "$ROOT/peers.md" --csv "$ROOT/peers.csv"
