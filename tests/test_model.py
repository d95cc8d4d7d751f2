"""LlavaPruMergeForConditionalGeneration on the tiny LLaVA: drop-in behaviour, batching, training."""

from __future__ import annotations

import pytest
import torch
from conftest import short_prompt
from tolerances import assert_close_at_scale
from transformers import LlavaForConditionalGeneration

from llava_prumerge import LlavaPruMergeForConditionalGeneration, TokenReductionConfig
from llava_prumerge.conversation import generation_prompt
from llava_prumerge.reduction import cls_attention
from llava_prumerge.tiny.setting import build_tiny_model

N = 144  # tiny CLIP: 48 px, patch 4


def batch(processor, images, prompts, side="left"):
    processor.tokenizer.padding_side = side
    return processor(images=images, text=prompts, return_tensors="pt", padding=True)


@pytest.fixture(scope="module")
def mixed(processor, photos):
    """Four photos with questions of different lengths (so rows are padded)."""
    prompts = [short_prompt(q) for q in ("What is this?", "Describe it.", "Colour?", "How many things are there?")]
    return photos[:4], prompts


def test_none_gives_exactly_the_stock_logits(processor, mixed):
    images, prompts = mixed
    ours = build_tiny_model("none")
    stock = LlavaForConditionalGeneration(ours.config).eval()
    stock.load_state_dict(ours.state_dict())
    for side in ("left", "right"):
        inputs = batch(processor, images, prompts, side)
        with torch.no_grad():
            assert torch.equal(ours(**inputs).logits, stock(**inputs).logits)
    with torch.no_grad():
        generated = ours.generate(**inputs, max_new_tokens=5, do_sample=False)
        assert torch.equal(generated, stock.generate(**inputs, max_new_tokens=5, do_sample=False))


def test_vision_path_matches_the_stock_penultimate_features(processor, photos):
    model = build_tiny_model(TokenReductionConfig(method="spatial", grid=(12, 12)))  # all tokens, raster order
    pixels = processor.image_processor(photos[:3], return_tensors="pt")["pixel_values"]
    stock = LlavaForConditionalGeneration.get_image_features(model, pixel_values=pixels).pooler_output
    ours = model.get_image_features(pixel_values=pixels).pooler_output
    for a, b in zip(ours, stock):
        torch.testing.assert_close(a, b)
    # The CLS attention comes from q/k of the block consuming hidden_states[-2] (spec Sec. 1).
    tower = model.model.vision_tower
    hidden = tower(pixels, output_hidden_states=True).hidden_states[-2]
    block = tower.encoder.layers[-1]
    normed = block.layer_norm1(hidden)
    expected = cls_attention(block.self_attn.q_proj(normed), block.self_attn.k_proj(normed))
    model.set_token_reduction("aits")
    torch.testing.assert_close(model.get_image_features(pixel_values=pixels).cls_attention, expected)


def test_counts_adapt_to_the_image(processor, photos):
    model = build_tiny_model("prumerge")
    pixels = processor.image_processor(photos, return_tensors="pt")["pixel_values"]
    features = model.get_image_features(pixel_values=pixels)
    counts = features.visual_token_counts.tolist()
    assert [len(f) for f in features.pooler_output] == counts
    assert len(set(counts)) >= 3, counts
    assert all(2 <= c < N // 4 for c in counts), counts


@pytest.mark.parametrize(
    "reduction",
    [
        "prumerge",
        "prumerge_plus",
        "aits",
        {"method": "prumerge", "budget": 16},
        {"method": "sequential", "budget": 10},
        {"method": "spatial", "grid": (3, 3)},
    ],
    ids=str,
)
def test_batched_forward_equals_one_by_one(processor, mixed, reduction):
    images, prompts = mixed
    model = build_tiny_model(reduction)
    inputs = batch(processor, images, prompts, "right")
    with torch.no_grad():
        out = model(**inputs)
        for i in range(len(images)):
            single = model(**batch(processor, images[i : i + 1], prompts[i : i + 1]))
            mask = out.attention_mask[i].bool()
            assert int(out.visual_token_counts[i]) == int(single.visual_token_counts[0])
            assert_close_at_scale(out.logits[i, mask], single.logits[0])


@pytest.mark.parametrize("reduction", ["prumerge", "prumerge_plus"])
def test_batched_greedy_generate_equals_one_by_one(processor, mixed, reduction):
    images, prompts = mixed
    model = build_tiny_model(reduction)
    inputs = batch(processor, images, prompts, "left")
    generated = model.generate(**inputs, max_new_tokens=8, do_sample=False)
    assert torch.equal(generated[:, : inputs["input_ids"].shape[1]], inputs["input_ids"])
    new_tokens = generated[:, inputs["input_ids"].shape[1] :]
    for i in range(len(images)):
        single = batch(processor, images[i : i + 1], prompts[i : i + 1])
        alone = model.generate(**single, max_new_tokens=8, do_sample=False)
        assert torch.equal(alone[0, single["input_ids"].shape[1] :], new_tokens[i])


def test_generate_with_budget_reports_fewer_prefill_tokens(processor, mixed):
    images, prompts = mixed
    model = build_tiny_model({"method": "prumerge_plus", "budget": 16})
    inputs = batch(processor, images, prompts, "left")
    out = model.generate(**inputs, max_new_tokens=3, do_sample=False, return_dict_in_generate=True, output_logits=True)
    assert out.sequences.shape == (4, inputs["input_ids"].shape[1] + 3)
    assert len(out.logits) == 3


def test_one_placeholder_per_image_equals_the_expanded_prompt(processor, tokenizer, photos):
    model = build_tiny_model("prumerge")
    prompt = short_prompt()
    expanded = batch(processor, photos[:1], [prompt])
    compact_ids = tokenizer([prompt], return_tensors="pt")["input_ids"]
    assert int((compact_ids == model.config.image_token_id).sum()) == 1
    with torch.no_grad():
        a = model(**expanded)
        b = model(input_ids=compact_ids, pixel_values=expanded["pixel_values"])
    assert torch.equal(a.attention_mask, b.attention_mask)
    torch.testing.assert_close(a.logits, b.logits)
    # method none expands one placeholder into all N tokens, like the processor would
    model.set_token_reduction("none")
    with torch.no_grad():
        c = model(input_ids=compact_ids, pixel_values=expanded["pixel_values"])
        d = model(**expanded)
    torch.testing.assert_close(c.logits, d.logits)


def test_wrong_placeholder_count_is_a_clear_error(processor, tokenizer, photos):
    model = build_tiny_model("prumerge")
    ids = tokenizer([short_prompt(images=2)], return_tensors="pt")["input_ids"]
    pixels = processor.image_processor(photos[:3], return_tensors="pt")["pixel_values"]
    with pytest.raises(ValueError, match="2 image placeholder tokens .* for 3 image"):
        model(input_ids=ids, pixel_values=pixels)


def test_multiple_images_per_prompt_and_text_only_rows(processor, tokenizer, photos):
    model = build_tiny_model("prumerge_plus")
    prompts = [short_prompt("Compare them.", images=2), "USER: Hello there, how are you? ASSISTANT:", short_prompt()]
    images = [[photos[0], photos[1]], [], [photos[2]]]
    processor.tokenizer.padding_side = "left"
    inputs = processor(images=[im for row in images for im in row], text=prompts, return_tensors="pt", padding=True)
    assert inputs["pixel_values"].shape[0] == 3
    with torch.no_grad():
        out = model(**inputs)
        generated = model.generate(**inputs, max_new_tokens=6, do_sample=False)
    counts = out.visual_token_counts.tolist()
    image_tokens = (out.attention_mask.bool() & (_laid_out_ids(model, inputs) == model.config.image_token_id)).sum(1)
    assert image_tokens.tolist() == [counts[0] + counts[1], 0, counts[2]]
    text_only = processor(text=prompts[1:2], return_tensors="pt")
    with torch.no_grad():
        alone = model(**text_only)
    assert_close_at_scale(out.logits[1, out.attention_mask[1].bool()], alone.logits[0])
    for i in range(3):
        row_images = images[i]
        kwargs = {"images": row_images} if row_images else {}
        single = processor(text=prompts[i : i + 1], return_tensors="pt", **kwargs)
        one = model.generate(**single, max_new_tokens=6, do_sample=False)
        assert torch.equal(one[0, single["input_ids"].shape[1] :], generated[i, inputs["input_ids"].shape[1] :])


def _laid_out_ids(model, inputs):
    from llava_prumerge.models.sequence import infer_padding_side

    _, laid_out = model.encode_and_lay_out(
        inputs["input_ids"],
        inputs["pixel_values"],
        inputs["attention_mask"],
        None,
        infer_padding_side(inputs["attention_mask"]),
        None,
    )
    return laid_out.input_ids


def test_labels_mask_image_positions_and_training_reaches_lm_and_projector(processor, mixed):
    images, prompts = mixed
    model = build_tiny_model("prumerge_plus").train()
    for p in model.model.vision_tower.parameters():
        p.requires_grad_(False)
    inputs = batch(processor, images, prompts, "right")
    labels = inputs["input_ids"].clone()
    labels[inputs["attention_mask"] == 0] = -100
    out = model(**inputs, labels=labels)
    assert torch.isfinite(out.loss)
    image_positions = out.labels.new_zeros(out.labels.shape, dtype=torch.bool)
    laid = _laid_out_ids(model, inputs)
    image_positions = laid == model.config.image_token_id
    assert torch.all(out.labels[image_positions] == -100)
    assert torch.all(
        out.labels[~image_positions & out.attention_mask.bool()] == laid[~image_positions & out.attention_mask.bool()]
    )
    out.loss.backward()
    projector = model.model.multi_modal_projector.linear_1.weight.grad
    lm = model.model.language_model.layers[0].self_attn.q_proj.weight.grad
    assert projector is not None and projector.abs().sum() > 0
    assert lm is not None and lm.abs().sum() > 0


def test_token_reduction_round_trips_and_can_be_overridden_at_load(tmp_path):
    model = build_tiny_model({"method": "prumerge_plus", "knn": 8})
    model.save_pretrained(tmp_path)
    loaded = LlavaPruMergeForConditionalGeneration.from_pretrained(tmp_path)
    assert loaded.token_reduction == TokenReductionConfig(method="prumerge_plus", knn=8)
    for a, b in zip(model.state_dict().values(), loaded.state_dict().values()):
        assert torch.equal(a, b)
    override = LlavaPruMergeForConditionalGeneration.from_pretrained(
        tmp_path, token_reduction=TokenReductionConfig(method="aits", budget=12)
    )
    assert override.config.token_reduction["method"] == "aits" and override.token_reduction.budget == 12
    # a stock LLaVA checkpoint (no token_reduction saved) loads with the default PruMerge
    stock_dir = tmp_path / "stock"
    LlavaForConditionalGeneration(loaded.config).save_pretrained(stock_dir)
    import json

    saved = json.loads((stock_dir / "config.json").read_text())
    saved.pop("token_reduction")
    (stock_dir / "config.json").write_text(json.dumps(saved))
    assert LlavaPruMergeForConditionalGeneration.from_pretrained(stock_dir).token_reduction == TokenReductionConfig()
    with pytest.raises(ValueError, match="method"):
        LlavaPruMergeForConditionalGeneration.from_pretrained(tmp_path, token_reduction={"method": "bogus"})


def test_sdpa_and_eager_vision_towers_reduce_identically(processor, photos):
    pixels = processor.image_processor(photos[:3], return_tensors="pt")["pixel_values"]
    results = []
    for implementation in ("eager", "sdpa"):
        model = build_tiny_model("prumerge")
        model.model.vision_tower.set_attn_implementation(implementation)
        results.append(model.get_image_features(pixel_values=pixels))
    assert torch.equal(results[0].visual_token_counts, results[1].visual_token_counts)
    for a, b in zip(results[0].pooler_output, results[1].pooler_output):
        assert_close_at_scale(a, b, relative=1e-5)


def test_feature_layer_without_a_consuming_block_is_rejected(processor, photos):
    model = build_tiny_model("prumerge")
    model.config.vision_feature_layer = -1
    pixels = processor.image_processor(photos[:1], return_tensors="pt")["pixel_values"]
    with pytest.raises(ValueError, match="consumes the feature layer"):
        model.get_image_features(pixel_values=pixels)


def test_full_vicuna_prompt_runs(processor, photos):
    model = build_tiny_model("prumerge")
    inputs = batch(processor, photos[:2], [generation_prompt("What is in the image?")] * 2)
    generated = model.generate(**inputs, max_new_tokens=4, do_sample=False)
    assert generated.shape == (2, inputs["input_ids"].shape[1] + 4)
