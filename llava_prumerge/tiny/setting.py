"""The embedded tiny setting: a LLaVA-1.5-shaped model, tokenizer and processor built locally.

No Hub access is needed: the model is built from a config with random weights, the tokenizer is
character-level, and the demo images are real photos shipped by scikit-image. The tiny CLIP tower
has LLaVA-1.5's structure (CLS + patch grid, penultimate-layer features, ``default`` strategy) at
a size that runs in seconds on a CPU. Its answers are noise: it has never been trained.
"""

from __future__ import annotations

import json
import string
from pathlib import Path

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

from ..config import TokenReductionConfig
from ..conversation import IMAGE_TOKEN
from ..models.llava import LlavaPruMergeForConditionalGeneration

TINY_IMAGE_SIZE = 48
TINY_PATCH_SIZE = 4  # a 12 x 12 grid: N = 144 patch tokens
DEMO_IMAGES = ("astronaut", "coffee", "chelsea", "rocket", "text", "camera")
"""Photos from ``skimage.data`` used by the demo and the tests."""

TINY_ASSETS_VERSION = "3"
"""Bumped whenever the tiny model, tokenizer or dataset changes, so stale assets get rewritten."""


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


def tiny_vision_config(image_size: int = TINY_IMAGE_SIZE, patch_size: int = TINY_PATCH_SIZE) -> CLIPVisionConfig:
    """The tiny CLIP tower: CLS + a patch grid, 3 blocks of width 32 (4 heads)."""
    return CLIPVisionConfig(
        hidden_size=32,
        intermediate_size=64,
        num_hidden_layers=3,
        num_attention_heads=4,
        image_size=image_size,
        patch_size=patch_size,
        projection_dim=32,
    )


def tiny_text_config(tokenizer: PreTrainedTokenizerFast, **overrides) -> LlamaConfig:
    """The tiny Llama: 2 layers of width 32 over ``tokenizer``'s vocabulary."""
    values = dict(
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
        # Wider than the usual 0.02 so that the frozen random lm_head can express a peaked
        # distribution: LoRA finetuning of the tiny model then visibly lowers the loss.
        initializer_range=0.25,
    )
    return LlamaConfig(**(values | overrides))


def tiny_llava_config(tokenizer: PreTrainedTokenizerFast | None = None, **text_overrides) -> LlavaConfig:
    """LLaVA-1.5's layout at toy size: CLIP (3 blocks, width 32) + Llama (2 layers, width 32)."""
    tokenizer = tokenizer or build_tiny_tokenizer()
    vision, text = tiny_vision_config(), tiny_text_config(tokenizer, **text_overrides)
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
    sharpen_tower_attention(model.model.vision_tower, model.config.vision_feature_layer, scale)


def sharpen_tower_attention(tower: torch.nn.Module, feature_layer: int, scale: float) -> None:
    """:func:`sharpen_cls_attention` on one CLIP tower whose ``feature_layer`` is reduced."""
    depth = feature_layer % (len(tower.encoder.layers) + 1)
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
        if not hasattr(data, name):
            raise ValueError(f"scikit-image has no bundled image {name!r}")
        array = getattr(data, name)()
        if array.dtype == bool:
            array = array.astype("uint8") * 255
        images.append(Image.fromarray(array).convert("RGB"))
    return images


TINY_DATA_IMAGES = {
    # name: (colour?, a short caption the tiny model can learn)
    "astronaut": (True, "an astronaut"),
    "camera": (False, "a cameraman"),
    "chelsea": (True, "a cat"),
    "coffee": (True, "a cup of coffee"),
    "coins": (False, "coins"),
    "horse": (False, "a horse"),
    "moon": (False, "the moon"),
    "page": (False, "a page of text"),
    "rocket": (True, "a rocket"),
    "text": (False, "text"),
    "brick": (False, "a brick wall"),
    "grass": (False, "grass"),
    "gravel": (False, "gravel"),
    "colorwheel": (True, "a colour wheel"),
    "immunohistochemistry": (True, "stained cells"),
    "hubble_deep_field": (True, "galaxies"),
    "clock": (False, "a clock"),
    "checkerboard": (False, "a checkerboard"),
}
TINY_TEXT_ONLY = [("What is two plus three?", "five"), ("Name a colour.", "blue"), ("Say hello.", "hello")]


def _sample(sample_id: str, turns: list[str], image: str | None = None) -> dict:
    """One ``llava_v1_5_mix665k.json`` sample: ``turns`` alternate human and gpt, ``image`` names its file if any."""
    sample = {"id": sample_id} if image is None else {"id": sample_id, "image": image}
    sample["conversations"] = [{"from": ("human", "gpt")[i % 2], "value": turn} for i, turn in enumerate(turns)]
    return sample


def write_tiny_dataset(directory: str | Path, image_size: int = 96) -> Path:
    """A LLaVA-1.5-format instruction set from scikit-image photos; returns the JSON path.

    Single-turn captions, two-turn samples (caption, then colour/greyscale) and text-only samples,
    in the ``llava_v1_5_mix665k.json`` schema with images under ``images/``.
    """
    directory = Path(directory)
    (directory / "images").mkdir(parents=True, exist_ok=True)
    samples = []
    names = list(TINY_DATA_IMAGES)
    for name, image in zip(names, demo_images(tuple(names))):
        image.thumbnail((image_size, image_size))
        image.save(directory / "images" / f"{name}.png")
        colour, caption = TINY_DATA_IMAGES[name]
        samples.append(_sample(f"{name}-caption", ["<image>\nWhat is in the picture?", caption], f"{name}.png"))
        turns = ["What is this?\n<image>", caption, "Colour or greyscale?", "colour" if colour else "greyscale"]
        samples.append(_sample(f"{name}-two-turns", turns, f"{name}.png"))
    for index, (question, answer) in enumerate(TINY_TEXT_ONLY):
        samples.append(_sample(f"text-only-{index}", [question, answer]))
    path = directory / "tiny_instruct.json"
    path.write_text(json.dumps(samples, indent=1) + "\n")
    return path


def tiny_assets_current(root: str | Path) -> bool:
    """Whether ``root`` holds tiny assets written by this version of the code."""
    stamp = Path(root) / "VERSION"
    return stamp.is_file() and stamp.read_text().strip() == TINY_ASSETS_VERSION


def write_tiny_assets(root: str | Path, seed: int = 0) -> dict[str, Path]:
    """Everything the embedded tiny setting needs, on disk in the real formats.

    - ``llava-tiny/``: a LLaVA checkpoint + processor in the llava-hf layout (start point (a));
    - ``stage2/``: ``vicuna-tiny/`` (causal LM + tokenizer), ``clip-tiny/`` (CLIPVisionModel +
      image processor) and ``mm_projector.bin`` with LLaVA's keys (start point (b));
    - ``data/``: :func:`write_tiny_dataset`.
    """
    from transformers import CLIPVisionModel, LlamaForCausalLM

    root = Path(root)
    processor = build_tiny_processor()
    model = build_tiny_model(seed=seed, tokenizer=processor.tokenizer)
    llava_dir = root / "llava-tiny"
    model.save_pretrained(llava_dir)
    processor.save_pretrained(llava_dir)

    stage2 = root / "stage2"
    language = LlamaForCausalLM(model.config.text_config)
    language.model.load_state_dict(model.model.language_model.state_dict())
    language.lm_head.load_state_dict(model.lm_head.state_dict())
    language.save_pretrained(stage2 / "vicuna-tiny")
    processor.tokenizer.save_pretrained(stage2 / "vicuna-tiny")
    vision = CLIPVisionModel(model.config.vision_config)
    vision.load_state_dict(model.model.vision_tower.state_dict())
    vision.save_pretrained(stage2 / "clip-tiny")
    processor.image_processor.save_pretrained(stage2 / "clip-tiny")
    projector = model.model.multi_modal_projector
    torch.save(
        {
            "model.mm_projector.0.weight": projector.linear_1.weight.detach().clone(),
            "model.mm_projector.0.bias": projector.linear_1.bias.detach().clone(),
            "model.mm_projector.2.weight": projector.linear_2.weight.detach().clone(),
            "model.mm_projector.2.bias": projector.linear_2.bias.detach().clone(),
        },
        stage2 / "mm_projector.bin",
    )
    data_path = write_tiny_dataset(root / "data")
    (root / "VERSION").write_text(TINY_ASSETS_VERSION + "\n")
    return {
        "llava": llava_dir,
        "language_model": stage2 / "vicuna-tiny",
        "vision_tower": stage2 / "clip-tiny",
        "mm_projector": stage2 / "mm_projector.bin",
        "data": data_path,
    }
