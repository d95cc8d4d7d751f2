"""Roofline prefill cost of LLaVA-1.5's language model with and without PruMerge (paper Table 2).

    python scripts/roofline.py                                        # the paper's case on V100
    python scripts/roofline.py --visual-tokens 660 30 --prompt-tokens 40   # the lengths Table 2 used
    python scripts/roofline.py --hardware H100 --visual-tokens 576 144 32 --quantization FP16 INT4 W4A16
    python scripts/roofline.py --json
    python scripts/roofline.py --config path/to/llava-1.5-7b-hf      # the LLM of any checkpoint's config.json

Computed from the Vicuna-7B/13B shapes alone with LLM-Viewer's roofline method
(llava_prumerge/analysis/roofline.py; docs/roofline.md explains every number that differs from Table 2).
On V100, at batch 1 with a 40-token prompt and the counts 576 40 (stated) or 660 30 (what Table 2's
numbers correspond to), each cell also shows the paper's number and ours / paper.
"""

import argparse
import json

from llava_prumerge.analysis.roofline import HARDWARE, PRECISIONS, VICUNA, LlamaShape, Table2Row, table_2

COLUMNS = (  # (header, Table2Row field); "Total Memory" is memory traffic, as in Table 2
    ("FLOPs (TB)", "flops_tb"),
    ("Prefill Time (ms)", "prefill_ms"),
    ("Total Memory (GB)", "total_memory_gb"),
    ("Storing Activation (GB)", "activation_gb"),
)


def format_table(rows: list[Table2Row]) -> str:
    """Table 2's layout as Markdown; cells are ``ours (paper, ours/paper)`` where the paper has the row."""
    header = ["Method", "LLM Backbone", "Quantization", "Tokens", *(name for name, _ in COLUMNS), "Footprint (GB)"]
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for row in rows:
        cells = [row.method, row.backbone, row.quantization, f"{row.visual_tokens}+{row.prompt_tokens}"]
        for _, field in COLUMNS:
            ours = getattr(row, field)
            cell = f"{ours:.3g}"
            if row.paper is not None:
                paper = getattr(row.paper, field)
                cell += f" ({paper:g}, {ours / paper:.2f})"
            cells.append(cell)
        cells.append(f"{row.footprint_gb:.3g}")
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument(
        "--hardware", default="V100", choices=sorted(HARDWARE), help="accelerator (V100: the paper's, as in LLM-Viewer)"
    )
    parser.add_argument(
        "--visual-tokens",
        type=int,
        nargs="+",
        default=[576, 40],
        metavar="N",
        help="visual-token counts: the first without reduction (576 for a 336x336 image), the rest with PruMerge",
    )
    parser.add_argument("--prompt-tokens", type=int, default=40, help="text tokens added to every visual count")
    parser.add_argument(
        "--backbone", nargs="+", default=["7B", "13B"], choices=sorted(VICUNA), help="Vicuna v1.5 sizes"
    )
    parser.add_argument(
        "--quantization",
        nargs="+",
        default=["FP16", "INT4"],
        choices=list(PRECISIONS),
        help="bit widths: FP16; INT4 = 4-bit weights, activations and KV cache (Table 2, LLM-Viewer); "
        "W4A16 = 4-bit weights only; INT8 = W8A8",
    )
    parser.add_argument(
        "--config",
        nargs="+",
        metavar="PATH",
        help="instead of --backbone: the LLM of these config.json files or checkpoint directories "
        "(LLaVA's text_config or a Llama config; missing fields take transformers' defaults)",
    )
    parser.add_argument("--batch", type=int, default=1, help="sequences per prefill")
    parser.add_argument("--json", action="store_true", help="print the rows as JSON instead of the table")
    args = parser.parse_args()

    if args.batch < 1 or args.prompt_tokens < 0 or min(args.visual_tokens) < 0:
        parser.error("--batch must be positive and token counts non-negative")
    try:
        backbones = [LlamaShape.from_file(path) for path in args.config] if args.config else args.backbone
        rows = table_2(args.hardware, args.visual_tokens, args.prompt_tokens, backbones, args.quantization, args.batch)
    except ValueError as error:
        parser.error(str(error))
    if args.json:
        print(json.dumps([row.as_dict() for row in rows], indent=2))
        return
    hardware = HARDWARE[args.hardware]
    print(
        f"{hardware.name}: {hardware.fp16_ops / 1e12:g} TFLOPS FP16, {hardware.int8_ops / 1e12:g} TOPS INT8, "
        f"{hardware.bandwidth / 1e9:g} GB/s; batch {args.batch}. Tokens = visual + prompt."
    )
    if any(row.paper for row in rows):
        print("Cells: ours (paper Table 2, ours / paper). Table 2 states 576 vs 40 visual + a 40-token prompt.")
    print(format_table(rows))
    print(
        "Total Memory = bytes read + written (LLM-Viewer's memory access, Table 2's column); "
        "Footprint = weights + KV cache + one block's activations."
    )


if __name__ == "__main__":
    main()
