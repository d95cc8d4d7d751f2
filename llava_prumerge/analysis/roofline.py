"""Roofline analysis of the LLM prefill (paper Sec. 4.2, Table 2), from model configs alone.

The paper's Table 2 comes from LLM-Viewer (Yuan et al. 2024, "LLM Inference Unveiled: Survey and
Roofline Model Insights", github.com/hahnyuan/LLM-Viewer). This module re-derives its method:

* every operation of one Llama decoder block (norms, q/k/v/o projections, QKᵀ, softmax, SV, the
  residual adds, gate/up/down projections, SiLU·up) gets an operation count (OPs; a multiply-add
  is 2) and the bytes it moves: weights read, activations read and written, KV cache read and
  written (the k/v projections write the KV cache, not an activation);
* its roofline time is ``max(OPs / peak, bytes / bandwidth)``; the prefill time sums every
  operation of every block plus the ``lm_head`` of the last token (the only logits a prefill
  needs);
* bit widths are per tensor kind (weights, activations, KV cache). As in LLM-Viewer, a setting
  whose three widths are all ≤ 8 bits computes at the hardware's INT8 peak, any other at the FP16
  peak.

Two departures from LLM-Viewer's accounting, both small: the SiLU·up operation is sized by the MLP
width (LLM-Viewer uses the hidden size), and a residual add reads both of its inputs (LLM-Viewer
one).

Table 2's columns map onto these quantities (found by recomputing the table; ``docs/roofline.md``):
"FLOPs" is the OPs, "Total Memory" the total memory *traffic* (LLM-Viewer's ``memory_access``),
"Storing Activation" the activation bytes written over all blocks (its ``store_act``), and "INT4"
is 4-bit weights, activations and KV cache. We also report the resident footprint (weights + KV
cache + the activations of one block), which is what a reader usually means by "total memory".

The same rows are computed for Video-LLaVA-7B (paper Sec. 4.3, Table 3), whose LLM has Vicuna-7B's
shapes and whose visual tokens are frames × (patches + CLS), and for LLaVA-NeXT (LLaVA-1.6,
Vicuna-7B/13B), whose AnyRes visual tokens depend on the image size (``AnyResTokens``); Table 2 has
no such rows (``PRESETS``).
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path


@dataclass(frozen=True)
class Hardware:
    """Peak dense throughput (OP/s) and DRAM bandwidth (B/s) of one accelerator."""

    name: str
    fp16_ops: float
    int8_ops: float
    bandwidth: float
    source: str

    def peak_ops(self, precision: Precision) -> float:
        """The compute roof for ``precision``: INT8 when every tensor is ≤ 8 bits (LLM-Viewer's rule)."""
        return self.int8_ops if precision.is_low_bit else self.fp16_ops


HARDWARE = {
    # LLM-Viewer's V100 entry (hardwares/hardware_params.py), which the paper used: the V100 PCIe
    # datasheet's 112 TFLOPS FP16 tensor peak; 62 TOPS INT8 is dp4a (4 × 15.7 TFLOPS FP32), since
    # Volta has no INT8 tensor cores.
    "V100": Hardware("V100 (PCIe, LLM-Viewer)", 112e12, 62e12, 900e9, "NVIDIA V100 datasheet; LLM-Viewer"),
    "V100-SXM2": Hardware("V100 SXM2", 125e12, 62e12, 900e9, "NVIDIA V100 datasheet (SXM2)"),
    "A100": Hardware("A100 80GB SXM", 312e12, 624e12, 2039e9, "NVIDIA A100 datasheet, dense"),
    # LLM-Viewer lists 1979 TFLOPS FP16 / 3072 GB/s for H100; 1979 is the sparse figure, so we use
    # the datasheet's dense peaks and the SXM5 bandwidth.
    "H100": Hardware("H100 SXM", 989e12, 1979e12, 3350e9, "NVIDIA H100 datasheet, dense"),
}


@dataclass(frozen=True)
class Precision:
    """Bit widths of the weights, the activations and the KV cache (``W4A16``: 4-bit weights only)."""

    name: str
    weight_bits: int
    activation_bits: int
    kv_bits: int

    @property
    def is_low_bit(self) -> bool:
        return max(self.weight_bits, self.activation_bits, self.kv_bits) <= 8


PRECISIONS = {
    "FP16": Precision("FP16", 16, 16, 16),
    # Table 2's "INT4" as LLM-Viewer's INT4 setting: weights, activations and KV cache all 4-bit.
    "INT4": Precision("INT4", 4, 4, 4),
    "INT8": Precision("INT8", 8, 8, 8),
    # Weight-only 4-bit (AWQ/GPTQ-style W4A16), the common deployment; computes at the FP16 peak.
    "W4A16": Precision("W4A16", 4, 16, 16),
}


@dataclass(frozen=True)
class LlamaShape:
    """The shapes the roofline needs of a Llama-family decoder (a Hugging Face ``LlamaConfig``'s fields)."""

    name: str
    hidden: int
    intermediate: int
    layers: int
    heads: int
    kv_heads: int
    vocab: int

    @property
    def head_dim(self) -> int:
        return self.hidden // self.heads

    @property
    def block_linear_parameters(self) -> int:
        """Weights of one block's seven projections (what every prefill token multiplies through)."""
        kv = self.kv_heads * self.head_dim
        return 2 * self.hidden * self.hidden + 2 * self.hidden * kv + 3 * self.hidden * self.intermediate

    @property
    def norm_parameters(self) -> int:
        """RMSNorm weights: two per block and the final one."""
        return (2 * self.layers + 1) * self.hidden

    @property
    def parameters(self) -> int:
        """All parameters: block projections, norms, embedding and the untied ``lm_head``."""
        return self.layers * self.block_linear_parameters + self.norm_parameters + 2 * self.vocab * self.hidden

    @classmethod
    def from_config(cls, config: Mapping, name: str = "llm") -> LlamaShape:
        """Build from a ``config.json`` dict of a Llama model, or of LLaVA (its ``text_config``).

        Fields a file leaves out take transformers' defaults, as ``from_pretrained`` would: the
        ``llava-hf/llava-1.5-7b-hf`` config lists only a few ``text_config`` fields and relies on
        ``LlamaConfig``'s defaults (the 7B shapes) for the rest.
        """
        from transformers import LlamaConfig, LlavaConfig

        if "text_config" in config or config.get("model_type") == "llava":
            text = LlavaConfig(**dict(config)).text_config
        else:
            text = LlamaConfig(**dict(config))
        return cls(
            name=name,
            hidden=text.hidden_size,
            intermediate=text.intermediate_size,
            layers=text.num_hidden_layers,
            heads=text.num_attention_heads,
            kv_heads=text.num_key_value_heads or text.num_attention_heads,
            vocab=text.vocab_size,
        )

    @classmethod
    def from_file(cls, path: str | Path) -> LlamaShape:
        """From a ``config.json`` or a checkpoint directory holding one (named after the directory)."""
        path = Path(path)
        file = path / "config.json" if path.is_dir() else path
        try:
            config = json.loads(file.read_text())
        except (OSError, json.JSONDecodeError) as error:
            raise ValueError(f"{file}: not a readable config.json ({error})") from error
        return cls.from_config(config, name=(path if path.is_dir() else file.parent).name or file.stem)


# lmsys/vicuna-{7b,13b}-v1.5 config.json (Llama-2 shapes), the LLM of LLaVA-1.5.
VICUNA = {
    "7B": LlamaShape("Vicuna-7B", hidden=4096, intermediate=11008, layers=32, heads=32, kv_heads=32, vocab=32000),
    "13B": LlamaShape("Vicuna-13B", hidden=5120, intermediate=13824, layers=40, heads=40, kv_heads=40, vocab=32000),
}
NORM_BYTES = 2  # RMSNorm weights stay FP16 whatever the weight bits
# LLM-Viewer's per-element op counts: RMSNorm "sum sub pow sum div mul add", softmax "max sub exp
# sum div", SiLU(gate)·up one op for the activation and one for the product.
NORM_OPS, SOFTMAX_OPS, SWIGLU_OPS = 7, 5, 2


@dataclass(frozen=True)
class Operation:
    """One operation of one decoder block: its OPs and the bytes it reads and writes."""

    name: str
    ops: float
    weight_bytes: float = 0.0
    act_read_bytes: float = 0.0
    act_write_bytes: float = 0.0
    kv_read_bytes: float = 0.0
    kv_write_bytes: float = 0.0

    @property
    def memory_bytes(self) -> float:
        return self.weight_bytes + self.act_read_bytes + self.act_write_bytes + self.kv_read_bytes + self.kv_write_bytes

    @property
    def intensity(self) -> float:
        """Arithmetic intensity, OPs per byte moved."""
        return self.ops / self.memory_bytes

    def seconds(self, peak_ops: float, bandwidth: float) -> float:
        """Roofline time: bound by compute or by memory traffic, whichever is slower."""
        return max(self.ops / peak_ops, self.memory_bytes / bandwidth)


def block_operations(shape: LlamaShape, tokens: int, precision: Precision, batch: int = 1) -> list[Operation]:
    """The operations of one decoder block for a prefill of ``tokens`` tokens (no FlashAttention).

    The attention scores ``[batch, heads, tokens, tokens]`` are written, read by the softmax and read
    back by SV, as LLM-Viewer's unfused attention does.
    """
    s, h, i = batch * tokens, shape.hidden, shape.intermediate
    kv = shape.kv_heads * shape.head_dim
    w, a, c = precision.weight_bits / 8, precision.activation_bits / 8, precision.kv_bits / 8
    scores = batch * shape.heads * tokens * tokens
    attention_ops = 2 * scores * shape.head_dim  # per matmul: every score is a head_dim-long dot product

    def linear(name: str, d_in: int, d_out: int, writes_kv: bool = False) -> Operation:
        out = s * d_out
        return Operation(
            name,
            ops=2 * s * d_in * d_out,
            weight_bytes=d_in * d_out * w,
            act_read_bytes=s * d_in * a,
            act_write_bytes=0 if writes_kv else out * a,
            kv_write_bytes=out * c if writes_kv else 0,
        )

    def norm(name: str) -> Operation:
        return Operation(name, NORM_OPS * s * h, h * NORM_BYTES, s * h * a, s * h * a)

    def residual_add(name: str) -> Operation:
        return Operation(name, s * h, act_read_bytes=2 * s * h * a, act_write_bytes=s * h * a)

    return [
        norm("attn_norm"),
        linear("q_proj", h, h),
        linear("k_proj", h, kv, writes_kv=True),
        linear("v_proj", h, kv, writes_kv=True),
        Operation("qk_matmul", attention_ops, act_read_bytes=s * h * a, act_write_bytes=scores * a, kv_read_bytes=s * kv * c),
        Operation("softmax", SOFTMAX_OPS * scores, act_read_bytes=scores * a, act_write_bytes=scores * a),
        Operation("sv_matmul", attention_ops, act_read_bytes=scores * a, act_write_bytes=s * h * a, kv_read_bytes=s * kv * c),
        linear("o_proj", h, h),
        residual_add("attn_add"),
        norm("mlp_norm"),
        linear("gate_proj", h, i),
        linear("up_proj", h, i),
        Operation("mlp_act", SWIGLU_OPS * s * i, act_read_bytes=2 * s * i * a, act_write_bytes=s * i * a),
        linear("down_proj", i, h),
        residual_add("mlp_add"),
    ]  # fmt: skip


def lm_head_operation(shape: LlamaShape, precision: Precision, batch: int = 1) -> Operation:
    """The ``lm_head`` on the last position only: a prefill needs just the next token's logits."""
    w, a = precision.weight_bits / 8, precision.activation_bits / 8
    return Operation(
        "lm_head",
        ops=2 * batch * shape.hidden * shape.vocab,
        weight_bytes=shape.hidden * shape.vocab * w,
        act_read_bytes=batch * shape.hidden * a,
        act_write_bytes=batch * shape.vocab * a,
    )


@dataclass(frozen=True)
class PrefillCost:
    """Roofline cost of one prefill, in OPs, bytes and seconds.

    ``memory_traffic_bytes`` is every byte read or written (Table 2's "Total Memory");
    ``stored_activation_bytes`` the activations written by all blocks (Table 2's "Storing Activation").
    """

    tokens: int
    ops: float
    memory_traffic_bytes: float
    seconds: float
    stored_activation_bytes: float
    weight_bytes: float
    kv_cache_bytes: float
    block_activation_bytes: float

    @property
    def footprint_bytes(self) -> float:
        """Resident memory: all weights + the KV cache + the activations of one block.

        A block's activations are dead once the next block has read its output, so one block's worth
        is live at a time (LLM-Viewer's "temporary activation" in its memory consumption).
        """
        return self.weight_bytes + self.kv_cache_bytes + self.block_activation_bytes


def prefill_cost(
    shape: LlamaShape, tokens: int, hardware: Hardware, precision: Precision, batch: int = 1
) -> PrefillCost:
    """Roofline cost of prefilling ``tokens`` tokens (visual + text) per sequence, ``batch`` sequences."""
    if tokens < 1 or batch < 1:
        raise ValueError(f"tokens and batch must be positive, got {tokens} and {batch}")
    block = block_operations(shape, tokens, precision, batch)
    head = lm_head_operation(shape, precision, batch)
    peak = hardware.peak_ops(precision)
    bandwidth, n = hardware.bandwidth, shape.layers
    return PrefillCost(
        tokens=tokens,
        ops=n * sum(op.ops for op in block) + head.ops,
        memory_traffic_bytes=n * sum(op.memory_bytes for op in block) + head.memory_bytes,
        seconds=n * sum(op.seconds(peak, bandwidth) for op in block) + head.seconds(peak, bandwidth),
        stored_activation_bytes=n * sum(op.act_write_bytes for op in block) + head.act_write_bytes,
        weight_bytes=resident_weight_bytes(shape, precision),
        kv_cache_bytes=n * sum(op.kv_write_bytes for op in block),
        block_activation_bytes=sum(op.act_write_bytes for op in block),
    )


def resident_weight_bytes(shape: LlamaShape, precision: Precision) -> float:
    """All weights in memory: matrices (projections, embedding, ``lm_head``) at the weight bits, norms FP16."""
    matrices = shape.parameters - shape.norm_parameters
    return matrices * precision.weight_bits / 8 + shape.norm_parameters * NORM_BYTES


@dataclass(frozen=True)
class PaperRow:
    """One row of the paper's Table 2, in its units."""

    flops_tb: float
    prefill_ms: float
    total_memory_gb: float
    activation_gb: float


# Table 2 of the paper (V100; stated case: 576 visual tokens, or PruMerge's 40, plus a 40-token prompt).
# Key: (backbone, quantisation, reduced).
PAPER_TABLE_2 = {
    ("7B", "FP16", False): PaperRow(9.3, 88.6, 23.3, 4.60),
    ("7B", "FP16", True): PaperRow(0.91, 15.3, 13.7, 0.28),
    ("7B", "INT4", False): PaperRow(2.3, 151.6, 5.9, 1.20),
    ("7B", "INT4", True): PaperRow(0.28, 14.9, 3.5, 0.07),
    ("13B", "FP16", False): PaperRow(18.2, 170.5, 41.6, 7.30),
    ("13B", "FP16", True): PaperRow(1.80, 29.5, 26.6, 0.44),
    ("13B", "INT4", False): PaperRow(4.6, 294.9, 10.5, 1.80),
    ("13B", "INT4", True): PaperRow(0.45, 29.0, 6.8, 0.11),
}
PAPER_HARDWARE = "V100"
PAPER_TOKEN_CASES = ((576, 40), (660, 30))  # stated; what the numbers correspond to (docs/roofline.md)


@dataclass(frozen=True)
class VideoTokens:
    """The visual tokens Video-LLaVA feeds its LLM for one video (paper Sec. 4.3).

    Each frame is a ``patches_per_frame`` grid (16 × 16 for CLIP ViT-L/14 at 224 px) plus, with
    ``keep_cls``, the frame's CLS token: transformers' Video-LLaVA port keeps it for videos whatever
    ``vision_feature_select_strategy`` says (8 × 257 = 2056 tokens), while the paper counts the
    patches only (8 × 16 × 16 = 2048). A reduction keeps ``k`` patch tokens per frame and the CLS stays.
    """

    frames: int = 8
    patches_per_frame: int = 256
    keep_cls: bool = True

    def count(self, kept_per_frame: int | None = None) -> int:
        """Visual tokens of one video: ``frames × (k + CLS)``, with all patches when ``kept_per_frame`` is None."""
        kept = self.patches_per_frame if kept_per_frame is None else kept_per_frame
        if self.frames < 1 or not 0 <= kept <= self.patches_per_frame:
            raise ValueError(
                f"need frames ≥ 1 and 0 ≤ kept per frame ≤ {self.patches_per_frame}: {self.frames}, {kept}"
            )
        return self.frames * (kept + int(self.keep_cls))

    def kept_per_frame(self, fraction: float) -> int:
        """Patch tokens a frame keeps at ``fraction`` of its grid: the paper's 12.5% of 256 is 32."""
        return round(fraction * self.patches_per_frame)


VIDEO_LLAVA = VideoTokens()
PRUMERGE_VIDEO_FRACTION = 0.125  # PruMerge keeps 12.5% of Video-LLaVA's tokens on average (paper Sec. 4.3)


# llava-v1.6's image_grid_pinpoints, (height, width) pairs: LlavaNextConfig's and the checkpoints' default.
LLAVA_NEXT_PINPOINTS = ((336, 672), (672, 336), (672, 672), (1008, 336), (336, 1008))


@dataclass(frozen=True)
class AnyResTokens:
    """The visual tokens LLaVA-NeXT (LLaVA-1.6, AnyRes) feeds its LLM for one ``height × width`` image.

    The image is encoded as a base view resized to ``crop_size`` plus the ``crop_size`` crops of the
    pinpoint resolution that fits it best (``select_best_resolution``: 2 to 4 crops with llava-v1.6's
    pinpoints); each view is a 24 × 24 grid of CLIP ViT-L/14 at 336 px, the CLS dropped (the
    "default" feature strategy), 576 tokens. The crops' grids are joined into one, cut back to the
    image's aspect ratio (``unpad_image``) and, with ``newline``, given the learned ``image_newline``
    after each of its rows: ``576 + rows × cols + rows`` tokens, which is transformers' count (the
    ``<image>`` placeholders ``LlavaNextProcessor`` writes, the lengths ``pack_image_features``
    returns). At most 576 + 48 × 48 + 48 = 2928, for any square image over 336 px; the papers'
    2880 = 5 × 576 leaves out the 48 newlines.

    A reduction keeps ``k`` tokens of every view, the base and each crop, as it runs on the vision
    tower's output before the crops are unpadded: ``(1 + crops) × k``. No newlines are counted there:
    a pruned view has no rows left to end.
    """

    height: int = 672
    width: int = 672
    pinpoints: tuple[tuple[int, int], ...] = LLAVA_NEXT_PINPOINTS
    crop_size: int = 336
    patch_size: int = 14
    newline: bool = True

    def __post_init__(self) -> None:
        if self.height < 1 or self.width < 1:
            raise ValueError(f"image size must be positive, got {self.height} x {self.width}")
        if self.crop_size < 1 or self.patch_size < 1 or self.crop_size % self.patch_size:
            raise ValueError(f"crop size {self.crop_size} must be a positive multiple of the patch size {self.patch_size}")  # fmt: skip
        pinpoints = tuple(tuple(pinpoint) for pinpoint in self.pinpoints)
        if not pinpoints or any(
            len(pinpoint) != 2 or min(pinpoint) < 1 or any(side % self.crop_size for side in pinpoint)
            for pinpoint in pinpoints
        ):
            raise ValueError(f"pinpoints {list(self.pinpoints)}: need (height, width) pairs, multiples of {self.crop_size}")  # fmt: skip
        object.__setattr__(self, "pinpoints", pinpoints)

    @property
    def best_resolution(self) -> tuple[int, int]:
        """The pinpoint the image is resized and padded to (transformers' ``select_best_resolution``).

        The most image pixels kept after downscaling to fit, ties to the least padding, then the
        first listed.
        """
        best, most_effective, least_wasted = None, 0, float("inf")
        for height, width in self.pinpoints:
            scale = min(width / self.width, height / self.height)
            effective = min(int(self.width * scale) * int(self.height * scale), self.width * self.height)
            wasted = width * height - effective
            if effective > most_effective or (effective == most_effective and wasted < least_wasted):
                best, most_effective, least_wasted = (height, width), effective, wasted
        return best

    @property
    def crop_grid(self) -> tuple[int, int]:
        """Crops down and across (``get_anyres_image_grid_shape``)."""
        height, width = self.best_resolution
        return height // self.crop_size, width // self.crop_size

    @property
    def crops(self) -> int:
        """Crops besides the base view."""
        down, across = self.crop_grid
        return down * across

    @property
    def tokens_per_view(self) -> int:
        """Tokens of the base view or of one crop: 24 × 24 = 576."""
        return (self.crop_size // self.patch_size) ** 2

    @property
    def feature_grid(self) -> tuple[int, int]:
        """Rows and columns of the crops' joined token grid once cut back to the image's aspect ratio (``unpad_image``)."""
        side = self.crop_size // self.patch_size
        rows, cols = self.crop_grid[0] * side, self.crop_grid[1] * side
        if self.width / self.height > cols / rows:  # wider than the grid: padding rows above and below
            kept = int(round(self.height * (cols / self.width), 7))
            rows -= (rows - kept) // 2 * 2
        else:
            kept = int(round(self.width * (rows / self.height), 7))
            cols -= (cols - kept) // 2 * 2
        return rows, cols

    def count(self, kept_per_crop: int | None = None) -> int:
        """Visual tokens of the image: all of them (None), or ``(1 + crops) × kept_per_crop``."""
        if kept_per_crop is None:
            rows, cols = self.feature_grid
            return self.tokens_per_view + rows * cols + rows * int(self.newline)
        if not 0 <= kept_per_crop <= self.tokens_per_view:
            raise ValueError(f"need 0 ≤ kept per crop ≤ {self.tokens_per_view}, got {kept_per_crop}")
        return (1 + self.crops) * kept_per_crop

    def layout(self, visual_tokens: int) -> str:
        """How a count is made up: ``576+48×48+48`` (base + grid + newlines) unreduced, ``5×32`` reduced."""
        if visual_tokens == self.count():
            rows, cols = self.feature_grid
            return f"{self.tokens_per_view}+{rows}×{cols}" + (f"+{rows}" if self.newline else "")
        views = 1 + self.crops
        return f"{views}×{visual_tokens // views}" if visual_tokens % views == 0 else str(visual_tokens)


LLAVA_NEXT = AnyResTokens()  # the worst case, 672 × 672: 576 + 48 × 48 + 48 = 2928
PRUMERGE_KEPT_PER_CROP = 32  # PruMerge's average on LLaVA-1.5, 5.5% of 576 (paper Table 1), kept per view


@dataclass(frozen=True)
class Preset:
    """A model whose LLM prefill is tabulated: the Method column's name, its LLM and visual-token counts.

    ``visual_tokens`` lists the unreduced count first, then the reduced ones. Only a preset with
    ``compares_to_table_2`` gets the paper's Table 2 numbers attached.
    """

    model: str
    checkpoint: str
    backbones: tuple[str, ...]
    visual_tokens: tuple[int, ...]
    video: VideoTokens | None = None
    compares_to_table_2: bool = False
    anyres: AnyResTokens | None = None


PRESETS = {
    "llava-1.5": Preset(
        "LLaVA-1.5", "llava-hf/llava-1.5-{7b,13b}-hf", ("7B", "13B"), (576, 40), compares_to_table_2=True
    ),
    # Video-LLaVA-7B's LLM is Vicuna-7B v1.5 shaped (Sec. 4.3, Table 3); 8 × 257 tokens, PruMerge's 12.5%.
    "video-llava-7b": Preset(
        "Video-LLaVA",
        "LanguageBind/Video-LLaVA-7B-hf",
        ("7B",),
        (VIDEO_LLAVA.count(), VIDEO_LLAVA.count(VIDEO_LLAVA.kept_per_frame(PRUMERGE_VIDEO_FRACTION))),
        video=VIDEO_LLAVA,
    ),
    # LLaVA-NeXT (LLaVA-1.6) on Vicuna v1.5 7B/13B: a 672 × 672 image, 2928 tokens, vs 32 per view (5 × 32).
    **{
        f"llava-next-{size.lower()}": Preset(
            "LLaVA-NeXT",
            f"llava-hf/llava-v1.6-vicuna-{size.lower()}-hf",
            (size,),
            (LLAVA_NEXT.count(), LLAVA_NEXT.count(PRUMERGE_KEPT_PER_CROP)),
            anyres=LLAVA_NEXT,
        )
        for size in ("7B", "13B")
    },
}


@dataclass(frozen=True)
class Table2Row:
    """One row of Table 2's layout: ours, and the paper's where Table 2 has that row.

    ``visual_fraction`` is this row's visual tokens over the unreduced row's; ``frames`` the frames
    of a video (None for an image); ``visual_layout`` how an AnyRes image's tokens are made up
    (``AnyResTokens.layout``; None for other presets).
    """

    method: str
    backbone: str
    quantization: str
    visual_tokens: int
    prompt_tokens: int
    flops_tb: float
    prefill_ms: float
    total_memory_gb: float  # memory traffic, as Table 2's "Total Memory" (module docstring)
    activation_gb: float
    footprint_gb: float
    paper: PaperRow | None
    visual_fraction: float = 1.0
    frames: int | None = None
    visual_layout: str | None = None

    def as_dict(self) -> dict:
        return asdict(self)


def table_2(
    hardware: str = PAPER_HARDWARE,
    visual_tokens: Sequence[int] | None = None,
    prompt_tokens: int = 40,
    backbones: Sequence[str | LlamaShape] | None = None,
    quantizations: Sequence[str] = ("FP16", "INT4"),
    batch: int = 1,
    preset: str | Preset = "llava-1.5",
) -> list[Table2Row]:
    """Table 2's rows: backbones × quantisations × visual-token counts (the first without reduction).

    ``visual_tokens`` and ``backbones`` default to the preset's (``PRESETS``). The paper's numbers
    are attached only where they are comparable: the LLaVA-1.5 preset, its hardware, batch 1, a
    40-token prompt and the counts it states (576, 40) or the ones its numbers correspond to
    (660, 30; see docs/roofline.md).
    """
    preset = PRESETS[preset] if isinstance(preset, str) else preset
    visual_tokens = tuple(preset.visual_tokens if visual_tokens is None else visual_tokens)
    backbones = preset.backbones if backbones is None else backbones
    full = visual_tokens[0]
    if any(visual >= full for visual in visual_tokens[1:]):
        raise ValueError(f"visual_tokens {list(visual_tokens)}: the first count is the unreduced one, so it must be the largest")  # fmt: skip
    with_paper = (
        preset.compares_to_table_2
        and hardware == PAPER_HARDWARE
        and batch == 1
        and prompt_tokens == 40
        and visual_tokens in PAPER_TOKEN_CASES
    )
    rows = []
    for backbone in backbones:
        shape = backbone if isinstance(backbone, LlamaShape) else VICUNA[backbone]
        for quantization in quantizations:
            for visual in visual_tokens:
                reduced = visual != full
                cost = prefill_cost(shape, visual + prompt_tokens, HARDWARE[hardware], PRECISIONS[quantization], batch)
                rows.append(
                    Table2Row(
                        method=f"{preset.model} w/ PruMerge" if reduced else preset.model,
                        backbone=shape.name,
                        quantization=quantization,
                        visual_tokens=visual,
                        prompt_tokens=prompt_tokens,
                        flops_tb=cost.ops / 1e12,
                        prefill_ms=cost.seconds * 1e3,
                        total_memory_gb=cost.memory_traffic_bytes / 1e9,
                        activation_gb=cost.stored_activation_bytes / 1e9,
                        footprint_gb=cost.footprint_bytes / 1e9,
                        paper=PAPER_TABLE_2.get((backbone, quantization, reduced))
                        if with_paper and isinstance(backbone, str)
                        else None,
                        visual_fraction=visual / full,
                        frames=preset.video.frames if preset.video else None,
                        visual_layout=preset.anyres.layout(visual) if preset.anyres else None,
                    )
                )
    return rows
