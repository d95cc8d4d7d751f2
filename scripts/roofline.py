"""Roofline prefill cost of LLaVA-1.5's language model with and without PruMerge (paper Table 2).

    python scripts/roofline.py                                   # V100, 576 vs 40 visual tokens, 40-token prompt
    python scripts/roofline.py --hardware H100 --visual-tokens 576 144 --prompt-tokens 60
    python scripts/roofline.py --json

Computed from the Vicuna-7B/13B shapes alone (LLM-Viewer's roofline method, see
llava_prumerge/roofline.py and docs/roofline.md). On V100 the paper's numbers are printed beside ours.
"""

import argparse
import json

from llava_prumerge.roofline import HARDWARE, table_2


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--hardware", default="V100", choices=sorted(HARDWARE))
    parser.add_argument("--visual-tokens", type=int, nargs=2, default=[576, 40], metavar=("FULL", "REDUCED"))
    parser.add_argument("--prompt-tokens", type=int, default=40)
    parser.add_argument("--json", action="store_true", help="print JSON instead of the table")
    args = parser.parse_args()
    rows = table_2(args.hardware, tuple(args.visual_tokens), args.prompt_tokens)
    if args.json:
        print(json.dumps(rows, indent=2))
        return
    print(f"{HARDWARE[args.hardware].name}; visual tokens {args.visual_tokens[0]} vs {args.visual_tokens[1]}, "
          f"prompt {args.prompt_tokens}; ours (paper Table 2, ours/paper)")  # fmt: skip
    print("| Method | LLM Backbone | Quantization | FLOPs (TB) | Prefill Time (ms) | Total Memory (GB) "
          "| Storing Activation (GB) |")  # fmt: skip
    print("|---|---|---|---|---|---|---|")
    for row in rows:
        cells = []
        for key, index in (("flops_tb", 0), ("prefill_ms", 1), ("total_memory_gb", 2), ("activation_gb", 3)):
            ours = row[key]
            cell = f"{ours:.3g}"
            if row["paper"]:
                paper = row["paper"][index]
                cell += f" ({paper:g}, {ours / paper:.2f})"
            cells.append(cell)
        print(f"| {row['method']} | {row['backbone']} | {row['quantisation']} | " + " | ".join(cells) + " |")


if __name__ == "__main__":
    main()
