"""LLaVA-NeXT in the analysis tools: the benchmark's ``next-tiny`` / ``llava-next-7b`` presets and the
kept-patch picture of every AnyRes crop.

The benchmark's NeXT sample is a photo resized to a square of two crop sides (the 2×2 grid, nothing
unpadded); the stock counts here come from the model's ``stock_token_counts`` and the processor's
placeholders, not from the benchmark.
"""

from __future__ import annotations

import importlib.util
import json
import sys
from pathlib import Path

import pytest
import torch
from PIL import Image
from transformers.models.llava_next.modeling_llava_next import get_anyres_image_grid_shape, image_size_to_num_patches

from llava_prumerge import TokenReductionConfig
from llava_prumerge.analysis import benchmark
from llava_prumerge.analysis.visualize import (
    ATTENTION_COLOUR,
    SPATIAL_COLOUR,
    anyres_crop_origin,
    anyres_overlay,
    crop_views,
    patch_box,
)
from llava_prumerge.config import resolve_reduction
from llava_prumerge.tiny.llava_next import (
    TINY_NEXT_IMAGE_SIZE,
    TINY_NEXT_PATCH_SIZE,
    build_tiny_next_model,
    build_tiny_next_processor,
    write_tiny_next_llava,
)
from llava_prumerge.tiny.setting import demo_images

ROOT = Path(__file__).parents[1]
SIDE = TINY_NEXT_IMAGE_SIZE // TINY_NEXT_PATCH_SIZE  # 8 patches per crop side
PATCHES = SIDE * SIDE
PROMPT = 16
WIDE = (120, 40)  # (width, height): the tiny NeXT's 1×2 grid, padding above and below


def _script(name: str):
    spec = importlib.util.spec_from_file_location(f"{name}_script", ROOT / "scripts" / f"{name}.py")
    script = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(script)
    return script


@pytest.fixture(scope="module")
def processor():
    return build_tiny_next_processor()


@pytest.fixture(scope="module")
def model(processor):
    return build_tiny_next_model(tokenizer=processor.tokenizer)


def test_benchmark_next_tiny_counts_per_image_and_per_crop(tmp_path, monkeypatch, model, processor):
    script = _script("benchmark")

    def run(*options: str, output: Path) -> list[dict]:  # in-process: a subprocess would re-import torch
        common = ["--preset", "next-tiny", "--repeats", "1", "--prompt-tokens", str(PROMPT), "--new-tokens", "2"]
        monkeypatch.setattr(sys, "argv", ["benchmark.py", *common, "--loop-batch", "0", *options, "--output-dir", str(output)])  # fmt: skip
        script.main()
        return json.loads((output / "results.json").read_text())["rows"]

    # the stock count of the benchmark's sample, a 64 × 64 photo, from the model and from the processor
    square = demo_images(("astronaut",))[0].resize((2 * TINY_NEXT_IMAGE_SIZE,) * 2)
    encoded = processor(images=[square], text=["<image>"], return_tensors="pt")
    stock = int(model.stock_token_counts(encoded["image_sizes"])[0])
    assert stock == int((encoded["input_ids"] == model.config.image_token_id).sum())
    crops = image_size_to_num_patches([64, 64], model.config.image_grid_pinpoints, TINY_NEXT_IMAGE_SIZE)
    assert crops == 5 and stock == PATCHES + (2 * SIDE) ** 2 + 2 * SIDE  # 336: base + 16×16 map + 16 newlines

    rows = {(r["method"], r["batch_size"]): r for r in run("--batch-sizes", "1", "2", "--methods", "none", "prumerge", output=tmp_path / "adaptive")}  # fmt: skip
    assert set(rows) == {(m, b) for m in ("none", "prumerge") for b in (1, 2)}
    for batch in (1, 2):
        none, merged = rows[("none", batch)], rows[("prumerge", batch)]
        assert none["visual_tokens"] == stock and none["sequence_length"] == PROMPT - 1 + stock
        assert none["extra"] == {"crops": crops, "visual_tokens_per_crop": PATCHES, "newlines": 2 * SIDE}
        assert none["reduction_s"] is None and none["vision_s"] > 0
        assert crops < merged["visual_tokens"] < stock and merged["extra"]["crops"] == crops
        assert 1 <= merged["extra"]["visual_tokens_per_crop"] < PATCHES and 0 < merged["reduction_share"]
        assert merged["sequence_length"] < none["sequence_length"]
        assert merged["prefill_flops"] < none["prefill_flops"] and merged["kv_cache_bytes"] < none["kv_cache_bytes"]
    table = (tmp_path / "adaptive" / "results.md").read_text()
    assert "| visual tokens / image | per crop (crops, newlines) |" in table
    assert f"| {stock}.0 | {PATCHES}.0 ({crops} crops, {2 * SIDE}.0 newlines) |" in table

    budget = ("--batch-sizes", "2", "--methods", "none", "prumerge", "--visual-tokens", "6")
    rows = {r["method"]: r for r in run(*budget, output=tmp_path / "budget")}
    merged = rows["prumerge@6"]
    # every crop exactly 6 tokens (a mean of 6 under a cap of 6); the grid layout adds one newline per
    # map row holding a kept token, so an image gets 5 × 6 + its newlines
    newlines = merged["extra"]["newlines"]
    assert merged["extra"]["visual_tokens_per_crop"] == 6 and 1 <= newlines <= 2 * SIDE
    assert merged["visual_tokens"] == crops * 6 + newlines
    assert rows["none"]["visual_tokens"] == stock


def test_llava_next_7b_shapes_count_2928_and_load_weights(tmp_path, monkeypatch):
    """The true-shape preset's config (CLIP-L/14-336 patch grid, llava-v1.6's pinpoints) with a
    narrow tower and LLM: stock 576 + 48·48 + 48 newlines per 672-px square, a budget per crop."""
    spec = benchmark.PRESETS["llava-next-7b"]
    narrow = dict(hidden_size=64, intermediate_size=128, num_hidden_layers=3, num_attention_heads=4)
    monkeypatch.setitem(benchmark.PRESETS, "llava-next-7b", dict(spec, vision=dict(spec["vision"], **narrow), text=narrow))  # fmt: skip
    model, processor = benchmark.build_preset("llava-next-7b", torch.float32, "cpu")
    assert model.config.image_grid_pinpoints == [[336, 672], [672, 336], [672, 672], [1008, 336], [336, 1008]]
    stock = int(model.stock_token_counts(torch.tensor([[672, 672]]))[0])
    assert stock == 576 + 48 * 48 + 48
    reductions = [resolve_reduction("none"), resolve_reduction("prumerge", 32)]
    none, merged = benchmark.measure(model, processor, "llava-next-7b", reductions, 1, PROMPT, 2, 1)
    assert none.visual_tokens == stock and none.extra == {"crops": 5, "visual_tokens_per_crop": 576, "newlines": 48}
    assert merged.extra["visual_tokens_per_crop"] == 32 and merged.visual_tokens == 5 * 32 + merged.extra["newlines"]

    # --weights: a llava_next checkpoint loads as the NeXT subclass, its processor from its config
    weights = write_tiny_next_llava(tmp_path / "next")
    loaded, loaded_processor = benchmark.build_preset("llava-next-7b", torch.float32, "cpu", weights=str(weights))
    assert type(loaded).__name__ == "LlavaNextPruMergeForConditionalGeneration"
    assert loaded_processor.image_grid_pinpoints == loaded.config.image_grid_pinpoints
    assert isinstance(benchmark.workload_for(loaded, loaded_processor), benchmark.NextWorkload)


def _kept_per_crop(features, crops: int) -> tuple[list[list[int]], list[list[int]]]:
    attention, spatial = [], []
    for crop in range(crops):
        kept = features.kept_indices[crop]
        kept = kept[kept >= 0].tolist()
        attentive = len(kept) if features.attentive_counts is None else int(features.attentive_counts[crop])
        attention.append(kept[:attentive])
        spatial.append(kept[attentive:])
    return attention, spatial


def _wide_photo() -> Image.Image:
    return demo_images(("coffee",))[0].resize(WIDE)


@pytest.mark.parametrize("method", ["prumerge", "prumerge_plus"])
def test_anyres_overlay_frames_exactly_each_crops_kept_patches(model, processor, method):
    processed = processor.image_processor([_wide_photo()], return_tensors="pt")
    sizes = processed["image_sizes"]
    grid_shape = get_anyres_image_grid_shape(sizes[0], model.config.image_grid_pinpoints, TINY_NEXT_IMAGE_SIZE)
    crops = model.crops_per_image(sizes)[0]
    assert tuple(grid_shape) == (1, 2) and crops == 3
    pixels = processed["pixel_values"][:, :crops]
    image_processor = processor.image_processor
    views = crop_views(pixels[0], image_processor.image_mean, image_processor.image_std)
    # the views are the tower's input, back in RGB
    mean, std = torch.tensor(image_processor.image_mean), torch.tensor(image_processor.image_std)
    renormalised = torch.stack([torch.tensor(list(v.getdata()), dtype=torch.float32) for v in views]) / 255
    renormalised = (renormalised.view(crops, TINY_NEXT_IMAGE_SIZE, TINY_NEXT_IMAGE_SIZE, 3) - mean) / std
    assert torch.allclose(renormalised.permute(0, 3, 1, 2), pixels[0], atol=0.6 / 255 / float(std.min()))

    model.set_token_reduction(TokenReductionConfig(method=method))
    with torch.no_grad():
        features = model.get_image_features(pixel_values=pixels, image_sizes=sizes)
    attention, spatial = _kept_per_crop(features, crops)
    cell, gap = 5, 3
    overlay = anyres_overlay(views, grid_shape, attention, spatial, grid=SIDE, cell=cell, gap=gap)
    size = SIDE * cell
    assert overlay.size == (size + 2 * gap + 2 * size + gap, size)
    if method == "prumerge_plus":
        assert any(spatial), "PruMerge+ adds spatial samples"
    for crop in range(crops):
        left, top = anyres_crop_origin(crop, grid_shape, size, gap)
        outlined = {}
        for patch in range(PATCHES):
            box = patch_box(patch, SIDE, cell)
            corners = overlay.getpixel((left + box[0], top + box[1])), overlay.getpixel((left + box[2], top + box[3]))
            if corners[0] in (ATTENTION_COLOUR, SPATIAL_COLOUR):
                assert corners[1] == corners[0]
                outlined[patch] = corners[0]
        kept = features.kept_indices[crop]
        assert len(outlined) == int((kept >= 0).sum())
        assert outlined == {p: ATTENTION_COLOUR for p in attention[crop]} | {p: SPATIAL_COLOUR for p in spatial[crop]}
    # the gutters between the crops stay blank
    assert overlay.getpixel((size + gap, 0)) == (255, 255, 255)
    assert overlay.getpixel((2 * size + 2 * gap + 1, size // 2)) == (255, 255, 255)


def test_visualize_draws_every_crop_of_a_wide_photo(tmp_path, monkeypatch, model, processor):
    script = _script("visualize")
    photo = tmp_path / "wide.png"
    _wide_photo().save(photo)
    output = tmp_path / "figures" / "wide.png"
    options = ["--image", str(photo), "--methods", "prumerge", "prumerge_plus", "--cell", "5"]
    monkeypatch.setattr(sys, "argv", ["visualize.py", "image", "--model", "next-tiny", *options, "--output", str(output)])  # fmt: skip
    script.main()
    assert output.is_file() and (tmp_path / "figures" / "wide_attention.png").is_file()

    # each method's overlay is the model's kept indices of every crop, drawn at the crops' positions
    processed = processor.image_processor([Image.open(photo).convert("RGB")], return_tensors="pt")
    sizes, pixels = processed["image_sizes"], processed["pixel_values"][:, :3]
    views = crop_views(pixels[0], processor.image_processor.image_mean, processor.image_processor.image_std)
    for method in ("prumerge", "prumerge_plus"):
        model.set_token_reduction(TokenReductionConfig(method=method))
        with torch.no_grad():
            features = model.get_image_features(pixel_values=pixels, image_sizes=sizes)
        expected = anyres_overlay(views, (1, 2), *_kept_per_crop(features, 3), grid=SIDE, cell=5)
        with Image.open(tmp_path / "figures" / f"wide_{method}.png") as drawn:
            assert drawn.convert("RGB").tobytes() == expected.tobytes()

    # a checkpoint directory whose model_type is llava_next is drawn the same way
    checkpoint = write_tiny_next_llava(tmp_path / "next")
    output = tmp_path / "checkpoint.png"
    monkeypatch.setattr(sys, "argv", ["visualize.py", "image", "--model", str(checkpoint), *options, "--output", str(output)])  # fmt: skip
    script.main()
    with Image.open(tmp_path / "checkpoint_prumerge.png") as drawn:
        assert drawn.size == expected.size


def test_histogram_counts_next_images_as_the_language_model_gets_them(tmp_path, monkeypatch, model, processor):
    from llava_prumerge.tiny.setting import write_tiny_dataset
    from llava_prumerge.training.dataset import open_image

    script = _script("visualize")
    data = write_tiny_dataset(tmp_path / "data")
    argv = ["visualize.py", "histogram", "--data-path", str(data), "--image-folder", str(data.parent / "images"),
            "--model", "next-tiny", "--batch-size", "3",
            "--limit", "5", "--output", str(tmp_path / "h.png")]  # fmt: skip
    monkeypatch.setattr(sys, "argv", argv)
    counts = None

    def record(found: list[int], path: str, **_) -> None:
        nonlocal counts
        counts = found

    monkeypatch.setattr(script, "plot_kept_token_histogram", record)
    script.main()
    # one by one, no square padding: the same counts as the batch of three and two (crops padded per batch)
    model.set_token_reduction(TokenReductionConfig(method="prumerge"))
    images = sorted((data.parent / "images").iterdir())[:5]
    expected = []
    with torch.no_grad():
        for path in images:
            processed = processor.image_processor([open_image(path)], return_tensors="pt")
            features = model.get_image_features(pixel_values=processed["pixel_values"], image_sizes=processed["image_sizes"])  # fmt: skip
            expected.append(len(features.pooler_output[0]))
    assert counts == expected and len(set(counts)) > 1
