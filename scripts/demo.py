"""Reduce the visual tokens of real photos and answer a question about each (the main job).

    python scripts/demo.py                                   # embedded tiny model, CPU, seconds
    python scripts/demo.py --method prumerge_plus --budget 32
    python scripts/demo.py --model llava-hf/llava-1.5-7b-hf --device cuda --dtype float16

With ``--model tiny`` (the default) the LLaVA is built from a config with random weights, so the
kept-token counts are real but the answers are noise. The photos ship with scikit-image.
"""

from __future__ import annotations

import argparse
import time

import torch

from llava_prumerge import METHODS, LlavaPruMergeForConditionalGeneration, TokenReductionConfig, pad_to_square
from llava_prumerge.conversation import generation_prompt
from llava_prumerge.tiny.setting import DEMO_IMAGES, build_tiny_model, build_tiny_processor, demo_images


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default="tiny", help="'tiny' or a LLaVA-1.5 HF id / local directory")
    parser.add_argument("--method", default="prumerge", choices=METHODS, help="token reduction method")
    parser.add_argument("--budget", type=int, default=None, help="exact tokens per image (default: adaptive)")
    parser.add_argument("--grid", type=int, nargs=2, default=None, metavar=("ROWS", "COLS"), help="for 'spatial'")
    parser.add_argument("--question", default="What is shown in this image? Answer briefly.")
    parser.add_argument("--images", nargs="+", default=list(DEMO_IMAGES), help="scikit-image photo names")
    parser.add_argument("--max-new-tokens", type=int, default=12)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--dtype", default="float32", choices=["float32", "float16", "bfloat16"])
    return parser.parse_args()


def main() -> None:
    args = parse_args()
    reduction = TokenReductionConfig(
        method=args.method, budget=args.budget, grid=tuple(args.grid) if args.grid else None
    )
    dtype = getattr(torch, args.dtype)
    if args.model == "tiny":
        processor = build_tiny_processor()
        model = build_tiny_model(reduction, tokenizer=processor.tokenizer)
    else:
        from transformers import AutoProcessor

        processor = AutoProcessor.from_pretrained(args.model)
        model = LlavaPruMergeForConditionalGeneration.from_pretrained(
            args.model, token_reduction=reduction, dtype=dtype
        ).eval()
    model.to(device=args.device, dtype=dtype)
    processor.tokenizer.padding_side = "left"

    # LLaVA-1.5's image_aspect_ratio "pad": pad to a square with the mean colour, as in training and
    # evaluation, so that the processor crops nothing and the kept tokens match the evaluation's
    images = pad_to_square(demo_images(tuple(args.images)), processor)
    prompts = [generation_prompt(args.question)] * len(images)
    inputs = processor(images=images, text=prompts, return_tensors="pt", padding=True).to(args.device)
    inputs["pixel_values"] = inputs["pixel_values"].to(dtype)
    vision = model.config.vision_config
    total = (vision.image_size // vision.patch_size) ** 2

    with torch.no_grad():
        counts = model.get_image_features(pixel_values=inputs["pixel_values"])
        counts = [len(tokens) for tokens in counts.pooler_output]
        start = time.perf_counter()
        generated = model.generate(**inputs, max_new_tokens=args.max_new_tokens, do_sample=False)
        elapsed = time.perf_counter() - start
    answers = processor.batch_decode(generated[:, inputs["input_ids"].shape[1] :], skip_special_tokens=True)

    print(f"model={args.model}  reduction={reduction.to_dict()}")
    print(f"{'image':<12} {'kept tokens':>14}  answer")
    for name, count, answer in zip(args.images, counts, answers):
        print(f"{name:<12} {count:>6} / {total:<5} ({100 * count / total:4.1f}%)  {answer.strip()!r}")
    mean = sum(counts) / len(counts)
    print(
        f"mean kept tokens: {mean:.1f} of {total} ({100 * mean / total:.1f}%); "
        f"batched generate of {len(images)} prompts: {elapsed:.2f}s"
    )


if __name__ == "__main__":
    main()
