"""Draw what PruMerge keeps (paper Fig. 1b, 3a) and how many tokens images keep.

    python scripts/visualize.py image --photo chelsea --output outputs/figures/chelsea.png
    python scripts/visualize.py image --image my.jpg --model llava-hf/llava-1.5-7b-hf --device cuda --dtype float16 \\
        --output fig.png
    python scripts/visualize.py image --photo coffee --model next-tiny --output outputs/figures/coffee_next.png
    python scripts/visualize.py image --image my.jpg --model llava-hf/llava-v1.6-vicuna-7b-hf --device cuda \\
        --dtype float16 --output fig.png                                     # LLaVA-NeXT: every AnyRes crop
    python scripts/visualize.py histogram --data-path outputs/tiny-assets/data/tiny_instruct.json \\
        --image-folder outputs/tiny-assets/data/images --output outputs/figures/hist.png
    python scripts/visualize.py histogram --counts outputs/eval/tiny/mme --output hist.png   # an evaluation run
    python scripts/visualize.py histogram --counts samples.jsonl --output hist.png

``image`` pads the image to a square with the mean colour (as LLaVA-1.5 trains and evaluates) and
writes one PNG with a panel per method (default: PruMerge's kept patches, PruMerge+'s with its
spatial samples in blue) and the CLS attention on a log scale with the IQR fence. ``--methods``
compares others, e.g. ``--methods prumerge fastervlm visionzip divprune --budget 64`` (a budget for
the methods that need one; visionzip draws its dominant patches, pooling none). ``histogram`` reduces every image
of a LLaVA-format dataset (or reads the kept tokens of an evaluation run: its output folder's
``visual_tokens*.jsonl`` logs, or JSON/JSONL records with ``visual_tokens``) and plots the kept
tokens per image. ``--model tiny`` (default) is the random-weight tiny LLaVA.

With a LLaVA-NeXT model (``--model next-tiny``, the random-weight tiny NeXT, or a checkpoint whose
``model_type`` is ``llava_next``) the image is not padded to a square: AnyRes cuts it into a base
view and the crops of the best pinpoint, every crop is reduced, and each method panel draws the
crops as the tower sees them, the base view on the left and the grid crops on the right at their
positions in the resized and padded image, with every crop's kept patches framed; the attention
plot is the base view's. ``histogram`` counts a NeXT image's tokens as its language model gets them
(base view, grid crops and newlines).
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import torch
from PIL import Image
from transformers.models.llava_next.modeling_llava_next import get_anyres_image_grid_shape

from llava_prumerge import METHODS, LlavaPruMergeForConditionalGeneration, TokenReductionConfig
from llava_prumerge.analysis.visualize import (
    anyres_overlay,
    crop_views,
    kept_patch_overlay,
    plot_cls_attention,
    plot_kept_token_histogram,
)
from llava_prumerge.config import PEER_METHODS, resolve_reduction
from llava_prumerge.evaluation.results import canonical_task, read_token_logs
from llava_prumerge.images import expand_to_square, pad_colour
from llava_prumerge.models.llava_next import LlavaNextPruMergeForConditionalGeneration
from llava_prumerge.tiny.llava_next import build_tiny_next_model, build_tiny_next_processor
from llava_prumerge.tiny.setting import build_tiny_model, build_tiny_processor, demo_images
from llava_prumerge.training.dataset import image_paths, load_samples, open_image


def load(model_name: str, reduction: TokenReductionConfig, device: str = "cpu", dtype: str = "float32"):
    """The model and its processor: ``tiny``, ``next-tiny``, or a checkpoint (LLaVA-NeXT when its
    ``model_type`` is ``llava_next``, else LLaVA-1.5)."""
    if model_name == "tiny":
        processor = build_tiny_processor()
        return build_tiny_model(reduction, tokenizer=processor.tokenizer).to(device), processor
    if model_name == "next-tiny":
        processor = build_tiny_next_processor()
        return build_tiny_next_model(reduction, tokenizer=processor.tokenizer).to(device), processor
    from transformers import AutoConfig, AutoProcessor

    model_class = LlavaPruMergeForConditionalGeneration
    if AutoConfig.from_pretrained(model_name).model_type == "llava_next":
        model_class = LlavaNextPruMergeForConditionalGeneration
    model = model_class.from_pretrained(model_name, token_reduction=reduction, dtype=getattr(torch, dtype))
    return model.to(device).eval(), AutoProcessor.from_pretrained(model_name)


def is_next(model) -> bool:
    """Whether ``model`` is a LLaVA-NeXT (AnyRes crops, no square padding)."""
    return isinstance(model, LlavaNextPruMergeForConditionalGeneration)


def draw_image(args) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    image = Image.open(args.image).convert("RGB") if args.image else demo_images((args.photo,))[0]
    model, processor = load(args.model, TokenReductionConfig(method="prumerge"), args.device, args.dtype)
    if is_next(model):
        return draw_next_image(args, model, processor, image)
    # padded to a square with the mean colour, as LLaVA-1.5 trains and evaluates (image_aspect_ratio=pad)
    image = expand_to_square(image, pad_colour(processor.image_processor))
    pixels = processor.image_processor([image], return_tensors="pt")["pixel_values"]
    pixels = pixels.to(args.device, next(model.parameters()).dtype)
    vision = model.config.vision_config
    grid = vision.image_size // vision.patch_size
    panels = []
    with torch.no_grad():
        model.set_token_reduction(TokenReductionConfig(method="prumerge"))
        scores = model.get_image_features(pixel_values=pixels).cls_attention[0].float().cpu()
        for method in args.methods:
            needs_budget = method in PEER_METHODS or method in ("sequential", "spatial")
            model.set_token_reduction(resolve_reduction(method, args.budget if needs_budget else None))
            features = model.get_image_features(pixel_values=pixels)
            kept = features.kept_indices[0]
            kept = kept[kept >= 0].tolist()
            counts = features.attentive_counts
            attentive = len(kept) if counts is None else int(counts[0])
            overlay = kept_patch_overlay(image, kept[:attentive], kept[attentive:], grid=grid, cell=args.cell)
            label = method if not needs_budget else f"{method} @ {args.budget}"
            panels.append((label, overlay, int(features.visual_token_counts[0]), len(kept)))
    q1, q3 = torch.quantile(scores, torch.tensor([0.25, 0.75]))
    fence = float(q3 + TokenReductionConfig().iqr_scale * (q3 - q1))  # the default PruMerge fence
    output = Path(args.output)
    output.parent.mkdir(parents=True, exist_ok=True)
    attention_png = output.with_name(output.stem + "_attention.png")
    plot_cls_attention(scores, fence, attention_png)

    figure, axes = plt.subplots(1, len(panels) + 1, figsize=(4.5 * (len(panels) + 1), 5), dpi=100)
    for axis, (method, overlay, count, patches) in zip(axes[:-1], panels):
        axis.imshow(overlay)
        extra = f" + {count - patches} other" if count > patches else ""
        axis.set_title(f"{method}: {count} tokens\n{patches} of {grid * grid} patches{extra}")
        axis.axis("off")
    axes[-1].imshow(Image.open(attention_png))
    axes[-1].axis("off")
    figure.tight_layout(rect=(0, 0, 1, 0.96))
    figure.savefig(output)
    plt.close(figure)
    for method, overlay, *_ in panels:
        overlay.save(output.with_name(f"{output.stem}_{method.split(' ')[0]}.png"))
    print(f"wrote {output} (+ {attention_png.name}, per-method overlays)")


def draw_next_image(args, model: LlavaNextPruMergeForConditionalGeneration, processor, image: Image.Image) -> None:
    """``image`` for a LLaVA-NeXT: per method, every crop's kept patches (:func:`anyres_overlay`)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    processed = processor.image_processor([image], return_tensors="pt")  # AnyRes: no square padding
    image_sizes = processed["image_sizes"]
    crops = model.crops_per_image(image_sizes)[0]
    pixels = processed["pixel_values"][:, :crops]
    image_processor = processor.image_processor
    views = crop_views(pixels[0], image_processor.image_mean, image_processor.image_std)
    pixels = pixels.to(args.device, next(model.parameters()).dtype)
    config = model.config
    vision = config.vision_config
    grid = vision.image_size // vision.patch_size
    grid_shape = get_anyres_image_grid_shape(image_sizes[0], config.image_grid_pinpoints, vision.image_size)
    panels = []
    with torch.no_grad():
        model.set_token_reduction(TokenReductionConfig(method="prumerge"))
        features = model.get_image_features(pixel_values=pixels, image_sizes=image_sizes)
        scores = features.cls_attention[0].float().cpu()  # the base view's
        for method in args.methods:
            needs_budget = method in PEER_METHODS or method in ("sequential", "spatial")
            model.set_token_reduction(resolve_reduction(method, args.budget if needs_budget else None))
            features = model.get_image_features(pixel_values=pixels, image_sizes=image_sizes)
            attention, spatial = [], []
            for crop in range(crops):
                kept = features.kept_indices[crop]
                kept = kept[kept >= 0].tolist()
                counts = features.attentive_counts
                attentive = len(kept) if counts is None else int(counts[crop])
                attention.append(kept[:attentive])
                spatial.append(kept[attentive:])
            overlay = anyres_overlay(views, grid_shape, attention, spatial, grid=grid, cell=args.cell)
            label = method if not needs_budget else f"{method} @ {args.budget}"
            per_crop = "/".join(str(int(count)) for count in features.crop_token_counts[0])
            patches = sum(len(a) + len(s) for a, s in zip(attention, spatial))
            title = (
                f"{label}: {int(features.visual_token_counts[0])} tokens "
                f"(incl. {int(features.newline_counts[0])} newlines)\n"
                f"per crop {per_crop}; {patches} of {crops}×{grid * grid} patches"
            )
            panels.append((label, overlay, title))
    q1, q3 = torch.quantile(scores, torch.tensor([0.25, 0.75]))
    fence = float(q3 + TokenReductionConfig().iqr_scale * (q3 - q1))  # the default PruMerge fence
    output = Path(args.output)
    output.parent.mkdir(parents=True, exist_ok=True)
    attention_png = output.with_name(output.stem + "_attention.png")
    plot_cls_attention(scores, fence, attention_png, title="CLS attention of the base view's patches")

    width, height = panels[0][1].size
    panel_width = 5 * width / height
    figure, axes = plt.subplots(
        1, len(panels) + 1, figsize=(panel_width * len(panels) + 4.5, 5), dpi=100,
        gridspec_kw={"width_ratios": [panel_width] * len(panels) + [4.5]},
    )  # fmt: skip
    rows, cols = grid_shape
    for axis, (_, overlay, title) in zip(axes[:-1], panels):
        axis.imshow(overlay)
        axis.set_title(f"{title}\nleft: base view; right: {rows}×{cols} grid crops", fontsize=9)
        axis.axis("off")
    axes[-1].imshow(Image.open(attention_png))
    axes[-1].axis("off")
    figure.tight_layout(rect=(0, 0, 1, 0.96))
    figure.savefig(output)
    plt.close(figure)
    for method, overlay, _ in panels:
        overlay.save(output.with_name(f"{output.stem}_{method.split(' ')[0]}.png"))
    print(f"wrote {output} (+ {attention_png.name}, per-method overlays; {crops} crops, grid {rows}×{cols})")


def count_dataset(args) -> list[int]:
    from tqdm import tqdm

    reduction = TokenReductionConfig.coerce(args.reduction)
    model, processor = load(args.model, reduction, args.device, args.dtype)
    folder = Path(args.image_folder or Path(args.data_path).parent)
    paths = sorted({p for sample in load_samples(args.data_path) for p in image_paths(sample)})
    if not paths:
        raise SystemExit(f"{args.data_path}: no sample has an image")
    paths = paths[: args.limit] if args.limit else paths
    dtype = next(model.parameters()).dtype
    background = pad_colour(processor.image_processor)
    counts = []
    with torch.no_grad():
        for start in tqdm(range(0, len(paths), args.batch_size), desc="reducing", unit="batch"):
            images = [open_image(folder / p) for p in paths[start : start + args.batch_size]]
            if is_next(model):  # AnyRes crops, no square padding; counts as the language model gets them
                processed = processor.image_processor(images, return_tensors="pt")
                pixels = processed["pixel_values"].to(args.device, dtype)
                features = model.get_image_features(pixel_values=pixels, image_sizes=processed["image_sizes"])
                counts += [len(tokens) for tokens in features.pooler_output]
                continue
            images = [expand_to_square(image, background) for image in images]
            pixels = processor.image_processor(images, return_tensors="pt")["pixel_values"].to(args.device, dtype)
            counts += model.get_image_features(pixel_values=pixels).visual_token_counts.tolist()
    return counts


def read_counts(path: str, tasks: list[str] | None = None) -> list[int]:
    """Kept tokens per image from an evaluation: its output folder (the plugin's
    ``visual_tokens*.jsonl`` logs, merged as the tables merge them) or a JSON list / JSONL file of
    records whose ``visual_tokens`` is an int or a per-image list. ``tasks`` keeps those tasks only."""
    wanted = {canonical_task(t) for t in tasks} if tasks else None
    scope = f" for {', '.join(tasks)}" if tasks else ""
    source = Path(path)
    if source.is_dir():
        logs = read_token_logs(source)
        counts = [c for task, docs in logs.items() if not wanted or task in wanted for images in docs.values() for c in images]  # fmt: skip
        if not counts:
            found = f" (tasks there: {', '.join(sorted(logs))})" if logs else ""
            raise ValueError(f"{path}: no visual_tokens*.jsonl records{scope}{found}")
        return counts
    text = source.read_text()
    try:
        records = [json.loads(line) for line in text.splitlines() if line.strip()] if path.endswith(".jsonl") else json.loads(text)  # fmt: skip
    except json.JSONDecodeError as error:
        raise ValueError(f"{path}: not JSON/JSONL ({error})") from error
    records = [records] if isinstance(records, dict) else records  # one record on its own
    counts = []
    for number, record in enumerate(records, start=1):
        if not isinstance(record, dict) or "visual_tokens" not in record:
            continue
        if wanted and canonical_task(str(record.get("task", ""))) not in wanted:
            continue
        value = record["visual_tokens"]
        values = value if isinstance(value, list) else [value]
        if not values or not all(isinstance(v, int) and not isinstance(v, bool) and v >= 0 for v in values):
            raise ValueError(f"{path}: record {number}: 'visual_tokens' must be a count or a list of counts, got {value!r}")  # fmt: skip
        counts += values
    if not counts:
        raise ValueError(f"{path}: no record has a 'visual_tokens' field{scope}")
    return counts


def draw_histogram(args) -> None:
    counts = read_counts(args.counts, args.tasks) if args.counts else count_dataset(args)
    Path(args.output).parent.mkdir(parents=True, exist_ok=True)
    plot_kept_token_histogram(counts, args.output)
    print(f"wrote {args.output}: {len(counts)} images, mean {sum(counts) / len(counts):.1f} tokens")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    commands = parser.add_subparsers(dest="command", required=True)
    image = commands.add_parser("image", help="kept patches and CLS attention of one image")
    source = image.add_mutually_exclusive_group()
    source.add_argument("--image", help="an image file")
    source.add_argument("--photo", default="chelsea", help="a scikit-image photo name")
    image.add_argument("--model", default="tiny", help="'tiny', 'next-tiny' or a LLaVA-1.5 / LLaVA-NeXT HF id / dir")
    image.add_argument("--cell", type=int, default=14, help="pixels per patch in the drawing")
    image.add_argument("--methods", nargs="+", default=["prumerge", "prumerge_plus"], choices=METHODS)
    image.add_argument("--budget", type=int, default=64, help="tokens for the methods that need a budget")
    image.add_argument("--device", default="cpu", help="e.g. cuda")
    image.add_argument("--dtype", default="float32", choices=["float32", "float16", "bfloat16"])
    image.add_argument("--output", required=True)
    histogram = commands.add_parser("histogram", help="kept tokens per image")
    histogram.add_argument(
        "--counts",
        help="an evaluation's output folder (its visual_tokens*.jsonl logs) or a JSON list / JSONL of records "
        "with 'visual_tokens' (a count or a per-image list)",
    )
    histogram.add_argument("--tasks", nargs="+", help="with --counts: these tasks only (e.g. mme pope_llava15)")
    histogram.add_argument("--data-path", help="a LLaVA-format dataset (reduces each of its images)")
    histogram.add_argument("--image-folder", default="")
    histogram.add_argument(
        "--model", default="tiny", help="'tiny', 'next-tiny' or a LLaVA-1.5 / LLaVA-NeXT HF id / dir"
    )
    histogram.add_argument("--reduction", default="prumerge", help="method name or configs/reduction/*.yaml")
    histogram.add_argument("--batch-size", type=int, default=8)
    histogram.add_argument("--limit", type=int, default=None, help="with --data-path: the first N images only")
    histogram.add_argument("--device", default="cpu", help="with --data-path: e.g. cuda")
    histogram.add_argument("--dtype", default="float32", choices=["float32", "float16", "bfloat16"])
    histogram.add_argument("--output", required=True)
    args = parser.parse_args()
    if args.command == "histogram":
        if bool(args.counts) == bool(args.data_path):
            parser.error("histogram needs exactly one of --counts (an evaluation) or --data-path (a dataset)")
        if args.tasks and not args.counts:
            parser.error("--tasks selects tasks of an evaluation's --counts; a --data-path dataset has none")
        if args.batch_size < 1 or (args.limit is not None and args.limit < 1):
            parser.error("--batch-size and --limit must be positive")
    draw_image(args) if args.command == "image" else draw_histogram(args)


if __name__ == "__main__":
    main()
