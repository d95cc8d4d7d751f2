"""Measured cost of LLaVA-1.5, LLaVA-NeXT and Video-LLaVA with and without visual-token reduction
(``scripts/benchmark.py``).

For each preset, method and batch size it measures, after a warm-up, the median over repeats of:
vision encoding (tower, reduction if any, projector: the visual features the LLM receives), the
reduction alone and its share of the vision time, the language model's prefill alone, the prefill's
matrix products alone (see :func:`matmul_only_prefill`), time to first token (vision + prefill),
decode tokens per second, peak memory (CUDA's allocator, or the process's peak resident set on CPU),
the KV-cache bytes after prefill and the visual tokens per sample. It also times
:func:`llava_prumerge.analysis.reference.released_loop_prumerge` (the released code's per-image, per-token
loop) against the batched reduction on the same tensors. On CUDA every timing is taken with CUDA
events after synchronising.

What differs between the families is the workload (:class:`ImageWorkload`, :class:`NextWorkload`,
:class:`VideoWorkload`): the inputs, the encode-and-lay-out call, the vision and the reduction-alone
callables and the counts; the timing is shared. A LLaVA-1.5 sample is one photo behind one
``<image>`` placeholder. A LLaVA-NeXT sample (``next-*``, ``llava-next-*`` presets) is one photo
resized to a square of two crop sides, so that AnyRes picks the 2×2 grid and unpadding cuts
nothing (the worst case: ``N + (2s)² + 2s`` tokens with ``s = √N``; 576 + 48·48 + 48 newlines =
2,928 for CLIP-L/14-336, 64 + 16·16 + 16 = 336 for the tiny NeXT), behind the processor's
placeholders: its visual tokens are counted per image as the language model gets them (grid
layout: newlines included), ``extra`` adds the crops, the mean tokens per crop (the stock ``N`` or
the reducer's count) and the newlines, a budget is per crop, the vision time is
``get_image_features`` (tower over every crop, reduction, projector, layout) and the reduction
alone runs on the tower's precomputed features/q/k of all crops. A
Video-LLaVA sample (``video-*`` presets) is one video of :data:`~llava_prumerge.video.DEFAULT_NUM_FRAMES`
frames (a pan across a photo) behind the processor's ``F × (N + 1)`` ``<video>`` placeholders (the
stock path needs them; the reduced paths re-lay them): its visual tokens are counted per video,
``extra`` adds the frames and the tokens per frame, a budget is per frame (each frame's CLS comes
on top), the vision time is ``get_video_features`` (tower over every frame, reduction, projector)
and the reduction alone runs on the video tower's precomputed features/q/k of all ``F·B`` frames.
The CLIP-overhead probe (:func:`clip_overhead`) and :func:`loop_comparison` use LLaVA-1.5's
CLIP-L/336 shapes whatever the preset.
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path

import torch
from PIL import Image
from transformers import (
    CLIPImageProcessor,
    CLIPVisionConfig,
    LlamaConfig,
    LlavaConfig,
    LlavaNextConfig,
    LlavaNextImageProcessor,
    VideoLlavaConfig,
)
from transformers.modeling_outputs import BaseModelOutputWithPooling
from transformers.models.llava_next.modeling_llava_next import get_anyres_image_grid_shape, unpad_image

from ..config import ATTENTION_METHODS, PEER_METHODS, TokenReductionConfig, resolve_reduction
from ..models.llava import LlavaPruMergeForConditionalGeneration
from ..models.llava_next import LlavaNextPruMergeForConditionalGeneration
from ..models.video_llava import VideoLlavaPruMergeForConditionalGeneration
from ..models.vision import encode_for_reduction
from ..peers import image_seeds
from ..reduction import PRODUCER_ATTENTION_METHODS, PeerInputs, cls_attention, reduce_visual_tokens
from ..tiny.llava_next import build_tiny_next_model
from ..tiny.setting import build_tiny_model, demo_images, sharpen_cls_attention, sharpen_tower_attention
from ..tiny.video_llava import build_tiny_video_model
from ..video import DEFAULT_NUM_FRAMES
from .reference import released_loop_prumerge
from .roofline import LLAVA_NEXT_PINPOINTS

CLIP_L_336 = dict(
    hidden_size=1024, intermediate_size=4096, num_hidden_layers=24, num_attention_heads=16,
    image_size=336, patch_size=14, projection_dim=768, hidden_act="quick_gelu",
)  # fmt: skip
VICUNA_7B = dict(hidden_size=4096, intermediate_size=11008, num_hidden_layers=32, num_attention_heads=32)
VICUNA_13B = dict(hidden_size=5120, intermediate_size=13824, num_hidden_layers=40, num_attention_heads=40)
CLIP_L_224 = dict(CLIP_L_336, image_size=224)  # Video-LLaVA's towers (LanguageBind, CLIP-L/14 shapes): 16 x 16 patches

PHOTOS = ("astronaut", "coffee", "chelsea", "rocket", "camera", "text")
"""The scikit-image photos behind the samples, in order (cycled past six)."""

PRESETS: dict[str, dict] = {
    # "build": a tiny-setting builder; "vision"/"text": the shapes of a random-weight model;
    # "weights": the checkpoint --weights loads instead; "video": a Video-LLaVA preset; "next": a
    # LLaVA-NeXT preset ("pinpoints": its image_grid_pinpoints, (height, width)).
    "tiny": {"build": build_tiny_model},  # llava_prumerge.tiny.setting: 144 patches, 2-layer width-32 LLM
    # CPU-sized with LLaVA-1.5's proportions: 576 visual tokens, an LLM far larger than the tower.
    "small": {
        "vision": dict(CLIP_L_336, hidden_size=256, intermediate_size=1024, num_hidden_layers=6, num_attention_heads=4),
        "text": dict(hidden_size=1024, intermediate_size=2816, num_hidden_layers=8, num_attention_heads=16),
    },
    "llava-1.5-7b": {"vision": CLIP_L_336, "text": VICUNA_7B, "weights": "llava-hf/llava-1.5-7b-hf"},
    "llava-1.5-13b": {"vision": CLIP_L_336, "text": VICUNA_13B, "weights": "llava-hf/llava-1.5-13b-hf"},
    # llava_prumerge.tiny.llava_next: 32-px crops of 8 x 8 patches, 2x2 grid: 64 + 16 x 16 + 16 = 336 tokens per image
    "next-tiny": {"build": build_tiny_next_model, "next": True},
    # llava-hf/llava-v1.6-vicuna-7b-hf: 576 + 48 x 48 + 48 = 2928 tokens per image on the 2x2 grid
    "llava-next-7b": {
        "vision": CLIP_L_336,
        "text": dict(VICUNA_7B, max_position_embeddings=4096),
        "weights": "llava-hf/llava-v1.6-vicuna-7b-hf",
        "next": True,
        "pinpoints": [list(pinpoint) for pinpoint in LLAVA_NEXT_PINPOINTS],
    },
    # llava_prumerge.tiny.video_llava: 8 frames x (144 patches + CLS) = 1160 tokens per video
    "video-tiny": {"build": build_tiny_video_model, "video": True},
    # LanguageBind/Video-LLaVA-7B-hf: 8 frames x (256 + CLS) = 2056 tokens per video, Vicuna-7B v1.5
    "video-llava-7b": {
        "vision": CLIP_L_224,
        "text": dict(VICUNA_7B, max_position_embeddings=4096),
        "weights": "LanguageBind/Video-LLaVA-7B-hf",
        "video": True,
    },
}


def is_video_preset(preset: str) -> bool:
    """Whether ``preset`` is a Video-LLaVA (one video per sample, budgets per frame)."""
    return bool(PRESETS[preset].get("video"))


def is_next_preset(preset: str) -> bool:
    """Whether ``preset`` is a LLaVA-NeXT (AnyRes crops per image, budgets per crop)."""
    return bool(PRESETS[preset].get("next"))


@dataclass
class Measurement:
    """One (preset, method, batch size) row; times in seconds (medians), memory in bytes.

    ``visual_tokens``: the mean per image, or per video for a video preset, whose ``extra`` also
    holds ``frames`` and ``visual_tokens_per_frame`` (the mean over all frames). A LLaVA-NeXT row's
    ``extra`` holds ``crops`` (per image, base view included), ``visual_tokens_per_crop`` (the mean
    over all crops of the tokens each crop gives before the layout: ``N`` stock) and ``newlines``
    (per image, counted in ``visual_tokens``).
    """

    preset: str
    method: str
    batch_size: int
    visual_tokens: float
    sequence_length: int
    vision_s: float
    reduction_s: float | None
    reduction_share: float | None
    prefill_s: float
    matmul_s: float
    ttft_s: float
    decode_tokens_per_s: float | None
    kv_cache_bytes: int
    peak_memory_bytes: int | None
    prefill_flops: float
    extra: dict = field(default_factory=dict)


def build_preset(preset: str, dtype: torch.dtype, device: str, weights: str | None = None):
    """The model and an image processor (the tower's size; frames too) for ``preset``
    (random weights unless ``weights``)."""
    if preset not in PRESETS:
        raise ValueError(f"unknown preset {preset!r}; choose from {sorted(PRESETS)}")
    spec = PRESETS[preset]
    video, next_ = is_video_preset(preset), is_next_preset(preset)
    model_class = LlavaPruMergeForConditionalGeneration
    if video:
        model_class = VideoLlavaPruMergeForConditionalGeneration
    elif next_:
        model_class = LlavaNextPruMergeForConditionalGeneration
    if "build" in spec:
        model = spec["build"]()
    elif weights:
        model = model_class.from_pretrained(weights, dtype=dtype)
    else:
        vision = CLIPVisionConfig(**spec["vision"]).to_dict()
        text = LlamaConfig(**spec["text"], num_key_value_heads=spec["text"]["num_attention_heads"], vocab_size=32064)
        if video:  # LanguageBind/Video-LLaVA-7B-hf's token ids and feature layer
            config = VideoLlavaConfig(vision_config=vision, text_config=text.to_dict(), image_token_index=32000,
                                      video_token_index=32001, vision_feature_layer=-2)  # fmt: skip
        elif next_:  # llava-hf/llava-v1.6-vicuna-7b-hf's token id, feature layer and strategy, pinpoints
            config = LlavaNextConfig(vision_config=vision, text_config=text.to_dict(), image_token_index=32000,
                                     vision_feature_layer=-2, vision_feature_select_strategy="default",
                                     image_grid_pinpoints=spec["pinpoints"], projector_hidden_act="gelu",
                                     image_seq_length=(vision["image_size"] // vision["patch_size"]) ** 2)  # fmt: skip
        else:
            config = LlavaConfig(vision_config=vision, text_config=text.to_dict(), image_token_id=32000)
        torch.manual_seed(0)
        default = torch.get_default_dtype()
        torch.set_default_dtype(dtype)  # built in the target dtype: 13B in fp32 first would not fit an 80 GB GPU
        try:
            with torch.device(device):
                model = model_class(config)
        finally:
            torch.set_default_dtype(default)
        # a peaked CLS attention, as a trained CLIP's
        if video:
            sharpen_tower_attention(model.model.video_tower, config.vision_feature_layer, 4.0)
        else:
            sharpen_cls_attention(model, 4.0)
    model = model.to(device=device, dtype=dtype).eval()
    vision = model.config.vision_config
    size = vision.image_size
    if next_:  # llava-v1.6's: the base view and the AnyRes crops of the pinpoint that fits best
        processor = LlavaNextImageProcessor(size={"shortest_edge": size}, crop_size={"height": size, "width": size},
                                            image_grid_pinpoints=model.config.image_grid_pinpoints)  # fmt: skip
    else:
        processor = CLIPImageProcessor(size={"shortest_edge": size}, crop_size={"height": size, "width": size})
    return model, processor


def prefill_flops(config, sequence_length: int, batch_size: int) -> float:
    """Multiply-adds ×2 of a Llama prefill (projections, MLP, attention scores and mixing, one
    ``lm_head`` row), the count the FLOP-ratio target is checked against."""
    text = config.text_config
    d, inner, layers = text.hidden_size, text.intermediate_size, text.num_hidden_layers
    kv = d * text.num_key_value_heads // text.num_attention_heads
    s = sequence_length
    per_layer = 2 * s * (2 * d * d + 2 * d * kv + 3 * d * inner) + 2 * 2 * s * s * d
    return float(batch_size * (layers * per_layer + 2 * d * text.vocab_size))


def matmul_only_prefill(model, batch_size: int, sequence_length: int, device: str, dtype: torch.dtype):
    """A callable that runs only the prefill's weight matrix products: every ``nn.Linear`` of the
    language model, in module order and with the model's own weights, on a ``[batch, sequence_length,
    in_features]`` input, then ``lm_head`` on one row per sample (as ``logits_to_keep=1``).

    Its time is what the hardware's matrix-multiply library allows for these shapes, so the ratio of
    its time at the full and the reduced sequence length is the prefill speedup this device can give
    (the FLOP ratio assumes the same FLOP/s at every size, which small matrices do not reach on CPUs).
    """
    language = model.model.language_model
    linears = [m for m in language.modules() if isinstance(m, torch.nn.Linear)]
    generator = torch.Generator().manual_seed(0)
    inputs = {
        width: torch.randn(batch_size, sequence_length, width, generator=generator).to(device=device, dtype=dtype)
        for width in {m.in_features for m in linears}
    }
    last = torch.randn(batch_size, 1, model.lm_head.in_features, generator=generator).to(device=device, dtype=dtype)

    def run():
        for linear in linears:
            linear(inputs[linear.in_features])
        return model.lm_head(last)

    return run


def reset_peak_memory(device: str) -> None:
    """Start a new peak: CUDA's allocator statistics, or on CPU the process's peak resident set
    (Linux: writing 5 to ``/proc/self/clear_refs`` resets ``VmHWM`` to the current resident set)."""
    if device.startswith("cuda"):
        torch.cuda.reset_peak_memory_stats()
        return
    try:
        Path("/proc/self/clear_refs").write_text("5")
    except OSError:
        pass


def peak_memory(device: str) -> int | None:
    """Bytes since :func:`reset_peak_memory`: CUDA's peak allocated memory, or on CPU the process's
    peak resident set (``VmHWM``; weights, activations, the interpreter and libraries); ``None``
    where neither is readable."""
    if device.startswith("cuda"):
        return int(torch.cuda.max_memory_allocated())
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) * 1024
    except OSError:
        pass
    return None


def make_timer(device: str) -> Callable[[Callable[[], object], int], float]:
    """``timer(fn, repeats)`` → median seconds, with CUDA events and synchronisation on GPU."""

    def timer(fn, repeats: int) -> float:
        times = []
        for _ in range(repeats):
            if device.startswith("cuda"):
                start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
                torch.cuda.synchronize()
                start.record()
                fn()
                end.record()
                torch.cuda.synchronize()
                times.append(start.elapsed_time(end) / 1000)
            else:
                begin = time.perf_counter()
                fn()
                times.append(time.perf_counter() - begin)
        return statistics.median(times)

    return timer


def make_inputs(model, processor, batch_size: int, prompt_tokens: int, device: str, dtype: torch.dtype):
    """``batch_size`` real photos, each with a ``prompt_tokens``-token prompt holding one ``<image>``."""
    images = demo_images(tuple(PHOTOS[i % len(PHOTOS)] for i in range(batch_size)))
    pixels = processor(images, return_tensors="pt")["pixel_values"].to(device=device, dtype=dtype)
    generator = torch.Generator().manual_seed(0)
    image_token = model.config.image_token_id
    ids = torch.randint(
        3, min(model.config.text_config.vocab_size, image_token), (batch_size, prompt_tokens), generator=generator
    )
    ids[:, prompt_tokens // 2] = image_token
    return {"input_ids": ids.to(device), "attention_mask": torch.ones_like(ids).to(device), "pixel_values": pixels}


def make_next_inputs(
    model: LlavaNextPruMergeForConditionalGeneration,
    processor: LlavaNextImageProcessor,
    batch_size: int,
    prompt_tokens: int,
    device: str,
    dtype: torch.dtype,
) -> dict:
    """``batch_size`` photos, each resized to a square of two crop sides (672 px for CLIP-L/14-336),
    with ``prompt_tokens - 1`` text tokens around the processor's placeholders, where the prompt of
    :func:`make_inputs` has its one ``<image>``.

    A square image on the 2×2 pinpoint is LLaVA-NeXT's worst case: five crops and no rows or columns
    cut by ``unpad_image``, so every sample has the same :meth:`~LlavaNextPruMergeForConditionalGeneration.stock_token_counts`
    (the placeholders the stock path needs; the reduced paths re-lay them) and no padding.
    """
    side = 2 * model.config.vision_config.image_size
    names = tuple(PHOTOS[i % len(PHOTOS)] for i in range(batch_size))
    photos = [photo.resize((side, side)) for photo in demo_images(names)]
    processed = processor(photos, return_tensors="pt")
    image_sizes = processed["image_sizes"]
    counts = model.stock_token_counts(image_sizes)
    image_token = model.config.image_token_id
    vocabulary = torch.tensor([i for i in range(3, model.config.text_config.vocab_size) if i != image_token])
    generator = torch.Generator().manual_seed(0)
    text = vocabulary[torch.randint(len(vocabulary), (batch_size, prompt_tokens - 1), generator=generator)]
    placeholders = torch.full((batch_size, int(counts[0])), image_token)
    middle = prompt_tokens // 2
    ids = torch.cat([text[:, :middle], placeholders, text[:, middle:]], dim=1).to(device)
    return {
        "input_ids": ids,
        "attention_mask": torch.ones_like(ids),
        "pixel_values": processed["pixel_values"].to(device=device, dtype=dtype),
        "image_sizes": image_sizes.to(device),
    }


def panning_frames(photo: Image.Image, frames: int, size: int) -> list[Image.Image]:
    """``frames`` ``size``-px crops of ``photo`` (scaled to 1.25 ``size`` on its short side) whose
    window moves from the top-left to the bottom-right corner: a camera pan, so frames differ."""
    scale = 1.25 * size / min(photo.size)
    wide = photo.resize((max(size, round(photo.width * scale)), max(size, round(photo.height * scale))))
    crops = []
    for frame in range(frames):
        along = frame / max(frames - 1, 1)
        left, top = round(along * (wide.width - size)), round(along * (wide.height - size))
        crops.append(wide.crop((left, top, left + size, top + size)))
    return crops


def make_video_inputs(
    model: VideoLlavaPruMergeForConditionalGeneration,
    processor,
    batch_size: int,
    prompt_tokens: int,
    device: str,
    dtype: torch.dtype,
    frames: int = DEFAULT_NUM_FRAMES,
) -> dict:
    """``batch_size`` videos of ``frames`` frames (:func:`panning_frames` over a photo each), each with
    ``prompt_tokens - 1`` text tokens around the processor's ``frames × (N + 1)`` ``<video>``
    placeholders, where the prompt of :func:`make_inputs` has its one ``<image>``.

    The expanded placeholders are what ``VideoLlavaProcessor`` writes and what the stock
    (``method="none"``) path needs; the reduced paths re-lay them for their counts.
    """
    size = model.config.vision_config.image_size
    photos = demo_images(tuple(PHOTOS[i % len(PHOTOS)] for i in range(batch_size)))
    clips = [frame for photo in photos for frame in panning_frames(photo, frames, size)]
    pixels = processor(clips, return_tensors="pt")["pixel_values"]
    pixels = pixels.view(batch_size, frames, *pixels.shape[1:]).to(device=device, dtype=dtype)
    special = {model.config.image_token_id, model.config.video_token_id}
    vocabulary = torch.tensor([i for i in range(3, model.config.text_config.vocab_size) if i not in special])
    generator = torch.Generator().manual_seed(0)
    text = vocabulary[torch.randint(len(vocabulary), (batch_size, prompt_tokens - 1), generator=generator)]
    placeholders = torch.full((batch_size, frames * (model._patches() + 1)), model.config.video_token_id)
    middle = prompt_tokens // 2
    ids = torch.cat([text[:, :middle], placeholders, text[:, middle:]], dim=1).to(device)
    return {"input_ids": ids, "attention_mask": torch.ones_like(ids), "pixel_values_videos": pixels}


@dataclass
class Encoded:
    """One method's batch after encoding and lay-out: what the prefill gets, and the counts."""

    mm_encoder_outputs: dict
    input_ids: torch.Tensor
    attention_mask: torch.Tensor
    visual_tokens: list[int]  # per image / video
    extra: dict = field(default_factory=dict)  # copied into the row's ``extra``


class ImageWorkload:
    """LLaVA-1.5: one photo per sample behind one ``<image>`` placeholder (:func:`make_inputs`)."""

    def __init__(self, model: LlavaPruMergeForConditionalGeneration, processor):
        self.model, self.processor = model, processor

    def inputs(self, batch_size: int, prompt_tokens: int, device: str, dtype: torch.dtype) -> dict:
        return make_inputs(self.model, self.processor, batch_size, prompt_tokens, device, dtype)

    def encode(self, inputs: dict) -> Encoded:
        features, laid_out = self.model.encode_and_lay_out(
            inputs["input_ids"], inputs["pixel_values"], inputs["attention_mask"], None, "left", None
        )
        return Encoded(
            _projected_only({"image": features}),
            laid_out.input_ids if laid_out is not None else inputs["input_ids"],
            laid_out.attention_mask if laid_out is not None else inputs["attention_mask"],
            [len(f) for f in features.pooler_output],
        )

    def vision(self, inputs: dict) -> Callable[[], object]:
        """Tower, reduction if any, projector: the same stages for every method."""
        return lambda: self.model.get_image_features(pixel_values=inputs["pixel_values"])

    def reduction_alone(self, inputs: dict, reduction: TokenReductionConfig) -> Callable[[], object]:
        model = self.model
        return reduction_on_precomputed(
            model.model.vision_tower,
            inputs["pixel_values"],
            model.config.vision_feature_layer,
            reduction,
            projector=model.model.multi_modal_projector,
        )


class NextWorkload:
    """LLaVA-NeXT: one square photo per sample on the 2×2 AnyRes grid (:func:`make_next_inputs`)."""

    def __init__(self, model: LlavaNextPruMergeForConditionalGeneration, processor: LlavaNextImageProcessor):
        self.model, self.processor = model, processor

    def inputs(self, batch_size: int, prompt_tokens: int, device: str, dtype: torch.dtype) -> dict:
        return make_next_inputs(self.model, self.processor, batch_size, prompt_tokens, device, dtype)

    def encode(self, inputs: dict) -> Encoded:
        model, image_sizes = self.model, inputs["image_sizes"]
        features, laid_out = model.encode_and_lay_out(
            inputs["input_ids"], inputs["pixel_values"], image_sizes, inputs["attention_mask"], None, "left", None
        )
        crops = model.crops_per_image(image_sizes)
        crop_counts = getattr(features, "crop_token_counts", None)
        if crop_counts is None:  # the stock path: every crop's N patches, one newline per unpadded map row
            vision = model.config.vision_config
            per_crop = [float((vision.image_size // vision.patch_size) ** 2)] * sum(crops)
            newlines = [self._stock_newlines(size) for size in image_sizes]
        else:
            per_crop = torch.cat(crop_counts).float().tolist()
            newlines = features.newline_counts.tolist()
        return Encoded(
            _projected_only({"image": features}),
            laid_out.input_ids if laid_out is not None else inputs["input_ids"],
            laid_out.attention_mask if laid_out is not None else inputs["attention_mask"],
            [len(f) for f in features.pooler_output],
            {
                "crops": sum(crops) / len(crops),
                "visual_tokens_per_crop": sum(per_crop) / len(per_crop),
                "newlines": sum(newlines) / len(newlines),
            },
        )

    def _stock_newlines(self, image_size: torch.Tensor) -> int:
        """Rows of the stock model's unpadded grid map (``pack_image_features``' newlines)."""
        config = self.model.config
        side = config.vision_config.image_size // config.vision_config.patch_size
        rows, cols = get_anyres_image_grid_shape(
            image_size, config.image_grid_pinpoints, config.vision_config.image_size
        )
        return int(unpad_image(torch.empty(0, rows * side, cols * side), image_size).shape[1])

    def vision(self, inputs: dict) -> Callable[[], object]:
        """Tower over every crop, reduction if any, projector, layout: the same for every method."""
        pixels, image_sizes = inputs["pixel_values"], inputs["image_sizes"]
        return lambda: self.model.get_image_features(pixel_values=pixels, image_sizes=image_sizes)

    def reduction_alone(self, inputs: dict, reduction: TokenReductionConfig) -> Callable[[], object]:
        model = self.model
        crops, _ = model.flatten_crops(inputs["pixel_values"], inputs["image_sizes"])
        return reduction_on_precomputed(
            model.model.vision_tower,
            crops,
            model.config.vision_feature_layer,
            reduction,
            projector=model.model.multi_modal_projector,
        )


class VideoWorkload:
    """Video-LLaVA: one video per sample behind its ``<video>`` placeholders (:func:`make_video_inputs`)."""

    def __init__(self, model: VideoLlavaPruMergeForConditionalGeneration, processor):
        self.model, self.processor = model, processor

    def inputs(self, batch_size: int, prompt_tokens: int, device: str, dtype: torch.dtype) -> dict:
        return make_video_inputs(self.model, self.processor, batch_size, prompt_tokens, device, dtype)

    def encode(self, inputs: dict) -> Encoded:
        features, laid_out, counts = self.model.encode_and_lay_out(
            inputs["input_ids"], None, inputs["pixel_values_videos"], inputs["attention_mask"], None, "left", None
        )
        per_frame = counts["frame"].float()
        return Encoded(
            _projected_only(features),
            laid_out.input_ids if laid_out is not None else inputs["input_ids"],
            laid_out.attention_mask if laid_out is not None else inputs["attention_mask"],
            counts["video"].tolist(),
            {"frames": int(per_frame.shape[1]), "visual_tokens_per_frame": float(per_frame.mean())},
        )

    def vision(self, inputs: dict) -> Callable[[], object]:
        """The video tower over every frame, reduction if any, projector: the same for every method."""
        return lambda: self.model.get_video_features(pixel_values_videos=inputs["pixel_values_videos"])

    def reduction_alone(self, inputs: dict, reduction: TokenReductionConfig) -> Callable[[], object]:
        videos = inputs["pixel_values_videos"]
        return reduction_on_precomputed(
            self.model.model.video_tower,
            videos.flatten(0, 1),
            self.model.config.vision_feature_layer,
            reduction,
            frames_per_video=videos.shape[1],
            projector=self.model.model.multi_modal_projector,
        )


def _projected_only(mm_encoder_outputs: dict) -> dict:
    """Keep only the projected tokens (``pooler_output``), all the prefill reads: the stock outputs
    also hold every tower layer's hidden states, which would count in the later rows' peak memory."""
    return {
        name: BaseModelOutputWithPooling(pooler_output=output.pooler_output)
        for name, output in mm_encoder_outputs.items()
    }


def workload_for(model, processor) -> ImageWorkload | NextWorkload | VideoWorkload:
    """The workload of ``model``'s family."""
    if isinstance(model, VideoLlavaPruMergeForConditionalGeneration):
        return VideoWorkload(model, processor)
    if isinstance(model, LlavaNextPruMergeForConditionalGeneration):
        return NextWorkload(model, processor)
    if isinstance(model, LlavaPruMergeForConditionalGeneration):
        return ImageWorkload(model, processor)
    raise TypeError(f"no benchmark workload for {type(model).__name__}")


def reduction_on_precomputed(
    tower: torch.nn.Module,
    pixel_values: torch.Tensor,
    layer: int,
    reduction: TokenReductionConfig,
    frames_per_video: int = 1,
    projector: torch.nn.Module | None = None,
) -> Callable[[], object]:
    """A callable running only the reduction, on ``tower``'s features and the consuming block's q/k
    of ``pixel_values [I, 3, H, W]``, computed once here (``frames_per_video``: as in
    :func:`~llava_prumerge.models.vision.reduce_encoded`).

    A peer gets what it reads, precomputed too (the producing block's q/k, the CLS, the per-image
    seeds), so its time is its own work: for ``divprune`` the selection on projected features
    projected beforehand (it projects all ``N`` tokens, the others only the kept ones; the vision
    column includes that difference).
    """
    method = reduction.method
    producer = {} if method in PRODUCER_ATTENTION_METHODS else None
    hidden, queries, keys = encode_for_reduction(
        tower, pixel_values, layer, with_qk=method in ATTENTION_METHODS, producer=producer
    )
    features, vision = hidden[:, 1:], tower.config
    side = vision.image_size // vision.patch_size
    peer = None
    if method in PEER_METHODS:
        if method == "divprune":
            if projector is None:
                raise ValueError("divprune's reduction needs the projector")
            projected = projector(features)
            features, projector = projected, torch.nn.Identity()  # its selection alone, on projected tokens
        peer = PeerInputs(
            cls=hidden[:, 0],
            producer_queries=(producer or {}).get("queries"),
            producer_keys=(producer or {}).get("keys"),
            projector=projector,
            seeds=image_seeds(pixel_values, reduction.seed) if method == "random" else None,
        )
    return lambda: reduce_visual_tokens(
        features, queries, keys, reduction, vision.num_attention_heads, (side, side), frames_per_video, peer
    )


def measure(
    model: LlavaPruMergeForConditionalGeneration
    | LlavaNextPruMergeForConditionalGeneration
    | VideoLlavaPruMergeForConditionalGeneration,
    processor,
    preset: str,
    reductions: list[TokenReductionConfig],
    batch_size: int,
    prompt_tokens: int = 40,
    new_tokens: int = 8,
    repeats: int = 3,
    device: str = "cpu",
    dtype: torch.dtype = torch.float32,
) -> list[Measurement]:
    """Measure every reduction at one batch size (see the module docstring); one row each.

    The prefill and its matmuls, whose ratios between methods the FLOP target is about, are timed in
    interleaved rounds over all methods, so that a slow spell of a shared machine hits every method
    alike; vision, reduction, first token and decoding are timed per method. The peak memory of a
    row (see :func:`peak_memory`) covers its vision encoding and its generation (which includes its
    prefill). The model's family picks the workload (:func:`workload_for`).
    """
    timer = make_timer(device)
    workload = workload_for(model, processor)
    prepared = []
    with torch.inference_mode():
        for reduction in reductions:
            model.set_token_reduction(reduction)
            inputs = workload.inputs(batch_size, prompt_tokens, device, dtype)
            encoded = workload.encode(inputs)

            def prefill(encoded=encoded):
                return model(input_ids=encoded.input_ids, attention_mask=encoded.attention_mask,
                             mm_encoder_outputs=encoded.mm_encoder_outputs, use_cache=True, logits_to_keep=1)  # fmt: skip

            batch, length = encoded.input_ids.shape
            matmuls = matmul_only_prefill(model, int(batch), int(length), device, dtype)
            prefill(), matmuls()  # warm-up
            prepared.append((reduction, inputs, encoded, prefill, matmuls))
        rounds = [[(timer(prefill, 1), timer(matmuls, 1)) for *_, prefill, matmuls in prepared] for _ in range(repeats)]
        del prefill, matmuls
        prepared = [entry[:3] for entry in prepared]  # free the probes' inputs before measuring memory
        rows = []
        for i, (reduction, inputs, encoded) in enumerate(prepared):
            model.set_token_reduction(reduction)
            vision = workload.vision(inputs)

            def first_token(inputs=inputs):
                return model.generate(**inputs, max_new_tokens=1, do_sample=False)

            def generation(inputs=inputs):
                return model.generate(**inputs, max_new_tokens=new_tokens, min_new_tokens=new_tokens, do_sample=False)

            for fn in (vision, first_token):  # warm-up
                fn()
            reset_peak_memory(device)
            vision_s = timer(vision, repeats)
            reduction_s = share = None
            if reduction.method != "none":
                reduction_s = timer(workload.reduction_alone(inputs, reduction), repeats)
                share = reduction_s / vision_s
            ttft_s = timer(first_token, repeats)
            generation_s = timer(generation, repeats)
            peak = peak_memory(device)
            rows.append(
                _row(
                    model,
                    preset,
                    reduction,
                    batch_size,
                    encoded,
                    dtype,
                    new_tokens,
                    vision_s,
                    reduction_s,
                    share,
                    statistics.median(r[i][0] for r in rounds),
                    statistics.median(r[i][1] for r in rounds),
                    ttft_s,
                    generation_s,
                    peak,
                )  # fmt: skip
            )
    return rows


def _row(model, preset, reduction, batch_size, encoded: Encoded, dtype, new_tokens, vision_s, reduction_s, share,
         prefill_s, matmul_s, ttft_s, generation_s, peak) -> Measurement:  # fmt: skip
    counts, ids = encoded.visual_tokens, encoded.input_ids
    text_config = model.config.text_config
    head_dim = getattr(text_config, "head_dim", None) or text_config.hidden_size // text_config.num_attention_heads
    kv_bytes = (
        2 * text_config.num_hidden_layers * text_config.num_key_value_heads * head_dim
        * ids.shape[0] * ids.shape[1] * torch.finfo(dtype).bits // 8
    )  # fmt: skip
    # decode rate from the extra time of new_tokens over one token; None when timing noise hides it
    decode = batch_size * (new_tokens - 1) / (generation_s - ttft_s) if generation_s > ttft_s else None
    return Measurement(
        preset=preset,
        method=reduction.method if reduction.budget is None else f"{reduction.method}@{reduction.budget}",
        batch_size=batch_size,
        visual_tokens=sum(counts) / len(counts),
        sequence_length=int(ids.shape[1]),
        vision_s=vision_s,
        reduction_s=reduction_s,
        reduction_share=share,
        prefill_s=prefill_s,
        matmul_s=matmul_s,
        ttft_s=ttft_s,
        decode_tokens_per_s=decode,
        kv_cache_bytes=int(kv_bytes),
        peak_memory_bytes=peak,
        prefill_flops=prefill_flops(model.config, int(ids.shape[1]), batch_size),
        extra=dict(encoded.extra),
    )


def clip_overhead(
    batch_sizes: list[int],
    repeats: int = 3,
    device: str = "cpu",
    dtype=torch.float32,
    peers: tuple[str, ...] | list[str] = PEER_METHODS,
    peer_budget: int = 64,
) -> list[dict]:
    """The reduction's cost on the CLIP-ViT-L/14-336 tower (random weights, peaked CLS attention).

    Per batch size, interleaved after a warm-up: the stock LLaVA-1.5 encoding (whole tower,
    ``hidden_states[-2]``), this package's encoding with PruMerge (budget 32) and PruMerge+ (budget
    144) and each of ``peers`` at ``peer_budget`` (their own cost beside PruMerge's), and the reduction
    alone on precomputed tensors. The projector is not timed (it would favour the reduced methods,
    which project fewer tokens), except inside ``divprune``, which selects after it.
    """
    text = LlamaConfig(hidden_size=64, intermediate_size=128, num_hidden_layers=1, num_attention_heads=4,
                       num_key_value_heads=4, vocab_size=128)  # fmt: skip
    config = LlavaConfig(vision_config=CLIPVisionConfig(**CLIP_L_336).to_dict(), text_config=text.to_dict(),
                         image_token_id=127)  # fmt: skip
    torch.manual_seed(0)
    model = LlavaPruMergeForConditionalGeneration(config).to(device=device, dtype=dtype).eval()
    sharpen_cls_attention(model, 4.0)
    tower = model.model.vision_tower
    reductions = {
        "prumerge": TokenReductionConfig(method="prumerge", budget=32),
        "prumerge_plus": TokenReductionConfig(method="prumerge_plus", budget=144),
    } | {peer: resolve_reduction(peer, peer_budget) for peer in peers}
    timer = make_timer(device)
    results = []
    with torch.inference_mode():
        for batch_size in batch_sizes:
            pixels = torch.randn(batch_size, 3, 336, 336, device=device, dtype=dtype)

            def stock(pixels=pixels):
                return tower(pixels, output_hidden_states=True).hidden_states[-2][:, 1:]

            def ours(reduction, pixels=pixels):
                model.set_token_reduction(reduction)
                return model.reduce_image_tokens(pixels)

            runs = {"none": stock} | {name: (lambda r=r: ours(r)) for name, r in reductions.items()}
            for fn in runs.values():
                fn()
            rounds = {name: [] for name in runs}
            for _ in range(repeats):
                for name, fn in runs.items():
                    rounds[name].append(timer(fn, 1))
            medians = {name: statistics.median(values) for name, values in rounds.items()}
            row = {"batch_size": batch_size, "none_s": medians["none"]}
            for name, reduction in reductions.items():
                projector = model.model.multi_modal_projector
                alone = reduction_on_precomputed(tower, pixels, config.vision_feature_layer, reduction, 1, projector)
                alone = timer(alone, repeats)
                row[f"{name}_s"] = medians[name]
                row[f"{name}_vs_none"] = medians[name] / medians["none"]
                row[f"{name}_reduction_s"] = alone
                row[f"{name}_reduction_share"] = alone / medians["none"]
            results.append(row)
    return results


def loop_comparison(
    batch_size: int = 16, n: int = 576, width: int = 1024, keep: int = 31, repeats: int = 3, device: str = "cpu"
) -> dict:
    """Batched reduction vs the released per-image, per-token loop on the same tensors (CLIP-L/336
    shapes by default, ``keep`` selected tokens per image, as PruMerge at budget 32)."""
    generator = torch.Generator().manual_seed(0)
    features = torch.randn(batch_size, n, width, generator=generator).to(device)
    queries = torch.randn(batch_size, n + 1, width, generator=generator).to(device) * 3
    keys = torch.randn(batch_size, n + 1, width, generator=generator).to(device) * 3
    config = TokenReductionConfig(method="prumerge", budget=keep + 1)
    timer = make_timer(device)
    with torch.inference_mode():
        scores = cls_attention(queries, keys)
        batched = reduce_visual_tokens(features, queries, keys, config)
        looped = released_loop_prumerge(features, keys, scores, keep=keep)
        difference = max(float((batched.tokens[b] - looped[b]).abs().max()) for b in range(batch_size))
        batched_s = timer(lambda: reduce_visual_tokens(features, queries, keys, config), repeats)
        loop_s = timer(lambda: released_loop_prumerge(features, keys, scores, keep=keep), repeats)
    return {
        "batch_size": batch_size, "patches": n, "width": width, "kept": keep + 1,
        "batched_s": batched_s, "loop_s": loop_s, "speedup": loop_s / batched_s, "max_abs_difference": difference,
    }  # fmt: skip


def markdown_table(rows: list[Measurement]) -> str:
    """The measurements as a markdown table, with speedups against ``none`` at the same batch size.

    With video rows the visual tokens are per video, followed by a column of tokens per frame; with
    LLaVA-NeXT rows they are per image (newlines included), followed by a column of tokens per crop
    (with the crops per image and the newlines among the image's tokens).
    """
    video = any("visual_tokens_per_frame" in r.extra for r in rows)
    next_ = any("visual_tokens_per_crop" in r.extra for r in rows)
    tokens = "visual tokens"
    if video:
        tokens = "visual tokens / video | per frame"
    elif next_:
        tokens = "visual tokens / image | per crop (crops, newlines)"
    lines = [
        f"| preset | method | batch | {tokens} | seq len | vision ms | reduction ms (share) | prefill ms "
        "| prefill speedup / FLOP ratio | matmul-only speedup | TTFT ms | decode tok/s | KV cache MB | peak MB |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|" + ("---|" if video or next_ else ""),
    ]
    baseline = {(r.preset, r.batch_size): r for r in rows if r.method == "none"}
    for r in rows:
        base = baseline.get((r.preset, r.batch_size))
        speed = matmuls = "—"
        if base is not None and r is not base:
            speed = f"{base.prefill_s / r.prefill_s:.2f}× / {base.prefill_flops / r.prefill_flops:.2f}×"
            matmuls = f"{base.matmul_s / r.matmul_s:.2f}×"
        reduction = "—" if r.reduction_s is None else f"{1000 * r.reduction_s:.2f} ({100 * r.reduction_share:.2f}%)"
        peak = "—" if r.peak_memory_bytes is None else f"{r.peak_memory_bytes / 2**20:.0f}"
        count = f"{r.visual_tokens:.1f}"
        if video:
            per_frame = r.extra.get("visual_tokens_per_frame")
            count += " | —" if per_frame is None else f" | {per_frame:.1f}"
        elif next_:
            per_crop = r.extra.get("visual_tokens_per_crop")
            crops = "" if per_crop is None else f" ({r.extra['crops']:g} crops, {r.extra['newlines']:.1f} newlines)"
            count += " | —" if per_crop is None else f" | {per_crop:.1f}{crops}"
        lines.append(
            f"| {r.preset} | {r.method} | {r.batch_size} | {count} | {r.sequence_length} "
            f"| {1000 * r.vision_s:.1f} | {reduction} | {1000 * r.prefill_s:.1f} | {speed} | {matmuls} | {1000 * r.ttft_s:.1f} "
            f"| {'—' if r.decode_tokens_per_s is None else f'{r.decode_tokens_per_s:.1f}'} | {r.kv_cache_bytes / 2**20:.2f} | {peak} |"
        )
    return "\n".join(lines)


def plot(rows: list[Measurement], path) -> None:
    """PNG: time to first token and memory (peak if measured, else KV cache) by method and batch."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    methods = list(dict.fromkeys(r.method for r in rows))
    batches = sorted({r.batch_size for r in rows})
    figure, (left, right) = plt.subplots(1, 2, figsize=(10, 3.8), dpi=100)
    width = 0.8 / len(methods)
    use_peak = all(r.peak_memory_bytes is not None for r in rows)
    for i, method in enumerate(methods):
        chosen = {r.batch_size: r for r in rows if r.method == method}
        xs = [b + (i - (len(methods) - 1) / 2) * width for b in range(len(batches))]
        left.bar(xs, [1000 * chosen[b].ttft_s if b in chosen else 0 for b in batches], width, label=method)
        memory = [
            (chosen[b].peak_memory_bytes if use_peak else chosen[b].kv_cache_bytes) / 2**20 if b in chosen else 0
            for b in batches
        ]
        right.bar(xs, memory, width, label=method)
    for axis, label in (
        (left, "time to first token (ms)"),
        (right, "peak memory (MB)" if use_peak else "KV cache (MB)"),
    ):
        axis.set_xticks(range(len(batches)), [f"batch {b}" for b in batches])
        axis.set_ylabel(label)
        axis.legend(fontsize=8)
    figure.suptitle(f"preset {rows[0].preset}")
    figure.tight_layout()
    figure.savefig(path)
    plt.close(figure)


def as_dicts(rows: list[Measurement]) -> list[dict]:
    return [asdict(r) for r in rows]
