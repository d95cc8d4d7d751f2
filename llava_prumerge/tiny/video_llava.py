"""A tiny Video-LLaVA built from a config: the video path of the embedded setting.

The layout of ``LanguageBind/Video-LLaVA-7B-hf`` at toy size: two CLIP towers (image, video) with a
CLS token and a patch grid, penultimate-layer features, a CLS kept per frame for videos, one
projector, a Llama; the processor writes ``N`` ``<image>`` placeholders per image and
``F × (N + 1)`` ``<video>`` placeholders per video. Random weights: its answers are noise.
"""

from __future__ import annotations

from pathlib import Path

import torch
from transformers import (
    PreTrainedTokenizerFast,
    VideoLlavaConfig,
    VideoLlavaImageProcessor,
    VideoLlavaProcessor,
    VideoLlavaVideoProcessor,
)

from ..config import TokenReductionConfig
from ..conversation import IMAGE_TOKEN, VIDEO_TOKEN
from ..models.video_llava import VideoLlavaPruMergeForConditionalGeneration
from .setting import (
    TINY_IMAGE_SIZE,
    TINY_PATCH_SIZE,
    build_tiny_tokenizer,
    sharpen_tower_attention,
    tiny_text_config,
    tiny_vision_config,
)

TINY_VIDEO_FRAMES = 8
"""Frames per video, as Video-LLaVA (8 sampled by ``np.linspace``, :func:`llava_prumerge.video.frame_indices`)."""


def build_tiny_video_tokenizer() -> PreTrainedTokenizerFast:
    """The tiny character-level tokenizer plus a ``<video>`` special token."""
    tokenizer = build_tiny_tokenizer()
    tokenizer.add_special_tokens({"additional_special_tokens": [IMAGE_TOKEN, VIDEO_TOKEN]})
    return tokenizer


def build_tiny_video_processor(tokenizer: PreTrainedTokenizerFast | None = None) -> VideoLlavaProcessor:
    """A ``VideoLlavaProcessor`` like Video-LLaVA-7B-hf's (CLIP normalisation, resize + centre crop)."""
    tokenizer = tokenizer or build_tiny_video_tokenizer()
    size = {"shortest_edge": TINY_IMAGE_SIZE}
    crop = {"height": TINY_IMAGE_SIZE, "width": TINY_IMAGE_SIZE}
    return VideoLlavaProcessor(
        image_processor=VideoLlavaImageProcessor(size=size, crop_size=crop),
        video_processor=VideoLlavaVideoProcessor(size=size, crop_size=crop),
        tokenizer=tokenizer,
        patch_size=TINY_PATCH_SIZE,
        vision_feature_select_strategy="default",
        num_additional_image_tokens=1,
        image_token=IMAGE_TOKEN,
        video_token=VIDEO_TOKEN,
    )


def tiny_video_llava_config(tokenizer: PreTrainedTokenizerFast | None = None) -> VideoLlavaConfig:
    """Video-LLaVA's layout at toy size: CLIP (3 blocks, width 32) ×2 + Llama (2 layers, width 32)."""
    tokenizer = tokenizer or build_tiny_video_tokenizer()
    vision = tiny_vision_config()
    text = tiny_text_config(tokenizer, max_position_embeddings=4096)  # 8 frames x 145 tokens + the prompt
    patches = (TINY_IMAGE_SIZE // TINY_PATCH_SIZE) ** 2
    return VideoLlavaConfig(
        vision_config=vision.to_dict(),
        text_config=text.to_dict(),
        image_token_index=tokenizer.convert_tokens_to_ids(IMAGE_TOKEN),
        video_token_index=tokenizer.convert_tokens_to_ids(VIDEO_TOKEN),
        vision_feature_layer=-2,
        vision_feature_select_strategy="default",
        image_seq_length=patches,
        video_seq_length=TINY_VIDEO_FRAMES * (patches + 1),
        projector_hidden_act="gelu",
    )


def build_tiny_video_model(
    token_reduction: TokenReductionConfig | dict | str | None = None,
    seed: int = 0,
    attention_scale: float = 4.0,
    tokenizer: PreTrainedTokenizerFast | None = None,
) -> VideoLlavaPruMergeForConditionalGeneration:
    """A random-weight tiny Video-LLaVA (deterministic for a seed), in eval mode.

    Both towers' CLS attention is sharpened (:func:`~llava_prumerge.tiny.setting.sharpen_tower_attention`:
    q/k of the consuming block times ``attention_scale``), so the IQR selection behaves as on a
    trained CLIP.
    """
    config = tiny_video_llava_config(tokenizer)
    config.token_reduction = TokenReductionConfig.coerce(token_reduction).to_dict()
    torch.manual_seed(seed)
    model = VideoLlavaPruMergeForConditionalGeneration(config)
    for tower in (model.model.image_tower, model.model.video_tower):
        sharpen_tower_attention(tower, config.vision_feature_layer, attention_scale)
    return model.eval()


def write_tiny_video_llava(directory: str | Path, seed: int = 0) -> Path:
    """Save the tiny Video-LLaVA and its processor in the ``LanguageBind/Video-LLaVA-7B-hf`` layout."""
    directory = Path(directory)
    processor = build_tiny_video_processor()
    model = build_tiny_video_model(seed=seed, tokenizer=processor.tokenizer)
    model.save_pretrained(directory)
    processor.save_pretrained(directory)
    return directory
