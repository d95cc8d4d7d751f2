"""Share of identical greedy answers between batch size 1 (the paper's protocol) and batched evaluation.

    python scripts/eval/batch_consistency.py                                  # embedded tiny model, CPU
    python scripts/eval/batch_consistency.py --model llava-hf/llava-1.5-7b-hf --device cuda --dtype float16
    python scripts/eval/batch_consistency.py --model ... --reduction prumerge_plus --batch-size 16 --prompts 64

LLaVA-1.5's (and the paper's) numbers are batch size 1. Batched evaluation left-pads the prompts,
which changes the GPU kernels and so, in float16, can change a greedy answer where two logits are
close. This runs the evaluation's own code (:class:`llava_prumerge.evaluation.lmms_eval_model.LlavaPruMerge`:
same prompt, padding to square, greedy decoding) on real photos shipped by scikit-image and short
questions, once one prompt at a time and once in batches, and prints the share of identical
answers and of identical visual-token counts, with every differing answer.
"""

from __future__ import annotations

import argparse
import itertools
import sys

QUESTIONS = (
    "What is shown in this image?\nAnswer the question using a single word or phrase.",
    "Is there a person in the image?\nAnswer the question using a single word or phrase.",
    "Describe the image in one sentence.",
    "What colour is the main object?\nAnswer the question using a single word or phrase.",
)
PHOTOS = ("astronaut", "coffee", "chelsea", "rocket", "text", "camera", "coins", "horse", "moon", "page")


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default="tiny", help="'tiny' (the embedded model) or a llava-hf checkpoint")
    parser.add_argument("--reduction", default="prumerge", help="method, named config or YAML")
    parser.add_argument("--batch-size", type=int, default=16, help="the batched run's batch size")
    parser.add_argument("--prompts", type=int, default=40, help="photo x question pairs to answer")
    parser.add_argument("--max-new-tokens", type=int, default=16)
    parser.add_argument("--device", default=None, help="default: cuda when available, else cpu")
    parser.add_argument("--dtype", default="auto", help="auto (float16 on GPU, float32 on CPU) or a dtype")
    args = parser.parse_args(argv)
    if args.batch_size < 2 or args.prompts < 1:
        parser.error("--batch-size must be >= 2 and --prompts >= 1")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    from llava_prumerge.evaluation.lmms_eval_model import LlavaPruMerge
    from llava_prumerge.tiny.setting import demo_images, tiny_assets_current, write_tiny_assets

    model_path = args.model
    if model_path == "tiny":
        model_path = "outputs/tiny-assets"
        if not tiny_assets_current(model_path):
            write_tiny_assets(model_path)
        model_path += "/llava-tiny"
    evaluator = LlavaPruMerge(
        pretrained=model_path, reduction=args.reduction, device=args.device, dtype=args.dtype, batch_size=1
    )
    photos = dict(zip(PHOTOS, demo_images(PHOTOS)))
    pairs = list(itertools.islice(itertools.cycle(itertools.product(PHOTOS, QUESTIONS)), args.prompts))
    prompts = [evaluator.build_prompt(question, 1) for _, question in pairs]
    images = [[photos[name]] for name, _ in pairs]

    alone = [evaluator.generate_batch([p], [i], args.max_new_tokens) for p, i in zip(prompts, images)]
    alone_texts = [texts[0] for texts, _ in alone]
    alone_counts = [counts[0] for _, counts in alone]
    batched_texts, batched_counts = [], []
    for start in range(0, len(prompts), args.batch_size):
        texts, counts = evaluator.generate_batch(
            prompts[start : start + args.batch_size], images[start : start + args.batch_size], args.max_new_tokens
        )
        batched_texts += texts
        batched_counts += counts

    same_answers = sum(a == b for a, b in zip(alone_texts, batched_texts))
    same_counts = sum(a == b for a, b in zip(alone_counts, batched_counts))
    settings = evaluator.run_settings
    print(
        f"model {model_path} on {evaluator.device} ({settings['dtype']}), reduction {settings['token_reduction']}, "
        f"batch 1 vs batch {args.batch_size}, {len(prompts)} prompts, max {args.max_new_tokens} new tokens"
    )
    print(f"identical answers: {same_answers}/{len(prompts)} ({100 * same_answers / len(prompts):.1f}%)")
    print(f"identical visual-token counts: {same_counts}/{len(prompts)} ({100 * same_counts / len(prompts):.1f}%)")
    for (name, question), a, b in zip(pairs, alone_texts, batched_texts):
        if a != b:
            print(f"  differs: {name} / {question.splitlines()[0]!r}: batch 1 {a!r} vs batched {b!r}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
