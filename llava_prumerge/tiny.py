"""The embedded tiny setting: a LLaVA-1.5-shaped model, tokenizer and processor built locally.

No Hub access is needed: the model is built from a config with random weights, the tokenizer is
character-level, and the demo images are real photos shipped by scikit-image. The tiny CLIP tower
has LLaVA-1.5's structure (CLS + patch grid, penultimate-layer features, ``default`` strategy) at
a size that runs in seconds on a CPU. Its answers are noise: it has never been trained.
"""

from __future__ import annotations

import string

import torch
from PIL import Image
from tokenizers import Regex, Tokenizer, decoders, models, pre_tokenizers, processors
from transformers import (
    CLIPImageProcessor,
    CLIPVisionConfig,
    LlamaConfig,
    LlavaConfig,
    LlavaProcessor,
    PreTrainedTokenizerFast,
)

from .config import TokenReductionConfig
from .modeling import LlavaPruMergeForConditionalGeneration

IMAGE_TOKEN = "<image>"
TINY_IMAGE_SIZE = 48
TINY_PATCH_SIZE = 4  # a 12 x 12 grid: N = 144 patch tokens
DEMO_IMAGES = ("astronaut", "coffee", "chelsea", "rocket", "text", "camera")
"""Photos from ``skimage.data`` used by the demo and the tests."""

VICUNA_SYSTEM = (
    "A chat between a curious human and an artificial intelligence assistant. "
    "The assistant gives helpful, detailed, and polite answers to the human's questions."
)


def build_tiny_tokenizer() -> PreTrainedTokenizerFast:
    """Character-level tokenizer over printable ASCII, with ``<s>``, ``</s>``, ``<pad>``, ``<image>``."""
    chars = [c for c in string.printable if c not in "\t\r\x0b\x0c"]
    specials = ["<unk>", "<s>", "</s>", "<pad>", IMAGE_TOKEN]
    vocab = {token: i for i, token in enumerate(specials + chars)}
    backend = Tokenizer(models.WordLevel(vocab, unk_token="<unk>"))
    backend.pre_tokenizer = pre_tokenizers.Split(Regex("."), behavior="isolated")
    backend.decoder = decoders.Fuse()
    backend.post_processor = processors.TemplateProcessing(
        single="<s> $A", pair="<s> $A $B", special_tokens=[("<s>", vocab["<s>"])]
    )
    tokenizer = PreTrainedTokenizerFast(
        tokenizer_object=backend, bos_token="<s>", eos_token="</s>", unk_token="<unk>", pad_token="<pad>"
    )
    tokenizer.add_special_tokens({"additional_special_tokens": [IMAGE_TOKEN]})
    return tokenizer


def build_tiny_processor(tokenizer: PreTrainedTokenizerFast | None = None) -> LlavaProcessor:
    """A ``LlavaProcessor`` like llava-1.5-hf's (CLIP normalisation, ``N`` placeholders per image)."""
    tokenizer = tokenizer or build_tiny_tokenizer()
    image_processor = CLIPImageProcessor(
        size={"shortest_edge": TINY_IMAGE_SIZE},
        crop_size={"height": TINY_IMAGE_SIZE, "width": TINY_IMAGE_SIZE},
    )
    return LlavaProcessor(
        image_processor=image_processor,
        tokenizer=tokenizer,
        patch_size=TINY_PATCH_SIZE,
        vision_feature_select_strategy="default",
        num_additional_image_tokens=1,
        image_token=IMAGE_TOKEN,
    )


def tiny_llava_config(tokenizer: PreTrainedTokenizerFast | None = None, **text_overrides) -> LlavaConfig:
    """LLaVA-1.5's layout at toy size: CLIP (3 blocks, width 32) + Llama (2 layers, width 32)."""
    tokenizer = tokenizer or build_tiny_tokenizer()
    vision = CLIPVisionConfig(
        hidden_size=32,
        intermediate_size=64,
        num_hidden_layers=3,
        num_attention_heads=4,
        image_size=TINY_IMAGE_SIZE,
        patch_size=TINY_PATCH_SIZE,
        projection_dim=32,
    )
    text = LlamaConfig(
        hidden_size=32,
        intermediate_size=64,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=4,
        vocab_size=len(tokenizer),
        max_position_embeddings=2048,
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
        **text_overrides,
    )
    return LlavaConfig(
        vision_config=vision.to_dict(),
        text_config=text.to_dict(),
        image_token_id=tokenizer.convert_tokens_to_ids(IMAGE_TOKEN),
        vision_feature_layer=-2,
        vision_feature_select_strategy="default",
        image_seq_length=(TINY_IMAGE_SIZE // TINY_PATCH_SIZE) ** 2,
        projector_hidden_act="gelu",
    )


def sharpen_cls_attention(model: LlavaPruMergeForConditionalGeneration, scale: float) -> None:
    """Scale the q/k projections of the block consuming the feature layer by ``scale``.

    A trained CLIP's CLS attention is sparse (paper Fig. 3a); a random one is nearly flat. This
    makes the random tower's logits ``scale²`` times larger, so the attention is peaked and the
    IQR selection behaves as on a real checkpoint.
    """
    tower = model.model.vision_tower
    depth = model.config.vision_feature_layer % (len(tower.encoder.layers) + 1)
    attention = tower.encoder.layers[depth].self_attn
    with torch.no_grad():
        for projection in (attention.q_proj, attention.k_proj):
            projection.weight.mul_(scale)
            projection.bias.mul_(scale)


def build_tiny_model(
    token_reduction: TokenReductionConfig | dict | str | None = None,
    seed: int = 0,
    attention_scale: float = 4.0,
    tokenizer: PreTrainedTokenizerFast | None = None,
) -> LlavaPruMergeForConditionalGeneration:
    """A random-weight tiny LLaVA (deterministic for a seed), in eval mode, CLS attention peaked."""
    config = tiny_llava_config(tokenizer)
    config.token_reduction = TokenReductionConfig.coerce(token_reduction).to_dict()
    torch.manual_seed(seed)
    model = LlavaPruMergeForConditionalGeneration(config)
    sharpen_cls_attention(model, attention_scale)
    return model.eval()


def demo_images(names: tuple[str, ...] = DEMO_IMAGES) -> list[Image.Image]:
    """Real photos that ship with scikit-image, as RGB PIL images."""
    from skimage import data

    images = []
    for name in names:
        array = getattr(data, name)()
        image = Image.fromarray(array)
        images.append(image.convert("RGB"))
    return images


def vicuna_prompt(question: str, with_image: bool = True) -> str:
    """LLaVA-1.5's ``vicuna_v1`` conversation template for one user turn."""
    content = f"{IMAGE_TOKEN}\n{question}" if with_image else question
    return f"{VICUNA_SYSTEM} USER: {content} ASSISTANT:"
