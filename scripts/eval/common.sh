#!/usr/bin/env bash
# Shared by scripts/eval/*.sh (sourced, not run): evaluate one benchmark with lmms-eval's stock CLI
# and our registered model `llava_prumerge`, then check that results were written (lmms-eval exits
# 0 even when the evaluation failed) and print the scores with the visual-token statistics.
#   run_benchmark B                       one benchmark into OUTPUT/B/
#   run_benchmarks_together NAME "B1 B2"  several benchmarks in ONE lmms-eval call into OUTPUT/NAME/
#                                         (one model load and lmms-eval start-up for all of them)
#
# Settings (environment variables):
#   MODEL          llava-hf checkpoint, Hub id or local dir       (llava-hf/llava-1.5-7b-hf)
#   ADAPTER        LoRA dir from scripts/finetune_lora.sh; its token_reduction.json is used
#                  unless REDUCTION/BUDGET are set                 (none)
#   REDUCTION      method, YAML path or configs/reduction/ name    (PruMerge, or the adapter's)
#   BUDGET         exact visual tokens per image                   (adaptive)
#   BATCH_SIZE     per-process batch size: 1 is the paper's protocol; 16 the fast mode,  (1)
#                  whose fp16 answers can differ (scripts/eval/batch_consistency.py measures it)
#   NUM_GPUS       data-parallel processes (accelerate launch when > 1)     (1)
#   OUTPUT         run folder; each benchmark writes OUTPUT/<benchmark>/   (outputs/eval/<setting>;
#                  outputs/eval/video/<setting> for the video benchmarks)
#   LOCAL_DATA     folder of local dataset copies, one per Hub repo (eval/README.md)   (Hub)
#   DEVICE, DTYPE, ATTN, MAX_NEW_TOKENS, LIMIT    passed through when set
# Video benchmarks (run_video_benchmark; MODEL defaults to LanguageBind/Video-LLaVA-7B-hf there):
#   JUDGE          1: judge the answers with eval/judge_video_qa.py (needs OPENAI_API_KEY); 0: skip  (1)
#   JUDGE_MODEL    the judge model (gpt-3.5-turbo, as Table 3); OPENAI_BASE_URL for another endpoint
#   NUM_FRAMES     frames per video (8, as Video-LLaVA); SKIP_MISSING_VIDEOS=1 skips questions without a clip
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
  OUTPUT="${OUTPUT_ROOT:-outputs/eval}/$setting"
fi

model_args_for() {  # the --model_args of one benchmark run writing its token log into $1
  local args="pretrained=$MODEL,visual_token_log=$1/visual_tokens.jsonl"
  [ -n "$ADAPTER" ] && args+=",adapter=$ADAPTER"
  [ -n "$REDUCTION" ] && args+=",reduction=$REDUCTION"
  [ -n "$BUDGET" ] && args+=",budget=$BUDGET"
  [ -n "${DEVICE:-}" ] && args+=",device=$DEVICE"
  [ -n "${DTYPE:-}" ] && args+=",dtype=$DTYPE"
  [ -n "${ATTN:-}" ] && args+=",attn_implementation=$ATTN"
  [ -n "${MAX_NEW_TOKENS:-}" ] && args+=",max_new_tokens=$MAX_NEW_TOKENS"
  [ -n "${NUM_FRAMES:-}" ] && args+=",num_frames=$NUM_FRAMES"
  echo "$args"
}

launch_lmms_eval() {  # launch_lmms_eval DIR TASKS: lmms-eval on TASKS with our model, then the success check
  local dir="$1" tasks="$2"
  local launch=("$PYTHON")  # one process: no launcher (it would only re-start Python)
  if [ "$NUM_GPUS" -gt 1 ]; then
    launch=("$PYTHON" -m accelerate.commands.launch --num_processes "$NUM_GPUS" --num_machines 1 --mixed_precision no
      --dynamo_backend no --multi_gpu)
  fi
  local since
  since="$(date +%s)"
  rm -f "$dir"/visual_tokens*.jsonl  # this run's logs only (one per process), none from an earlier run
  echo "== $(basename "$dir"): tasks $tasks -> $dir"
  "${launch[@]}" -m lmms_eval --model llava_prumerge --model_args "$(model_args_for "$dir")" --tasks "$tasks" \
    --batch_size "$BATCH_SIZE" --include_path "$dir/tasks" --output_path "$dir" --log_samples \
    ${LIMIT:+--limit "$LIMIT"}
  "$PYTHON" eval/tables.py check "$dir" --tasks "$tasks" --since "$since"
}

run_video_benchmark() {  # Table 3: answers with lmms-eval, then the GPT judge (JUDGE=1)
  local benchmark="$1"
  local dir="$OUTPUT/$benchmark"
  if [ -z "$LOCAL_DATA" ]; then
    echo "run_video_benchmark: $benchmark reads a local copy in Video-ChatGPT's format: set LOCAL_DATA (eval/README.md)" >&2
    exit 1
  fi
  local task
  task="$("$PYTHON" eval/tasks.py --benchmark "$benchmark" --out "$dir/tasks" --local-data "$LOCAL_DATA" \
    ${SKIP_MISSING_VIDEOS:+--skip-missing-videos})"
  launch_lmms_eval "$dir" "$task"
  if [ "${JUDGE:-1}" = "0" ]; then
    echo "== $benchmark: judge skipped (JUDGE=0): no accuracy or score; judge later with" \
      "'$PYTHON eval/judge_video_qa.py $dir --task $task'"
  else
    "$PYTHON" eval/judge_video_qa.py "$dir" --task "$task" --output "$dir/judge" \
      --model "${JUDGE_MODEL:-gpt-3.5-turbo}" ${OPENAI_BASE_URL:+--base-url "$OPENAI_BASE_URL"}
  fi
}

run_benchmark() {
  local benchmark="$1"
  local dir="$OUTPUT/$benchmark"
  local tasks
  tasks="$("$PYTHON" eval/tasks.py --benchmark "$benchmark" --out "$dir/tasks" ${LOCAL_DATA:+--local-data "$LOCAL_DATA"})"
  launch_lmms_eval "$dir" "$tasks"
}

run_benchmarks_together() {  # run_benchmarks_together NAME "B1 B2 ...": one lmms-eval call into OUTPUT/NAME/
  local name="$1" benchmarks list
  read -ra list <<< "${2//,/ }"
  benchmarks="$(IFS=,; echo "${list[*]}")"
  if [ -z "$benchmarks" ]; then
    echo "run_benchmarks_together: no benchmarks given for $name" >&2
    exit 1
  fi
  local dir="$OUTPUT/$name"
  local tasks
  tasks="$("$PYTHON" eval/tasks.py --benchmark "$benchmarks" --out "$dir/tasks" ${LOCAL_DATA:+--local-data "$LOCAL_DATA"})"
  launch_lmms_eval "$dir" "$tasks"
}
