"""Scan a LLaVA-format dataset before spending GPU hours on it.

    python scripts/validate_data.py --data-path data/llava_v1_5_mix665k.json --image-folder data \\
        --processor llava-hf/llava-1.5-7b-hf [--report problems.csv]

Builds every sample exactly as training does (template, masking, truncation, image loading with
padding to square) and reports missing, unreadable and wrong-format images and malformed samples
with their ids. Exits 1 when anything is wrong.
"""

import argparse
import csv
import sys

from transformers import AutoProcessor

from llava_prumerge.training.dataset import DataSettings
from llava_prumerge.training.validation import validate_dataset


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data-path", required=True)
    parser.add_argument("--image-folder", default="")
    parser.add_argument("--processor", default="llava-hf/llava-1.5-7b-hf", help="HF id or dir with the processor")
    parser.add_argument("--model-max-length", type=int, default=2048)
    parser.add_argument("--image-aspect-ratio", default="pad", choices=["pad", "none"])
    parser.add_argument("--report", default=None, help="write every problem to this CSV file")
    parser.add_argument("--show", type=int, default=20, help="problems to print (all go to --report)")
    args = parser.parse_args()

    processor = AutoProcessor.from_pretrained(args.processor)
    patches = (processor.image_processor.crop_size["height"] // processor.patch_size) ** 2
    settings = DataSettings(
        data_path=args.data_path,
        image_folder=args.image_folder,
        image_aspect_ratio=args.image_aspect_ratio,
        model_max_length=args.model_max_length,
    )
    problems, counts = validate_dataset(settings, processor.tokenizer, processor.image_processor, patches)
    print("samples: " + ", ".join(f"{key}={value}" for key, value in sorted(counts.items())))
    for sample_id, kind, message in problems[: args.show]:
        print(f"  {kind:<17} {sample_id}: {message}")
    if len(problems) > args.show:
        print(f"  ... {len(problems) - args.show} more")
    if args.report:
        with open(args.report, "w", newline="") as handle:
            writer = csv.writer(handle)
            writer.writerow(["sample_id", "kind", "message"])
            writer.writerows(problems)
        print(f"wrote {len(problems)} problem(s) to {args.report}")
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
