"""A tiny LLaVA-NeXT built from configs: the AnyRes path of the embedded setting.

The layout of ``llava-hf/llava-v1.6-*-hf`` at toy size: a CLIP tower with a CLS token and a patch
grid (32-px crops, patch 4: ``N = 64`` patches on an 8×8 grid), penultimate-layer features, the
``default`` strategy (CLS dropped), an ``image_newline``, a Llama. Its grid pinpoints allow 1×2,
2×1 and 2×2 grid crops, so a wide, a tall and a square photo get different crop grids, padding and
placeholder counts (up to ``64 + 16·16 + 16 = 336`` per image). Random weights: its answers are noise.
"""

from __future__ import annotations

from pathlib import Path

import torch
from transformers import LlavaNextConfig, LlavaNextImageProcessor, LlavaNextProcessor, PreTrainedTokenizerFast

from ..config import TokenReductionConfig
from ..conversation import IMAGE_TOKEN
from ..models.llava_next import LlavaNextPruMergeForConditionalGeneration
from .setting import build_tiny_tokenizer, sharpen_tower_attention, tiny_text_config, tiny_vision_config

TINY_NEXT_IMAGE_SIZE = 32
"""Side of one crop in pixels (the base view and every grid crop)."""
TINY_NEXT_PATCH_SIZE = 4  # an 8 x 8 grid per crop: N = 64 patch tokens
TINY_NEXT_GRID_PINPOINTS = [[32, 64], [64, 32], [64, 64]]
"""``(height, width)`` resolutions AnyRes chooses from: 1×2, 2×1 and 2×2 grid crops."""


def build_tiny_next_processor(tokenizer: PreTrainedTokenizerFast | None = None) -> LlavaNextProcessor:
    """A ``LlavaNextProcessor`` like llava-v1.6-hf's (CLIP normalisation, AnyRes crops, padding).

    ``num_additional_image_tokens=1``: the processor counts the base crop as ``N`` patches plus
    this many extra tokens, then subtracts one for ``vision_feature_select_strategy="default"``
    (the CLS the model drops). With a CLS tower the extra token is the CLS, so it must be 1, as in
    llava-hf's processor configs; the default 0 writes one placeholder fewer than the model's
    features and the stock forward fails.
    """
    tokenizer = tokenizer or build_tiny_tokenizer()
    image_processor = LlavaNextImageProcessor(
        size={"shortest_edge": TINY_NEXT_IMAGE_SIZE},
        crop_size={"height": TINY_NEXT_IMAGE_SIZE, "width": TINY_NEXT_IMAGE_SIZE},
        image_grid_pinpoints=TINY_NEXT_GRID_PINPOINTS,
    )
    return LlavaNextProcessor(
        image_processor=image_processor,
        tokenizer=tokenizer,
        patch_size=TINY_NEXT_PATCH_SIZE,
        vision_feature_select_strategy="default",
        num_additional_image_tokens=1,
        image_token=IMAGE_TOKEN,
    )


def tiny_llava_next_config(tokenizer: PreTrainedTokenizerFast | None = None) -> LlavaNextConfig:
    """LLaVA-NeXT's layout at toy size: CLIP (3 blocks, width 32, 32-px crops) + Llama (2 layers, width 32)."""
    tokenizer = tokenizer or build_tiny_tokenizer()
    vision = tiny_vision_config(image_size=TINY_NEXT_IMAGE_SIZE, patch_size=TINY_NEXT_PATCH_SIZE)
    text = tiny_text_config(tokenizer)
    return LlavaNextConfig(
        vision_config=vision.to_dict(),
        text_config=text.to_dict(),
        image_token_index=tokenizer.convert_tokens_to_ids(IMAGE_TOKEN),
        vision_feature_layer=-2,
        vision_feature_select_strategy="default",
        image_grid_pinpoints=TINY_NEXT_GRID_PINPOINTS,
        image_seq_length=(TINY_NEXT_IMAGE_SIZE // TINY_NEXT_PATCH_SIZE) ** 2,
        projector_hidden_act="gelu",
    )


def build_tiny_next_model(
    token_reduction: TokenReductionConfig | dict | str | None = None,
    seed: int = 0,
    attention_scale: float = 4.0,
    tokenizer: PreTrainedTokenizerFast | None = None,
    token_layout: str = "grid",
) -> LlavaNextPruMergeForConditionalGeneration:
    """A random-weight tiny LLaVA-NeXT (deterministic for a seed), in eval mode.

    The tower's CLS attention is sharpened (:func:`~llava_prumerge.tiny.setting.sharpen_tower_attention`:
    q/k of the consuming block times ``attention_scale``), so the IQR selection behaves as on a
    trained CLIP.
    """
    config = tiny_llava_next_config(tokenizer)
    config.token_reduction = TokenReductionConfig.coerce(token_reduction).to_dict()
    config.token_layout = token_layout
    torch.manual_seed(seed)
    model = LlavaNextPruMergeForConditionalGeneration(config)
    sharpen_tower_attention(model.model.vision_tower, config.vision_feature_layer, attention_scale)
    return model.eval()


def write_tiny_next_llava(directory: str | Path, seed: int = 0) -> Path:
    """Save the tiny LLaVA-NeXT and its processor in the ``llava-hf/llava-v1.6-*-hf`` layout."""
    directory = Path(directory)
    processor = build_tiny_next_processor()
    model = build_tiny_next_model(seed=seed, tokenizer=processor.tokenizer)
    model.save_pretrained(directory)
    processor.save_pretrained(directory)
    return directory
