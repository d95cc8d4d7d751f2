#!/usr/bin/env bash
# The trained tiny testbed (README, "The trained tiny testbed"; command 1): a tiny LLaVA trained for
# real on synthetic scenes, then evaluated with full tokens, PruMerge, PruMerge+, AITS,
# Sequential/Spatial sampling and the peers at PruMerge's budget, training-free and after one epoch
# of LoRA on reduced tokens, through the same training entry point, lmms-eval model and tables as
# the 7B runs. CPU: about 8.5 minutes of training and 3.5 of evaluation on 2 cores (705 s measured).
#   bash scripts/scenes.sh                 # train once (cached under outputs/scenes), evaluate, print
#   SMALL=1 BENCHMARKS="vqav2 pope mme sqa" PEERS=visionzip SCENES=/tmp/s OUTPUT=/tmp/e bash scripts/scenes.sh
#     the CI regression test's run: the same training, smaller test sets (more VQAv2 questions), then
#     eval/tables.py regression against the floors of llava_prumerge/evaluation/targets.py
# Steps (each skipped when its output is current; RETRAIN=1 redoes the training):
#   1. scripts/make_scene_testbed.py: scenes + questions, BPE tokenizer, tiny CLIP pretrained on the
#      scenes, random tiny Llama + projector, the test sets (local benchmark copies);
#   2. stage 1 (configs/train/scenes_stage1.yaml): projector + Llama on the captions;
#   3. stage 2 (configs/train/scenes_stage2.yaml): instruction tuning, full tokens -> SCENES/llava-scenes;
#   4. LoRA, one epoch on PruMerge-reduced tokens (configs/train/scenes_lora.yaml) -> SCENES/lora-prumerge;
#   5. scripts/eval/scenes.sh (tables into OUTPUT), the kept-patch picture of a scene, the targets.
# Environment: SCENES (outputs/scenes), OUTPUT (outputs/eval/scenes), SEED (0), SMALL, RETRAIN,
# LORA=0 (no step 4), TRAIN_ONLY=1 (stop after training),
# PYTHON (.venv/bin/python if present, else python), and scripts/eval/scenes.sh's settings.
set -euo pipefail
cd "$(dirname "$0")/.."
if [ -z "${PYTHON:-}" ]; then
  if [ -x .venv/bin/python ]; then PYTHON=.venv/bin/python; else PYTHON=python; fi
fi
export PYTHON
SCENES="${SCENES:-outputs/scenes}"
OUTPUT="${OUTPUT:-outputs/eval/scenes}"
SEED="${SEED:-0}"
started=$(date +%s)
"$PYTHON" scripts/make_scene_testbed.py --output "$SCENES" --seed "$SEED" ${SMALL:+--small}

train() {  # train CONFIG OUTPUT_DIR [--flag value ...]: our entry point, unless OUTPUT_DIR is current
  local config="$1" out="$2"
  shift 2
  # current = trained from this start point, config and flags (the stamp records all three)
  local stamp
  stamp="$(cat "$SCENES/start/VERSION") $(cksum < "$config") $*"
  if [ -z "${RETRAIN:-}" ] && [ -f "$out/testbed_stamp" ] && [ "$(cat "$out/testbed_stamp")" = "$stamp" ]; then
    echo "== $out is current: not retrained (RETRAIN=1 to redo)"
    return
  fi
  rm -rf "$out"
  echo "== training $config -> $out"
  bash scripts/finetune_lora.sh "$config" --output_dir "$out" --seed "$SEED" --disable_tqdm true "$@"
  echo "$stamp" > "$out/testbed_stamp"
}
data=(--data_path "$SCENES/data/instruct.json" --image_folder "$SCENES/data/images")
train configs/train/scenes_stage1.yaml "$SCENES/stage1" --language_model "$SCENES/start/llama-scenes" \
  --vision_tower "$SCENES/start/clip-scenes" --mm_projector "$SCENES/start/mm_projector.bin" \
  --data_path "$SCENES/data/captions.json" --image_folder "$SCENES/data/images"
train configs/train/scenes_stage2.yaml "$SCENES/llava-scenes" --model_name_or_path "$SCENES/stage1" "${data[@]}"
if [ "${LORA:-1}" != "0" ]; then
  train configs/train/scenes_lora.yaml "$SCENES/lora-prumerge" --model_name_or_path "$SCENES/llava-scenes" "${data[@]}"
fi
echo "== trained in $(( $(date +%s) - started )) s"
if [ -n "${TRAIN_ONLY:-}" ]; then exit 0; fi

MODEL="$SCENES/llava-scenes" LORA_ADAPTER="$SCENES/lora-prumerge" LOCAL_DATA="$SCENES/benchmarks" OUTPUT="$OUTPUT" \
  bash scripts/eval/scenes.sh
"$PYTHON" scripts/visualize.py image --image "$SCENES/example_scene.png" --model "$SCENES/llava-scenes" --cell 18 \
  --output "$OUTPUT/kept_patches.png"
"$PYTHON" eval/tables.py targets "$OUTPUT" --json "$OUTPUT/targets.json"
if [ -n "${SMALL:-}" ]; then "$PYTHON" eval/tables.py regression "$OUTPUT"; fi
echo "== scenes testbed done in $(( $(date +%s) - started )) s: tables and picture in $OUTPUT"
