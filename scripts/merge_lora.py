"""Merge a finetuned LoRA adapter into its base: a full checkpoint with the training-time reduction.

    python scripts/merge_lora.py --adapter checkpoints/llava-1.5-7b-prumerge-lora --output checkpoints/merged

The result loads with ``LlavaPruMergeForConditionalGeneration.from_pretrained(OUTPUT)`` (its
``config.token_reduction`` is the one saved with the adapter, unless ``--token-reduction`` overrides it).
"""

import argparse

import torch

from llava_prumerge.training.checkpoints import load_finetuned


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--adapter", required=True, help="training output dir (adapter + token_reduction.json)")
    parser.add_argument("--output", required=True, help="where to write the merged checkpoint")
    parser.add_argument("--token-reduction", default=None, help="method name or YAML to store instead")
    parser.add_argument("--dtype", default="float32", choices=["float32", "float16", "bfloat16"])
    args = parser.parse_args()
    model, processor = load_finetuned(
        args.adapter, token_reduction=args.token_reduction, dtype=getattr(torch, args.dtype), merge=True
    )
    model.save_pretrained(args.output)
    processor.save_pretrained(args.output)
    print(f"merged {args.adapter} -> {args.output} (token_reduction={model.config.token_reduction})")


if __name__ == "__main__":
    main()
