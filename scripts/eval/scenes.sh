#!/usr/bin/env bash
# The scenes evaluation: the trained tiny LLaVA on synthetic scenes, on local copies of the paper's
# benchmarks in the Hub schemas (LOCAL_DATA/{VQAv2,ScienceQA,textvqa,POPE,MME,MMBench}; no GQA).
# Each setting is ONE lmms-eval call over all BENCHMARKS (lmms-eval's start-up is paid once):
#   full, prumerge, prumerge_plus, aits (adaptive);
#   sequential, spatial and each of PEERS at BUDGET = PruMerge's mean kept visual tokens over all
#   its samples (every benchmark, rounded);
#   lora_prumerge: the LoRA adapter LORA_ADAPTER with PruMerge (skipped when it is absent);
# then the tables (Table 1 layout), the kept tokens against the number of objects in each scene
# (LOCAL_DATA/scene_objects.json; skipped when absent) and one summary JSON.
#   bash scripts/eval/scenes.sh
#   BENCHMARKS="sqa pope mme" PEERS=visionzip MODEL=/tmp/ta/llava-tiny LOCAL_DATA=/tmp/tb bash scripts/eval/scenes.sh
# Settings (environment variables; the rest as scripts/eval/common.sh):
#   MODEL          the merged full-token model dir                 (outputs/scenes/llava-scenes)
#   LORA_ADAPTER   LoRA dir trained with PruMerge                  (outputs/scenes/lora-prumerge)
#   LOCAL_DATA     the scene benchmarks                            (outputs/scenes/benchmarks)
#   OUTPUT         root folder                                     (outputs/eval/scenes)
#   BENCHMARKS     benchmarks of every setting                     (vqav2 sqa textvqa pope mme mmbench)
#   PEERS          peer methods at PruMerge's budget               (fastervlm visionzip divprune)
#   BATCH_SIZE (16), MAX_NEW_TOKENS (8), DEVICE (cpu), PYTHON (.venv/bin/python if present)
# Writes OUTPUT/<setting>/ for each setting above; OUTPUT/main.md (Full, PruMerge, PruMerge+),
# OUTPUT/table4.md (PruMerge, Sequential, Spatial), OUTPUT/table5.md (AITS, AITS+TS),
# OUTPUT/table6.md (training-free vs LoRA PruMerge), OUTPUT/peers.md (PruMerge and PEERS), each
# with a .csv; OUTPUT/objects_{prumerge,prumerge_plus}.json; OUTPUT/summary.json (every setting's
# per-benchmark score and mean visual tokens, keyed by setting folder).
ROOT="${OUTPUT:-outputs/eval/scenes}"
export MODEL="${MODEL:-outputs/scenes/llava-scenes}"
LORA_ADAPTER="${LORA_ADAPTER:-outputs/scenes/lora-prumerge}"
export LOCAL_DATA="${LOCAL_DATA:-outputs/scenes/benchmarks}"
export BATCH_SIZE="${BATCH_SIZE:-16}" MAX_NEW_TOKENS="${MAX_NEW_TOKENS:-8}" DEVICE="${DEVICE:-cpu}"
export HF_HUB_OFFLINE="${HF_HUB_OFFLINE:-1}" HF_DATASETS_OFFLINE="${HF_DATASETS_OFFLINE:-1}"
OUTPUT="$ROOT"
source "$(dirname "$0")/common.sh"
BENCHMARKS="${BENCHMARKS:-vqav2 sqa textvqa pope mme mmbench}"
PEERS="${PEERS-fastervlm visionzip divprune}"
for path in "$MODEL" "$LOCAL_DATA"; do
  if [ ! -d "$path" ]; then
    echo "scripts/eval/scenes.sh: $path does not exist; write the scenes model and benchmarks first" >&2
    exit 1
  fi
done

run_setting() {  # run_setting NAME REDUCTION [BUDGET [ADAPTER]]: every benchmark, one lmms-eval call
  ADAPTER="${4:-}" REDUCTION="$2" BUDGET="${3:-}" run_benchmarks_together "$1" "$BENCHMARKS"
}
run_setting full none
run_setting prumerge prumerge
run_setting prumerge_plus prumerge_plus
run_setting aits aits
budget="$("$PYTHON" eval/tables.py mean-tokens "$ROOT/prumerge" --benchmark all)"
echo "== PruMerge kept $budget visual tokens on average over all its samples; the baselines and peers get that budget"
run_setting sequential sequential "$budget"
run_setting spatial spatial "$budget"
for peer in $PEERS; do run_setting "$peer" "$peer" "$budget"; done
lora=0
if [ -f "$LORA_ADAPTER/adapter_config.json" ]; then
  run_setting lora_prumerge prumerge "" "$LORA_ADAPTER"
  lora=1
else
  echo "== lora_prumerge skipped: no LoRA adapter in $LORA_ADAPTER (set LORA_ADAPTER)"
fi

table() {  # table NAME BASELINE LABEL=FOLDER...: markdown + CSV into the root
  local name="$1" baseline="$2"
  shift 2
  echo "== $name"
  "$PYTHON" eval/tables.py table "$@" --baseline "$baseline" --markdown "$ROOT/$name.md" --csv "$ROOT/$name.csv"
}
table main Full "Full=$ROOT/full" "PruMerge=$ROOT/prumerge" "PruMerge+=$ROOT/prumerge_plus"
table table4 PruMerge "PruMerge=$ROOT/prumerge" "Sequential=$ROOT/sequential" "Spatial=$ROOT/spatial"
table table5 AITS "AITS=$ROOT/aits" "AITS+TS=$ROOT/prumerge"
[ "$lora" = 1 ] && table table6 PruMerge "PruMerge=$ROOT/prumerge" "LoRA PruMerge=$ROOT/lora_prumerge"
peer_runs=()
for peer in $PEERS; do peer_runs+=("$peer=$ROOT/$peer"); done
[ -n "$PEERS" ] && table peers PruMerge "PruMerge=$ROOT/prumerge" "${peer_runs[@]}"

objects="$LOCAL_DATA/scene_objects.json"
for setting in prumerge prumerge_plus; do
  if [ -f "$objects" ]; then
    echo "== $setting: kept visual tokens against objects in the scene"
    "$PYTHON" eval/tables.py objects "$ROOT/$setting" --objects "$objects" --json "$ROOT/objects_$setting.json"
  else
    echo "== $setting: objects step skipped: no $objects"
  fi
done

settings=(full prumerge prumerge_plus aits sequential spatial $PEERS)
[ "$lora" = 1 ] && settings+=(lora_prumerge)
summary_runs=()
for setting in "${settings[@]}"; do summary_runs+=("$setting=$ROOT/$setting"); done
"$PYTHON" eval/tables.py summary "${summary_runs[@]}" --json "$ROOT/summary.json" > /dev/null
echo "== summary of ${#settings[@]} settings: $ROOT/summary.json"
