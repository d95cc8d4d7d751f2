"""LLaVA-NeXT (AnyRes) with token reduction: every crop reduced as a LLaVA-1.5 image, stock when ``none``.

One batch holds a wide, a tall and a square-ish photo plus two adjacent images in one prompt, so the
crop grids (1×2, 2×1, 2×2), the unpadding and the placeholder counts differ per image.
"""

from pathlib import Path

import pytest
import torch
from transformers import LlavaNextForConditionalGeneration, LlavaNextProcessor

from llava_prumerge import TokenReductionConfig
from llava_prumerge.models.vision import reduce_encoded
from llava_prumerge.tiny.llava_next import (
    TINY_NEXT_IMAGE_SIZE,
    TINY_NEXT_PATCH_SIZE,
    build_tiny_next_model,
    build_tiny_next_processor,
    write_tiny_next_llava,
)
from llava_prumerge.tiny.setting import demo_images

ROOT = Path(__file__).parents[1]

PATCHES = (TINY_NEXT_IMAGE_SIZE // TINY_NEXT_PATCH_SIZE) ** 2  # 64 per crop
PROMPTS = [
    "USER: <image>\nWhat is this? ASSISTANT:",
    "USER: <image>\nWhere? ASSISTANT:",
    "USER: <image><image>\nCompare them. ASSISTANT:",
]
SIZES = [(100, 40), (40, 90), (70, 60), (64, 64)]  # (width, height): wide, tall, square-ish, square

SELECTING = [  # the kept tokens are unmodified patch features (visionzip: plus its CLS and contextual tokens)
    TokenReductionConfig(method="aits"),
    TokenReductionConfig(method="fastervlm", budget=8),
    TokenReductionConfig(method="random", budget=8),
    TokenReductionConfig(method="sequential", budget=5),
    TokenReductionConfig(method="spatial", grid=(2, 3)),
    TokenReductionConfig(method="visionzip", budget=8),
]
BUDGETED = [
    TokenReductionConfig(method="prumerge", budget=8),
    TokenReductionConfig(method="prumerge_plus", budget=9),
    TokenReductionConfig(method="visionzip", budget=8),
    TokenReductionConfig(method="divprune", budget=8),
    TokenReductionConfig(method="fastervlm", budget=8),
    TokenReductionConfig(method="random", budget=8),
    TokenReductionConfig(method="pooling", budget=8),
    TokenReductionConfig(method="sequential", budget=5),
    TokenReductionConfig(method="spatial", grid=(2, 3)),
]
EVERY_METHOD = [
    TokenReductionConfig(method="prumerge"),
    TokenReductionConfig(method="prumerge_plus"),
    TokenReductionConfig(method="prumerge", merge="mean", attention="per_head"),
    *BUDGETED,
    TokenReductionConfig(method="aits"),
]


@pytest.fixture(scope="module")
def processor():
    return build_tiny_next_processor()


@pytest.fixture(scope="module")
def images():
    photos = demo_images(("rocket", "coffee", "chelsea", "astronaut"))
    return [photo.resize(size) for photo, size in zip(photos, SIZES)]


@pytest.fixture(scope="module")
def inputs(processor, images):
    processor.tokenizer.padding_side = "right"
    return processor(images=images, text=PROMPTS, return_tensors="pt", padding=True)


@pytest.fixture(scope="module")
def model(processor):
    return build_tiny_next_model("prumerge", tokenizer=processor.tokenizer)


def _use(model, reduction, layout="grid"):
    model.set_token_reduction(reduction)
    model.set_token_layout(layout)
    return model


def _features(model, inputs):
    with torch.no_grad():
        return model.get_image_features(pixel_values=inputs["pixel_values"], image_sizes=inputs["image_sizes"])


def _crops(inputs, model):
    counts = model.crops_per_image(inputs["image_sizes"])
    return torch.cat([pixels[:count] for pixels, count in zip(inputs["pixel_values"], counts)]), counts


def _stock_slots(model, inputs, counts):
    """Per image, what the stock ``pack_image_features`` puts at each position: ``crop · N + patch``
    (the crop counted within the image, base = 0), -1 for a newline."""
    identity = [torch.arange(count * PATCHES, dtype=torch.float64).view(count, PATCHES, 1).clone() for count in counts]
    packed, _ = model.model.pack_image_features(
        identity, inputs["image_sizes"], "default", image_newline=torch.tensor([-1.0], dtype=torch.float64)
    )
    return [slots[:, 0].long() for slots in packed]


def _kept_slots(kept_indices, counts):
    """Per image, the ``crop · N + patch`` of every kept patch (from the reducer's ``kept_indices``)."""
    per_image, start = [], 0
    for count in counts:
        rows = kept_indices[start : start + count]
        crop = torch.arange(count)[:, None].expand_as(rows)
        per_image.append((crop * PATCHES + rows)[rows >= 0])
        start += count
    return per_image


def _stock_mask(slots, kept):
    """Positions of the stock packing that the grid layout keeps: kept patches, and the newline of
    every grid row holding one."""
    is_newline = slots == -1
    is_kept = torch.isin(slots, kept)
    row = torch.cumsum(is_newline.long(), 0) - is_newline.long()  # a newline closes its row
    row = torch.where(torch.arange(len(slots)) < PATCHES, -1, row)  # the base crop is no grid row
    rows_with_token = torch.unique(row[is_kept & (row >= 0)])
    return is_kept | (is_newline & torch.isin(row, rows_with_token))


def test_none_is_bit_identical_to_the_stock_class(model, inputs):
    _use(model, "none")
    stock = LlavaNextForConditionalGeneration(model.config).eval()
    stock.load_state_dict(model.state_dict())
    with torch.no_grad():
        assert torch.equal(model(**inputs).logits, stock(**inputs).logits)
    ours = model.generate(**inputs, max_new_tokens=4, do_sample=False, return_dict_in_generate=True)
    assert torch.equal(ours.sequences, stock.generate(**inputs, max_new_tokens=4, do_sample=False))
    placeholders = inputs["input_ids"] == model.config.image_token_id
    assert int(ours.visual_token_counts.sum()) == int(placeholders.sum())


def test_placeholder_counts_follow_image_sizes(model, inputs):
    """The processor's count per image is the stock model's packed length, computed from
    ``image_sizes`` (the two adjacent images of the last prompt form one run of 638)."""
    counts = model.stock_token_counts(inputs["image_sizes"])
    stock = model.model.get_image_features(pixel_values=inputs["pixel_values"], image_sizes=inputs["image_sizes"])
    assert counts.tolist() == [len(feature) for feature in stock.pooler_output]
    per_row = (inputs["input_ids"] == model.config.image_token_id).sum(dim=1)
    assert per_row.tolist() == [counts[0], counts[1], counts[2] + counts[3]]
    assert model.crops_per_image(inputs["image_sizes"]) == [3, 3, 5, 5]


@pytest.mark.parametrize("reduction", EVERY_METHOD, ids=lambda r: f"{r.method}-{r.budget}-{r.attention}")
def test_each_crop_is_reduced_as_a_llava15_image(model, inputs, reduction):
    _use(model, reduction)
    features = _features(model, inputs)
    crops, _ = _crops(inputs, model)
    projector = model.model.multi_modal_projector
    lengths = torch.cat(features.crop_token_counts)
    for crop in range(len(crops)):
        with torch.no_grad():
            alone, _ = reduce_encoded(
                model.model.vision_tower, crops[crop : crop + 1], -2, reduction, projector=projector
            )
        length = int(alone.lengths[0])
        assert int(lengths[crop]) == length
        torch.testing.assert_close(
            features.last_hidden_state[crop, :length], alone.tokens[0, :length], atol=1e-5, rtol=1e-5
        )
        selected = alone.indices[0][alone.indices[0] >= 0]
        assert torch.equal(features.kept_indices[crop][features.kept_indices[crop] >= 0], selected)


@pytest.mark.parametrize("reduction", SELECTING, ids=lambda r: r.method)
def test_grid_layout_is_the_stock_packing_of_the_kept_tokens(model, inputs, reduction):
    """Selection only: the sequence is the stock packed sequence filtered to the kept patches plus
    the newlines of non-empty rows, the tokens without a patch (visionzip's CLS and contextual
    tokens) after the base crop's and after the grid."""
    _use(model, reduction)
    features = _features(model, inputs)
    with torch.no_grad():
        stock = model.model.get_image_features(pixel_values=inputs["pixel_values"], image_sizes=inputs["image_sizes"])
    _, counts = _crops(inputs, model)
    projector = model.model.multi_modal_projector
    slots = _stock_slots(model, inputs, counts)
    kept = _kept_slots(features.kept_indices, counts)
    start = 0
    for image, count in enumerate(counts):
        mask = _stock_mask(slots[image], kept[image])
        expected = stock.pooler_output[image][mask]
        base = int(mask[:PATCHES].sum())
        extras = []
        for crop in range(start, start + count):
            length = int(torch.cat(features.crop_token_counts)[crop])
            rows = features.last_hidden_state[crop, :length]
            if reduction.method == "visionzip":  # its CLS, then the dominant patches, then the contextual tokens
                selected = int((features.kept_indices[crop] >= 0).sum())
                rows = torch.cat([rows[:1], rows[1 + selected :]])
            else:
                rows = rows[length:]
            with torch.no_grad():
                extras.append(projector(rows))
        expected = torch.cat([expected[:base], extras[0], expected[base:], *extras[1:]])
        torch.testing.assert_close(features.pooler_output[image], expected, atol=1e-5, rtol=1e-5)
        start += count
    if reduction.method == "sequential":  # the first patches of the wide photo's grid crops are padding
        assert features.dropped_token_counts[0] > 0


@pytest.mark.parametrize("reduction", EVERY_METHOD[:1] + BUDGETED[2:4], ids=lambda r: r.method)
def test_flat_layout_is_crop_by_crop_in_reducer_order(model, inputs, reduction):
    _use(model, reduction, layout="flat")
    features = _features(model, inputs)
    crops, counts = _crops(inputs, model)
    projector = model.model.multi_modal_projector
    per_crop = []
    for crop in range(len(crops)):
        with torch.no_grad():
            alone, _ = reduce_encoded(
                model.model.vision_tower, crops[crop : crop + 1], -2, reduction, projector=projector
            )
            tokens = alone.tokens[0, : int(alone.lengths[0])]
            per_crop.append(tokens if alone.projected else projector(tokens))
    start = 0
    for image, count in enumerate(counts):
        expected = torch.cat(per_crop[start : start + count])
        torch.testing.assert_close(features.pooler_output[image], expected, atol=1e-5, rtol=1e-5)
        start += count
    assert features.newline_counts.tolist() == [0, 0, 0, 0]


@pytest.mark.parametrize("reduction", BUDGETED, ids=lambda r: r.method)
def test_budgets_are_exact_per_crop(model, inputs, reduction):
    """Every crop keeps exactly the budget. Flat: the image has Σ crops tokens. Grid: Σ crops, less
    the kept patches that the unpadding cuts off, plus one newline per grid row holding a kept token."""
    _use(model, reduction, layout="flat")
    flat = _features(model, inputs)
    _, counts = _crops(inputs, model)
    for crop_counts in flat.crop_token_counts:
        assert crop_counts.tolist() == [reduction.output_count] * len(crop_counts)
    assert flat.visual_token_counts.tolist() == [reduction.output_count * count for count in counts]

    _use(model, reduction, layout="grid")
    grid = _features(model, inputs)
    assert torch.equal(grid.kept_indices, flat.kept_indices)
    slots = _stock_slots(model, inputs, counts)
    kept = _kept_slots(grid.kept_indices, counts)
    start = 0
    for image, count in enumerate(counts):
        mask = _stock_mask(slots[image], kept[image])
        indexed = int((grid.kept_indices[start : start + count] >= 0).sum())
        unindexed = reduction.output_count * count - indexed
        assert int(grid.visual_token_counts[image]) == int(mask.sum()) + unindexed
        assert int(grid.newline_counts[image]) == int((mask & (slots[image] == -1)).sum())
        start += count
    expected = flat.visual_token_counts - grid.dropped_token_counts + grid.newline_counts
    assert torch.equal(grid.visual_token_counts, expected)


@pytest.mark.parametrize("reduction", ["prumerge", "none"])
def test_one_placeholder_per_image_equals_the_processor_placeholders(model, processor, inputs, reduction):
    _use(model, reduction)
    single = processor.tokenizer(PROMPTS, return_tensors="pt", padding=True)
    with torch.no_grad():
        expanded = model(**inputs)
        short = model(input_ids=single["input_ids"], attention_mask=single["attention_mask"], **_pixels(inputs))
    mask = short.attention_mask.bool()
    expanded_mask = (expanded.attention_mask if reduction != "none" else inputs["attention_mask"]).bool()
    assert mask.sum(dim=1).tolist() == expanded_mask.sum(dim=1).tolist()
    torch.testing.assert_close(short.logits[mask], expanded.logits[expanded_mask], atol=1e-5, rtol=1e-5)
    if reduction == "none":
        expected = model.stock_token_counts(inputs["image_sizes"])
    else:
        expected = _features(model, inputs).visual_token_counts
    assert short.visual_token_counts.tolist() == expected.tolist()


def _pixels(inputs):
    return {"pixel_values": inputs["pixel_values"], "image_sizes": inputs["image_sizes"]}


def test_batched_greedy_generate_equals_one_by_one(model, processor, images):
    _use(model, "prumerge_plus")
    text_only = "USER: Say hello. ASSISTANT:"
    processor.tokenizer.padding_side = "left"
    try:
        batch = processor(images=images, text=[*PROMPTS[:2], text_only, PROMPTS[2]], return_tensors="pt", padding=True)
        alone = [
            processor(images=images[:1], text=PROMPTS[:1], return_tensors="pt"),
            processor(images=images[1:2], text=PROMPTS[1:2], return_tensors="pt"),
            processor.tokenizer([text_only], return_tensors="pt"),
            processor(images=images[2:], text=PROMPTS[2:], return_tensors="pt"),
        ]
    finally:
        processor.tokenizer.padding_side = "right"
    settings = dict(max_new_tokens=5, min_new_tokens=5, do_sample=False, return_dict_in_generate=True)
    together = model.generate(**batch, **settings)
    width = batch["input_ids"].shape[1]
    assert torch.equal(together.sequences[:, :width], batch["input_ids"])
    counts = []
    for row, single in enumerate(alone):
        output = model.generate(**single, **settings)
        assert torch.equal(output.sequences[0, single["input_ids"].shape[1] :], together.sequences[row, width:])
        counts += getattr(output, "visual_token_counts", torch.zeros(0)).tolist()
    assert together.visual_token_counts.tolist() == counts
    assert [c.tolist() for c in together.crop_token_counts] == [
        c.tolist() for c in _features(model, batch).crop_token_counts
    ]


def test_forward_with_labels_trains_the_projector(processor, inputs):
    model = build_tiny_next_model("prumerge", tokenizer=processor.tokenizer).train()
    labels = inputs["input_ids"].masked_fill(inputs["attention_mask"] == 0, -100)
    output = model(**inputs, labels=labels)
    assert torch.isfinite(output.loss)
    assert output.labels.shape == output.attention_mask.shape
    assert bool((output.labels[output.attention_mask == 0] == -100).all())
    output.loss.backward()
    for parameter in [*model.model.multi_modal_projector.parameters(), model.model.image_newline]:
        assert parameter.grad is not None and torch.isfinite(parameter.grad).all() and parameter.grad.abs().sum() > 0


def test_layout_is_saved_and_overridable(tmp_path, images):
    directory = write_tiny_next_llava(tmp_path / "llava-next-tiny")
    from llava_prumerge.models.llava_next import LlavaNextPruMergeForConditionalGeneration

    loaded = LlavaNextPruMergeForConditionalGeneration.from_pretrained(directory)
    assert loaded.token_layout == "grid" and loaded.token_reduction.method == "prumerge"
    flat = LlavaNextPruMergeForConditionalGeneration.from_pretrained(
        directory, token_layout="flat", token_reduction="aits"
    )
    assert flat.config.token_layout == "flat" and flat.token_reduction.method == "aits"
    flat.save_pretrained(tmp_path / "flat")
    assert LlavaNextPruMergeForConditionalGeneration.from_pretrained(tmp_path / "flat").token_layout == "flat"
    with pytest.raises(ValueError, match="token_layout"):
        flat.set_token_layout("diagonal")
    processor = LlavaNextProcessor.from_pretrained(directory)
    assert processor.num_additional_image_tokens == 1
    encoded = processor(images=images[:2], text=PROMPTS[:2], return_tensors="pt", padding=True)
    found = (encoded["input_ids"] == loaded.config.image_token_id).sum(dim=1)
    assert found.tolist() == loaded.stock_token_counts(encoded["image_sizes"]).tolist()


def test_lora_finetune_on_reduced_crops_through_the_training_entry_point(tmp_path):
    """The same entry point as LLaVA-1.5 (configs/train/tiny.yaml's recipe on a tiny LLaVA-NeXT):
    AnyRes crops and image_sizes through the dataset and collator, PruMerge on every crop, and
    the loss falls; the adapter reloads with the NeXT class."""
    from llava_prumerge.tiny.llava_next import write_tiny_next_llava
    from llava_prumerge.tiny.setting import write_tiny_dataset
    from llava_prumerge.training.checkpoints import load_finetuned
    from llava_prumerge.training.run import run, stock_tokens_per_image

    checkpoint = write_tiny_next_llava(tmp_path / "next")
    data = write_tiny_dataset(tmp_path / "data")
    argv = [str(ROOT / "configs/train/tiny.yaml"), "--model_name_or_path", str(checkpoint), "--data_path", str(data),
            "--image_folder", str(data.parent / "images"), "--output_dir", str(tmp_path / "run"), "--deepspeed", "",
            "--report_to", "none", "--save_strategy", "no", "--num_train_epochs", "2", "--logging_steps", "1"]  # fmt: skip
    trainer = run(argv)
    losses = [entry["loss"] for entry in trainer.state.log_history if "loss" in entry]
    assert len(losses) >= 4 and sum(losses[-2:]) / 2 < sum(losses[:2]) / 2, losses
    assert stock_tokens_per_image(trainer.model.config) == 5 * 64 + 16  # base + 4 crops, 16 grid rows
    model, _ = load_finetuned(tmp_path / "run", merge=True)
    assert type(model).__name__ == "LlavaNextPruMergeForConditionalGeneration"


def test_lmms_eval_model_serves_llava_next(tmp_path):
    from llava_prumerge.evaluation.lmms_eval_model import LlavaPruMerge
    from llava_prumerge.tiny.llava_next import write_tiny_next_llava

    checkpoint = write_tiny_next_llava(tmp_path / "next")
    evaluator = LlavaPruMerge(pretrained=str(checkpoint), device="cpu", batch_size=2)
    photos = demo_images(("astronaut", "rocket"))  # different aspect ratios: different crop grids
    prompts = [evaluator.build_prompt("What is this?", 1)] * 2
    texts, counts = evaluator.generate_batch(prompts, [[photos[0]], [photos[1]]], max_new_tokens=2)
    alone = [evaluator.generate_batch([prompts[i]], [[photos[i]]], max_new_tokens=2) for i in range(2)]
    assert texts == [a[0][0] for a in alone] and counts == [a[1][0] for a in alone]
    assert evaluator._prepare_image(photos[1]).size == photos[1].size  # AnyRes: no square padding


def _hamilton(total: int, weights: list[float], least: int) -> list[int]:
    """Largest-remainder (Hamilton) apportionment above a floor, written out for the test."""
    extra = total - least * len(weights)
    ideal = [extra * w / sum(weights) for w in weights]
    shares = [int(x) for x in ideal]
    order = sorted(range(len(weights)), key=lambda i: (-(ideal[i] - shares[i]), i))
    for i in order[: extra - sum(shares)]:
        shares[i] += 1
    return [least + s for s in shares]


@pytest.mark.parametrize("budget", [30, 47])
def test_image_budget_is_split_across_crops_by_the_base_views_attention(model, inputs, budget):
    """HiRED's idea (budget_split="image"): base view round(share·B), grid crops by the base view's
    CLS attention mass over their region, summing to B exactly; checked against the stock tower's
    own attention (eager, averaged over heads = attention="per_head") and a written-out apportionment."""
    reduction = TokenReductionConfig(method="prumerge", budget=budget, attention="per_head")
    _use(model, reduction, "flat")
    model.set_budget_split("image", 0.4)
    tower = model.model.vision_tower
    implementation = tower.config._attn_implementation
    try:
        features = _features(model, inputs)
        crops, counts = _crops(inputs, model)
        tower.config._attn_implementation = "eager"
        starts = [sum(counts[:i]) for i in range(len(counts))]
        with torch.no_grad():
            attention = tower(crops[starts], output_attentions=True).attentions[-1][:, :, 0, 1:].mean(dim=1)
    finally:
        model.set_budget_split("crop")
        tower.config._attn_implementation = implementation
    side = 8  # the tiny crops' 8 x 8 patch grid
    for image, per_crop in enumerate(features.crop_token_counts):
        per_crop = per_crop.tolist()
        assert sum(per_crop) == budget == int(features.visual_token_counts[image])  # flat: no newlines
        if counts[image] == 1:
            continue
        base = round(0.4 * budget)
        rows, cols = {5: (2, 2), 3: None}.get(counts[image]) or (None, None)
        grid = counts[image] - 1
        if rows is None:  # a 1 x 2 or 2 x 1 grid: which one follows the image's shape
            height, width = inputs["image_sizes"][image].tolist()
            rows, cols = (1, 2) if width >= height else (2, 1)
        mass = [0.0] * grid
        for r in range(side):
            for c in range(side):
                mass[(r * rows // side) * cols + c * cols // side] += float(attention[image, r * side + c])
        assert per_crop == [base, *_hamilton(budget - base, mass, least=2)], (image, per_crop)


def test_image_budget_too_small_for_the_crops_is_a_clear_error(model, inputs):
    _use(model, TokenReductionConfig(method="prumerge", budget=9), "flat")
    model.set_budget_split("image", 0.5)
    try:
        with pytest.raises(ValueError, match="budget=9 per image: the base view's 4 leave 5 for 4 crops"):
            _features(model, inputs)
    finally:
        model.set_budget_split("crop")
    with pytest.raises(ValueError, match="base_share"):
        model.set_budget_split("image", 1.5)
