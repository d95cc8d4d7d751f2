"""Convert the authors' released PruMerge LoRA checkpoints (LLaVA format) into our adapter format.

    # yuzhang/llava-prumerge-vicuna-7b-v1.5-lora (downloaded, or a Hub id with Hub access) -> our adapter
    python scripts/convert_llava_checkpoint.py --checkpoint yuzhang/llava-prumerge-vicuna-7b-v1.5-lora \\
        --token-reduction prumerge --output outputs/released/prumerge-7b
    ADAPTER=outputs/released/prumerge-7b DTYPE=float16 bash scripts/eval/all.sh
    # also a merged llava-hf-format checkpoint (MODEL=...), e.g. for other tools
    python scripts/convert_llava_checkpoint.py --checkpoint DIR --token-reduction prumerge_plus \\
        --output outputs/released/plus-7b --merged outputs/released/plus-7b-merged

The released files do not say whether the adapter was trained with PruMerge or PruMerge+:
``--token-reduction`` records the choice (``token_reduction.json``). The base defaults to what the
checkpoint names (Vicuna-v1.5 in ``adapter_config.json``, CLIP-ViT-L/14-336 in ``config.json``):
not ``llava-hf/llava-1.5-7b-hf``, whose language model is already finetuned.
"""

import argparse
import sys
from pathlib import Path

from llava_prumerge.config import METHODS


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--checkpoint", required=True, help="released checkpoint dir (or Hub id, with Hub access)")
    parser.add_argument("--output", required=True, help="adapter directory to write")
    parser.add_argument(
        "--token-reduction",
        required=True,
        help=f"the reduction it was trained with: a method ({', '.join(METHODS)}), a named config or a YAML",
    )
    parser.add_argument("--language-model", help="Vicuna-v1.5 (default: the checkpoint's base_model_name_or_path)")
    parser.add_argument("--vision-tower", help="CLIP tower (default: the checkpoint's mm_vision_tower)")
    parser.add_argument("--merged", help="also write a merged llava-hf-format checkpoint here")
    parser.add_argument("--dtype", default="float16", choices=["float32", "float16", "bfloat16"], help="of --merged")
    args = parser.parse_args()

    from llava_prumerge.training.released import convert_llava_checkpoint

    checkpoint = args.checkpoint
    if not Path(checkpoint).is_dir():
        from huggingface_hub import snapshot_download

        try:
            checkpoint = snapshot_download(args.checkpoint)
        except Exception as error:  # offline, unknown repo, ...: say which input
            sys.exit(
                f"convert_llava_checkpoint: {args.checkpoint} is neither a directory nor a downloadable Hub repo ({error})"
            )
    try:
        output = convert_llava_checkpoint(
            checkpoint, args.output, args.token_reduction, args.language_model, args.vision_tower
        )
    except (FileNotFoundError, ValueError) as error:
        sys.exit(f"convert_llava_checkpoint: {error}")
    print(f"adapter written to {output} (use ADAPTER={output} with scripts/eval/*.sh)")
    if args.merged:
        import torch

        from llava_prumerge.training.checkpoints import load_finetuned

        model, processor = load_finetuned(output, dtype=getattr(torch, args.dtype), merge=True)
        model.save_pretrained(args.merged)
        processor.save_pretrained(args.merged)
        print(f"merged checkpoint written to {args.merged} (MODEL={args.merged})")


if __name__ == "__main__":
    main()
