#!/usr/bin/env bash
# Shared by scripts/eval/*.sh (sourced, not run): evaluate one benchmark with lmms-eval's stock CLI
# and our registered model `llava_prumerge`, then check that results were written (lmms-eval exits
# 0 even when the evaluation failed) and print the scores with the visual-token statistics.
#
# Settings (environment variables):
#   MODEL          llava-hf checkpoint, Hub id or local dir       (llava-hf/llava-1.5-7b-hf)
#   ADAPTER        LoRA dir from scripts/finetune_lora.sh; its token_reduction.json is used
#                  unless REDUCTION/BUDGET are set                 (none)
#   REDUCTION      method, YAML path or configs/reduction/ name    (PruMerge, or the adapter's)
#   BUDGET         exact visual tokens per image                   (adaptive)
#   BATCH_SIZE     per-process batch size: 1 is the paper's protocol; 16 the fast mode,  (1)
#                  whose fp16 answers can differ (scripts/eval/batch_consistency.py measures it)
#   NUM_GPUS       data-parallel processes (accelerate launch)     (1)
#   OUTPUT         run folder; each benchmark writes OUTPUT/<benchmark>/   (outputs/eval/<setting>)
#   LOCAL_DATA     folder of local dataset copies, one per Hub repo (eval/README.md)   (Hub)
#   DEVICE, DTYPE, ATTN, MAX_NEW_TOKENS, LIMIT    passed through when set
#   PYTHON         interpreter                                     (.venv/bin/python if present)
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/../.."

if [ -z "${PYTHON:-}" ]; then
  if [ -x .venv/bin/python ]; then PYTHON=.venv/bin/python; else PYTHON=python; fi
fi
MODEL="${MODEL:-llava-hf/llava-1.5-7b-hf}"
ADAPTER="${ADAPTER:-}"
REDUCTION="${REDUCTION:-}"
BUDGET="${BUDGET:-}"
BATCH_SIZE="${BATCH_SIZE:-1}"
NUM_GPUS="${NUM_GPUS:-1}"
LOCAL_DATA="${LOCAL_DATA:-}"
if [ -z "${OUTPUT:-}" ]; then
  setting="${REDUCTION:-${ADAPTER:+adapter}}"
  setting="$(basename "${setting:-prumerge}" .yaml)${BUDGET:+_b$BUDGET}"
  OUTPUT="outputs/eval/$setting"
fi

run_benchmark() {
  local benchmark="$1"
  local dir="$OUTPUT/$benchmark"
  local tasks
  tasks="$("$PYTHON" eval/tasks.py --benchmark "$benchmark" --out "$dir/tasks" ${LOCAL_DATA:+--local-data "$LOCAL_DATA"})"
  local model_args="pretrained=$MODEL,visual_token_log=$dir/visual_tokens.jsonl"
  [ -n "$ADAPTER" ] && model_args+=",adapter=$ADAPTER"
  [ -n "$REDUCTION" ] && model_args+=",reduction=$REDUCTION"
  [ -n "$BUDGET" ] && model_args+=",budget=$BUDGET"
  [ -n "${DEVICE:-}" ] && model_args+=",device=$DEVICE"
  [ -n "${DTYPE:-}" ] && model_args+=",dtype=$DTYPE"
  [ -n "${ATTN:-}" ] && model_args+=",attn_implementation=$ATTN"
  [ -n "${MAX_NEW_TOKENS:-}" ] && model_args+=",max_new_tokens=$MAX_NEW_TOKENS"
  local launch=("$PYTHON" -m accelerate.commands.launch --num_processes "$NUM_GPUS" --num_machines 1 --mixed_precision no --dynamo_backend no)
  [ "$NUM_GPUS" -gt 1 ] && launch+=(--multi_gpu)
  local since
  since="$(date +%s)"
  rm -f "$dir"/visual_tokens*.jsonl  # this run's logs only (one per process), none from an earlier run
  echo "== $benchmark: tasks $tasks -> $dir"
  "${launch[@]}" -m lmms_eval --model llava_prumerge --model_args "$model_args" --tasks "$tasks" \
    --batch_size "$BATCH_SIZE" --include_path "$dir/tasks" --output_path "$dir" --log_samples \
    ${LIMIT:+--limit "$LIMIT"}
  "$PYTHON" eval/tables.py check "$dir" --tasks "$tasks" --since "$since"
}
