"""A llava-hf-format checkpoint with the real LLaVA-1.5 tokenizer and a narrow random model.

The tokenizer is built from ``shared/fixtures/llama2-tokenizer.model``, the SentencePiece file of
Vicuna-v1.5 / LLaVA-1.5, with ``<image>`` = 32000 and ``<pad>`` = 32001 added as in
``llava-hf/llava-1.5-7b-hf``. The processor is llava-hf's (336 px CLIP, patch 14, 576 placeholders
per image); the model has LLaVA-1.5's layout at the true 24 x 24 patch grid but is tiny and untrained.
"""

from __future__ import annotations

import json
import shutil
import tempfile
from pathlib import Path

import torch
from tokenizers import AddedToken
from transformers import (
    AutoTokenizer,
    CLIPImageProcessor,
    CLIPVisionConfig,
    LlamaConfig,
    LlavaConfig,
    LlavaProcessor,
)

from llava_prumerge import LlavaPruMergeForConditionalGeneration
from llava_prumerge.tiny.setting import sharpen_cls_attention

SENTENCEPIECE_MODEL = Path(__file__).resolve().parents[2] / "shared" / "fixtures" / "llama2-tokenizer.model"
"""``<repo>/../shared/fixtures/llama2-tokenizer.model`` (CI has a copy of shared/ beside the clone)."""

IMAGE_TOKEN_ID = 32000
PAD_TOKEN_ID = 32001
IMAGE_SIZE = 336
PATCH_SIZE = 14
IMAGE_SEQ_LENGTH = (IMAGE_SIZE // PATCH_SIZE) ** 2  # 576
VOCAB_SIZE = 32064  # llava-1.5-7b-hf's text_config.vocab_size (32002 rounded up to a multiple of 64)


def sentencepiece_model_path() -> Path:
    """The shared SentencePiece file; raises with a clear message when it is missing."""
    if not SENTENCEPIECE_MODEL.is_file():
        raise FileNotFoundError(
            f"the real LLaVA-1.5 tokenizer is missing: expected {SENTENCEPIECE_MODEL} "
            "(shared/fixtures/llama2-tokenizer.model beside the repository, see shared/fixtures/README.md)"
        )
    return SENTENCEPIECE_MODEL


def build_llava_tokenizer():
    """Vicuna-v1.5's tokenizer (``legacy: false``) plus llava-hf's ``<image>`` (32000) and ``<pad>`` (32001)."""
    tokenizer = build_vicuna_tokenizer()
    tokenizer.add_tokens([AddedToken("<image>", special=True, normalized=False)], special_tokens=True)
    tokenizer.add_special_tokens({"pad_token": AddedToken("<pad>", special=True, normalized=False)})
    ids = tokenizer.convert_tokens_to_ids(["<image>", "<pad>"])
    if ids != [IMAGE_TOKEN_ID, PAD_TOKEN_ID]:
        raise AssertionError(f"<image>/<pad> got ids {ids}, llava-hf has [32000, 32001]")
    return tokenizer


def build_vicuna_tokenizer():
    """Vicuna-v1.5's own tokenizer: the 32,000 SentencePiece pieces of Llama 2, nothing added."""
    with tempfile.TemporaryDirectory() as scratch:
        shutil.copyfile(sentencepiece_model_path(), Path(scratch) / "tokenizer.model")
        # llava-hf's tokenizer_config.json; without add_bos_token transformers 5.24 builds it adding no <s>
        config = {"tokenizer_class": "LlamaTokenizer", "legacy": False, "add_bos_token": True, "add_eos_token": False}
        (Path(scratch) / "tokenizer_config.json").write_text(json.dumps(config))
        tokenizer = AutoTokenizer.from_pretrained(scratch)
    if len(tokenizer) != 32000:
        raise AssertionError(f"expected the 32,000 pieces of Llama 2, got {len(tokenizer)}")
    return tokenizer


def build_llava_processor(tokenizer) -> LlavaProcessor:
    """llava-1.5-hf's processor: CLIP at 336 px (CLIP mean/std), patch 14, CLS dropped -> 576 placeholders."""
    image_processor = CLIPImageProcessor(
        size={"shortest_edge": IMAGE_SIZE}, crop_size={"height": IMAGE_SIZE, "width": IMAGE_SIZE}
    )
    return LlavaProcessor(
        image_processor=image_processor,
        tokenizer=tokenizer,
        patch_size=PATCH_SIZE,
        vision_feature_select_strategy="default",
        num_additional_image_tokens=1,
        image_token="<image>",
    )


def llava_hf_config(tokenizer) -> LlavaConfig:
    """LLaVA-1.5's layout (CLIP 336/14, penultimate layer, ``default``) with narrow random layers."""
    vision = CLIPVisionConfig(
        hidden_size=32,
        intermediate_size=64,
        num_hidden_layers=2,
        num_attention_heads=2,
        image_size=IMAGE_SIZE,
        patch_size=PATCH_SIZE,
        projection_dim=32,
    )
    text = LlamaConfig(
        hidden_size=64,
        intermediate_size=128,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=4,
        vocab_size=VOCAB_SIZE,
        max_position_embeddings=4096,
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=PAD_TOKEN_ID,
        initializer_range=0.25,  # a peaked random lm_head: greedy ties between top tokens are unlikely
    )
    return LlavaConfig(
        vision_config=vision.to_dict(),
        text_config=text.to_dict(),
        image_token_id=IMAGE_TOKEN_ID,
        pad_token_id=PAD_TOKEN_ID,
        vision_feature_layer=-2,
        vision_feature_select_strategy="default",
        image_seq_length=IMAGE_SEQ_LENGTH,
        projector_hidden_act="gelu",
    )


def build_llava_hf_fixture(folder: str | Path, seed: int = 0) -> Path:
    """Write the checkpoint (model + processor, llava-hf layout) to ``folder`` and return it."""
    folder = Path(folder)
    tokenizer = build_llava_tokenizer()
    if len(tokenizer) > VOCAB_SIZE:
        raise AssertionError(f"{len(tokenizer)} tokens do not fit vocab_size={VOCAB_SIZE}")
    processor = build_llava_processor(tokenizer)
    torch.manual_seed(seed)
    model = LlavaPruMergeForConditionalGeneration(llava_hf_config(tokenizer))
    sharpen_cls_attention(model, 4.0)  # a trained CLIP's CLS attention is peaked, a random one is flat
    model.save_pretrained(folder)
    processor.save_pretrained(folder)
    return folder
