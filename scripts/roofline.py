"""Roofline prefill cost of LLaVA-1.5's (or Video-LLaVA-7B's, LLaVA-NeXT's) LLM with and without PruMerge (paper Table 2).

    python scripts/roofline.py                                        # the paper's case on V100
    python scripts/roofline.py --visual-tokens 660 30 --prompt-tokens 40   # the lengths Table 2 used
    python scripts/roofline.py --hardware H100 --visual-tokens 576 144 32 --quantization FP16 INT4 W4A16
    python scripts/roofline.py --json
    python scripts/roofline.py --config path/to/llava-1.5-7b-hf      # the LLM of any checkpoint's config.json
    python scripts/roofline.py --preset video-llava-7b                # Video-LLaVA-7B (Sec. 4.3): 8 x 257 vs 8 x 33
    python scripts/roofline.py --preset video-llava-7b --no-cls --kept-per-frame 32 64   # the paper's 2048 -> 256 / 512
    python scripts/roofline.py --preset llava-next-7b                 # LLaVA-1.6, 672x672: 576+48x48+48 = 2928 vs 5 x 32
    python scripts/roofline.py --preset llava-next-13b --image-size 480 640 --kept-per-crop 32 144 --no-newline

Computed from the Vicuna-7B/13B shapes alone with LLM-Viewer's roofline method
(llava_prumerge/analysis/roofline.py; docs/roofline.md explains every number that differs from Table 2).
On V100, at batch 1 with a 40-token prompt and the counts 576 40 (stated) or 660 30 (what Table 2's
numbers correspond to), each cell also shows the paper's number and ours / paper. Table 2 has no
Video-LLaVA or LLaVA-NeXT rows: there the reduced rows' cells show ours / unreduced instead.
"""

import argparse
import dataclasses
import json

from llava_prumerge.analysis.roofline import (
    HARDWARE,
    PRECISIONS,
    PRESETS,
    PRUMERGE_KEPT_PER_CROP,
    PRUMERGE_VIDEO_FRACTION,
    VICUNA,
    AnyResTokens,
    LlamaShape,
    Preset,
    Table2Row,
    VideoTokens,
    table_2,
)

COLUMNS = (  # (header, Table2Row field); "Total Memory" is memory traffic, as in Table 2
    ("FLOPs (TB)", "flops_tb"),
    ("Prefill Time (ms)", "prefill_ms"),
    ("Total Memory (GB)", "total_memory_gb"),
    ("Storing Activation (GB)", "activation_gb"),
)


def format_table(rows: list[Table2Row], relative: bool = False) -> str:
    """Table 2's layout as Markdown; cells are ``ours (paper, ours/paper)`` where the paper has the row.

    With ``relative``, a reduced row without the paper's numbers shows ``ours (ours / unreduced)``,
    the unreduced row being the first of its backbone and quantisation. Video rows get a column with
    frames × tokens per frame and the fraction of the unreduced visual tokens kept; LLaVA-NeXT rows
    the same column with their layout (base + grid + newlines, or views × kept per view).
    """
    video = any(row.frames or row.visual_layout for row in rows)
    header = ["Method", "LLM Backbone", "Quantization", "Tokens"]
    header += ["Visual Tokens (kept)"] if video else []
    header += [*(name for name, _ in COLUMNS), "Footprint (GB)"]
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    unreduced: dict[tuple[str, str], Table2Row] = {}
    for row in rows:
        reference = unreduced.setdefault((row.backbone, row.quantization), row)
        cells = [row.method, row.backbone, row.quantization, f"{row.visual_tokens}+{row.prompt_tokens}"]
        if video:
            per_frame = f"{row.frames}×{row.visual_tokens / row.frames:g}" if row.frames else f"{row.visual_tokens}"
            cells.append(f"{row.visual_layout or per_frame} ({row.visual_fraction:.1%})")
        for _, field in COLUMNS:
            ours = getattr(row, field)
            cell = f"{ours:.3g}"
            if row.paper is not None:
                paper = getattr(row.paper, field)
                cell += f" ({paper:g}, {ours / paper:.2f})"
            elif relative and reference is not row:
                cell += f" ({ours / getattr(reference, field):.2f})"
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
        "--preset",
        default="llava-1.5",
        choices=list(PRESETS),
        help="the model: llava-1.5 (Table 2; Vicuna-7B/13B, 576 vs 40 visual tokens), video-llava-7b "
        "(Sec. 4.3; Vicuna-7B, 8 frames x (256 patches + CLS) = 2056 vs 8 x (32 + 1) = 264) or "
        "llava-next-7b / llava-next-13b (LLaVA-1.6 AnyRes; Vicuna-7B / 13B, a 672x672 image: "
        "576 + 48x48 + 48 newlines = 2928 vs (1 + 4 crops) x 32 = 160)",
    )
    parser.add_argument(
        "--visual-tokens",
        type=int,
        nargs="+",
        metavar="N",
        help="visual-token counts: the first without reduction (576 for a 336x336 image), the rest with PruMerge; "
        "default: the preset's (for video-llava-7b and llava-next-*, computed from the video or image options below)",
    )
    parser.add_argument("--prompt-tokens", type=int, default=40, help="text tokens added to every visual count")
    parser.add_argument(
        "--backbone", nargs="+", choices=sorted(VICUNA), help="Vicuna v1.5 sizes (default: the preset's)"
    )
    video_options = parser.add_argument_group("video (--preset video-llava-7b only)")
    video_options.add_argument(
        "--frames", type=int, help=f"frames per video (default {PRESETS['video-llava-7b'].video.frames})"
    )
    video_options.add_argument(
        "--patches-per-frame",
        type=int,
        help="patch tokens per frame before reduction, without the CLS (default 256: a 16x16 grid of "
        "CLIP ViT-L/14 at 224 px)",
    )
    video_options.add_argument(
        "--no-cls",
        action="store_true",
        help="drop each frame's CLS token, as the paper's count 8x16x16 = 2048 (transformers' Video-LLaVA keeps it)",
    )
    video_options.add_argument(
        "--kept-per-frame",
        type=int,
        nargs="+",
        metavar="K",
        help="patch tokens kept per frame by the reduction, one reduced row each; a frame feeds K (+ its CLS) "
        f"(default 32: PruMerge's {PRUMERGE_VIDEO_FRACTION:.1%}% of 256, Sec. 4.3)",
    )
    image_options = parser.add_argument_group("image (--preset llava-next-7b / llava-next-13b only)")
    image_options.add_argument(
        "--image-size",
        type=int,
        nargs=2,
        metavar=("H", "W"),
        help="image height and width in pixels; the count follows transformers' LLaVA-NeXT (default 672 672, "
        "the worst case: 576 + 48x48 + 48 = 2928)",
    )
    image_options.add_argument(
        "--grid-pinpoints",
        type=int,
        nargs="+",
        metavar="H W",
        help="image_grid_pinpoints as height-width pairs, multiples of 336 (default llava-v1.6's: "
        "336 672 672 336 672 672 1008 336 336 1008)",
    )
    image_options.add_argument(
        "--no-newline",
        action="store_true",
        help="leave out the image_newline token ending each grid row (the papers' 2880 = 5 x 576 for 672x672)",
    )
    image_options.add_argument(
        "--kept-per-crop",
        type=int,
        nargs="+",
        metavar="K",
        help="tokens kept per view (the base view and each crop) by the reduction, one reduced row each: "
        f"(1 + crops) x K, no newlines (default {PRUMERGE_KEPT_PER_CROP}: PruMerge's 5.5%% of 576)",
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

    if args.batch < 1 or args.prompt_tokens < 0 or min(args.visual_tokens or [0]) < 0:
        parser.error("--batch must be positive and token counts non-negative")
    try:
        preset = build_preset(args)
        backbones = [LlamaShape.from_file(path) for path in args.config] if args.config else args.backbone
        rows = table_2(
            args.hardware, args.visual_tokens, args.prompt_tokens, backbones, args.quantization, args.batch, preset
        )
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
    if preset.video:
        video = preset.video
        per_frame, kept = f"{video.patches_per_frame} patches", "kept"
        if video.keep_cls:
            per_frame, kept = f"({per_frame} + CLS)", f"({kept} + CLS)"
        print(
            f"{preset.model} ({preset.checkpoint}): {video.frames} frames × {per_frame} = {video.count()} visual "
            f"tokens; reduced: {video.frames} × {kept}. Table 2 has no video rows; reduced cells: ours (ours / unreduced)."
        )
    if preset.anyres:
        image = preset.anyres
        (grid_rows, grid_cols), (down, across) = image.feature_grid, image.crop_grid
        newlines = f" + {grid_rows} newlines" if image.newline else ""
        print(
            f"{preset.model} ({preset.checkpoint}): a {image.height}×{image.width} image = base view "
            f"{image.tokens_per_view} + {image.crops} crops ({down}×{across} of {image.crop_size} px, "
            f"{'×'.join(map(str, image.best_resolution))}) unpadded to {grid_rows}×{grid_cols}{newlines} "
            f"= {image.count()} visual tokens; reduced: (1 + {image.crops}) × kept per view. "
            "Table 2 has no LLaVA-NeXT rows; reduced cells: ours (ours / unreduced)."
        )
    print(format_table(rows, relative=not preset.compares_to_table_2))
    print(
        "Total Memory = bytes read + written (LLM-Viewer's memory access, Table 2's column); "
        "Footprint = weights + KV cache + one block's activations."
    )


def build_preset(args: argparse.Namespace) -> Preset:
    """The chosen preset, its token counts rebuilt from the video or image options (which need a matching preset)."""
    preset = PRESETS[args.preset]
    if args.visual_tokens and (args.kept_per_frame or args.kept_per_crop):
        raise ValueError("--visual-tokens gives the counts directly; leave out --kept-per-frame / --kept-per-crop")
    video_options = (args.frames, args.patches_per_frame, args.kept_per_frame)
    if preset.video is None and (any(option is not None for option in video_options) or args.no_cls):
        raise ValueError(f"the video options (--frames ... --kept-per-frame) need a video preset, not {args.preset}")
    image_options = (args.image_size, args.grid_pinpoints, args.kept_per_crop)
    if preset.anyres is None and (any(option is not None for option in image_options) or args.no_newline):
        raise ValueError(
            f"the image options (--image-size ... --kept-per-crop) need a llava-next preset, not {args.preset}"
        )
    if preset.video:
        video = VideoTokens(
            frames=preset.video.frames if args.frames is None else args.frames,
            patches_per_frame=preset.video.patches_per_frame
            if args.patches_per_frame is None
            else args.patches_per_frame,
            keep_cls=not args.no_cls,
        )
        kept = args.kept_per_frame or [video.kept_per_frame(PRUMERGE_VIDEO_FRACTION)]
        visual_tokens = (video.count(), *(video.count(k) for k in kept))
        return dataclasses.replace(preset, video=video, visual_tokens=visual_tokens)
    if preset.anyres:
        pinpoints = args.grid_pinpoints
        if pinpoints is not None and len(pinpoints) % 2:
            raise ValueError(f"--grid-pinpoints takes height-width pairs, got {len(pinpoints)} numbers")
        height, width = args.image_size or (preset.anyres.height, preset.anyres.width)
        image = AnyResTokens(
            height=height,
            width=width,
            pinpoints=preset.anyres.pinpoints if pinpoints is None else tuple(zip(pinpoints[::2], pinpoints[1::2])),
            crop_size=preset.anyres.crop_size,
            patch_size=preset.anyres.patch_size,
            newline=not args.no_newline,
        )
        kept = args.kept_per_crop or [PRUMERGE_KEPT_PER_CROP]
        visual_tokens = (image.count(), *(image.count(k) for k in kept))
        return dataclasses.replace(preset, anyres=image, visual_tokens=visual_tokens)
    return preset


if __name__ == "__main__":
    main()
