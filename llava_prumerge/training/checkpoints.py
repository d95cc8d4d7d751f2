"""Building and reloading models: LLaVA-1.5 checkpoints, stage-2 parts, finetuned adapters.

Two starting points for finetuning (both documented in the README):

(a) a finished LLaVA-1.5 checkpoint in the ``llava-hf`` format (``llava-hf/llava-1.5-7b-hf``);
(b) the released LLaVA-1.5 recipe's stage 2: a Vicuna-1.5 causal LM, a CLIP-ViT-L/14-336 vision
    model and the stage-1 projector file ``mm_projector.bin`` (keys
    ``model.mm_projector.{0,2}.{weight,bias}``), assembled here into the same class.

An adapter directory written by training holds ``adapter_config.json`` +
``adapter_model.safetensors`` (LoRA and the fully trained projector), ``token_reduction.json`` and
``base_model.json`` (how to rebuild the base), so that evaluation reloads exactly the
training-time reduction.
"""

from __future__ import annotations

import contextlib
import json
from dataclasses import asdict, dataclass, field
from pathlib import Path

import torch
from transformers import (
    AutoConfig,
    AutoModelForCausalLM,
    AutoProcessor,
    AutoTokenizer,
    CLIPImageProcessor,
    CLIPVisionModel,
    LlavaConfig,
    LlavaProcessor,
)

from ..config import TokenReductionConfig
from ..conversation import IMAGE_TOKEN
from ..models import model_class_for
from ..models.llava import LlavaPruMergeForConditionalGeneration

TOKEN_REDUCTION_FILE = "token_reduction.json"
BASE_MODEL_FILE = "base_model.json"


@dataclass
class BaseModelSpec:
    """Where the base model comes from (one config object per concern, STYLE.md rule 5)."""

    model_name_or_path: str | None = field(
        default="llava-hf/llava-1.5-7b-hf",
        metadata={"help": "(a) A LLaVA-1.5 checkpoint in llava-hf format (HF id or local dir)."},
    )
    language_model: str | None = field(
        default=None, metadata={"help": "(b) A Vicuna-1.5 causal LM (HF id or dir); set with vision_tower."}
    )
    vision_tower: str | None = field(
        default=None, metadata={"help": "(b) A CLIP vision checkpoint (CLIPVisionModel or CLIPModel)."}
    )
    mm_projector: str | None = field(
        default=None, metadata={"help": "(b) The stage-1 projector file mm_projector.bin."}
    )

    def __post_init__(self) -> None:
        parts = [self.language_model, self.vision_tower, self.mm_projector]
        if any(parts):
            if not all(parts):
                raise ValueError("stage-2 start needs all of language_model, vision_tower and mm_projector")
            self.model_name_or_path = None
        elif not self.model_name_or_path:
            raise ValueError("set model_name_or_path, or language_model + vision_tower + mm_projector")


def load_base_model(
    spec: BaseModelSpec,
    token_reduction: TokenReductionConfig,
    *,
    dtype: torch.dtype = torch.float32,
    attn_implementation: str | None = None,
) -> tuple[LlavaPruMergeForConditionalGeneration, LlavaProcessor]:
    """The model and processor for ``spec``, with ``token_reduction`` set."""
    if spec.model_name_or_path:
        model_type = AutoConfig.from_pretrained(spec.model_name_or_path).model_type
        model = model_class_for(model_type).from_pretrained(
            spec.model_name_or_path,
            token_reduction=token_reduction,
            dtype=dtype,
            attn_implementation=attn_implementation,
        )
        processor = AutoProcessor.from_pretrained(spec.model_name_or_path)
        return model, processor
    return assemble_stage2(spec, token_reduction, dtype, attn_implementation)


def assemble_stage2(
    spec: BaseModelSpec,
    token_reduction: TokenReductionConfig,
    dtype: torch.dtype = torch.float32,
    attn_implementation: str | None = None,
) -> tuple[LlavaPruMergeForConditionalGeneration, LlavaProcessor]:
    """LLaVA-1.5 from Vicuna + CLIP + ``mm_projector.bin``, as the released recipe's stage 2.

    Vicuna's tokenizer gets ``<image>`` (and ``<unk>`` as padding, as LLaVA-1.5 pads); the embedding
    and ``lm_head`` rows this adds (rounded up to a multiple of 64) are suppressed in generation
    (``generation_config.suppress_tokens``), since LLaVA's own model has no such rows to emit.

    No weight is copied: Vicuna and CLIP are loaded by their own ``from_pretrained`` in ``dtype``
    and become the submodules of a model whose shell is built on the meta device; only the small
    projector is created here. Under ZeRO-3 (``is_deepspeed_zero3_enabled()``, i.e. training
    arguments with a stage-3 DeepSpeed config exist) ``from_pretrained`` loads each part already
    partitioned (``deepspeed.zero.Init``), so no process holds a full or fp32 copy; DeepSpeed
    partitions the projector when it wraps the model.
    """
    from transformers.modeling_utils import set_zero3_state
    from transformers.models.llava.modeling_llava import LlavaMultiModalProjector

    tokenizer = AutoTokenizer.from_pretrained(spec.language_model)
    tokenizer.add_special_tokens({"additional_special_tokens": [IMAGE_TOKEN]})
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.unk_token  # LLaVA-1.5 pads Vicuna with <unk>
    parts = {"dtype": dtype, "attn_implementation": attn_implementation} if attn_implementation else {"dtype": dtype}
    language = AutoModelForCausalLM.from_pretrained(spec.language_model, **parts)
    base_vocab = language.config.vocab_size
    if len(tokenizer) > base_vocab:
        language.resize_token_embeddings(len(tokenizer), pad_to_multiple_of=64, mean_resizing=False)
        _fill_new_rows(language, base_vocab)
    vision_config = AutoConfig.from_pretrained(spec.vision_tower)
    vision_config = getattr(vision_config, "vision_config", vision_config)
    vision = CLIPVisionModel.from_pretrained(spec.vision_tower, config=vision_config, **parts)
    text_config = language.config
    text_config.pad_token_id = tokenizer.pad_token_id
    config = LlavaConfig(
        vision_config=vision.config.to_dict(),
        text_config=text_config.to_dict(),
        image_token_id=tokenizer.convert_tokens_to_ids(IMAGE_TOKEN),
        vision_feature_layer=-2,
        vision_feature_select_strategy="default",
        image_seq_length=(vision_config.image_size // vision_config.patch_size) ** 2,
        projector_hidden_act="gelu",
    )
    config.token_reduction = token_reduction.to_dict()
    if attn_implementation:
        config._attn_implementation = attn_implementation
    # The shell only, on the meta device: every submodule with weights is replaced below. Under
    # ZeRO-3 transformers' "zero.Init is already active" flag keeps LlavaModel's from_config calls
    # from partitioning and initialising (gathering) the throw-away sub-models.
    with torch.device("meta"), set_zero3_state():
        model = LlavaPruMergeForConditionalGeneration(config)
    model.model.vision_tower = vision
    model.model.language_model = language.get_decoder()
    model.lm_head = language.get_output_embeddings()
    config.vision_config, config.text_config = vision.config, language.config  # one config per part
    projector = LlavaMultiModalProjector(config).to(dtype)
    projector.load_state_dict(load_mm_projector(spec.mm_projector))
    model.model.multi_modal_projector = projector
    model.config.dtype = dtype
    added = list(range(base_vocab, language.config.vocab_size))
    if added:  # <image> and the padding rows: new, untrained rows whose logits must never win (LLaVA has none)
        model.generation_config.suppress_tokens = added
    left_on_meta = [name for name, t in [*model.named_parameters(), *model.named_buffers()] if t.is_meta]
    if left_on_meta:
        raise RuntimeError(f"stage-2 assembly left tensors on the meta device: {left_on_meta[:5]}")
    image_processor = CLIPImageProcessor.from_pretrained(spec.vision_tower)
    processor = LlavaProcessor(
        image_processor=image_processor,
        tokenizer=tokenizer,
        patch_size=vision_config.patch_size,
        vision_feature_select_strategy="default",
        num_additional_image_tokens=1,
        image_token=IMAGE_TOKEN,
    )
    return model, processor


def _fill_new_rows(language: torch.nn.Module, start: int) -> None:
    """Set the embedding and ``lm_head`` rows from ``start`` on to the mean of the existing rows.

    Deterministic (transformers' ``mean_resizing`` samples them at random, so every load of an
    adapter would differ); the mean is what that sampling is centred on. Under ZeRO-3 the rows
    are gathered to be written.
    """
    from transformers.integrations.deepspeed import is_deepspeed_zero3_enabled

    weights = list(
        {id(m.weight): m.weight for m in (language.get_input_embeddings(), language.get_output_embeddings())}.values()
    )
    context = contextlib.nullcontext()
    if is_deepspeed_zero3_enabled():
        import deepspeed

        context = deepspeed.zero.GatheredParameters(weights, modifier_rank=0)
    with context, torch.no_grad():
        for weight in weights:
            weight[start:] = weight[:start].mean(dim=0)


def load_mm_projector(path: str | Path) -> dict[str, torch.Tensor]:
    """Map LLaVA's ``model.mm_projector.{0,2}.*`` to ``multi_modal_projector.linear_{1,2}.*``."""
    state = torch.load(path, map_location="cpu", weights_only=True)
    mapping = {"0": "linear_1", "2": "linear_2"}
    converted = {}
    for key, value in state.items():
        *prefix, layer, name = key.split(".")
        if not prefix or prefix[-1] != "mm_projector" or layer not in mapping:
            raise ValueError(f"{path}: unexpected key {key!r}; expected model.mm_projector.{{0,2}}.{{weight,bias}}")
        converted[f"{mapping[layer]}.{name}"] = value
    return converted


def write_reload_info(directory: str | Path, spec: BaseModelSpec, token_reduction: TokenReductionConfig) -> None:
    """Write ``token_reduction.json`` and ``base_model.json`` next to an adapter."""
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    (directory / TOKEN_REDUCTION_FILE).write_text(json.dumps(token_reduction.to_dict(), indent=2) + "\n")
    (directory / BASE_MODEL_FILE).write_text(json.dumps(asdict(spec), indent=2) + "\n")


def load_finetuned(
    adapter_dir: str | Path,
    token_reduction: TokenReductionConfig | dict | str | None = None,
    dtype: torch.dtype = torch.float32,
    attn_implementation: str | None = None,
    merge: bool = False,
):
    """Base model + LoRA adapter (+ trained projector) from a training output directory.

    The training-time reduction from ``token_reduction.json`` is used unless overridden.
    Returns ``(model, processor)``; with ``merge=True`` the LoRA weights are merged in and a plain
    :class:`LlavaPruMergeForConditionalGeneration` is returned.
    """
    from peft import PeftModel

    adapter_dir = Path(adapter_dir)
    for name in (TOKEN_REDUCTION_FILE, BASE_MODEL_FILE, "adapter_config.json"):
        if not (adapter_dir / name).is_file():
            raise FileNotFoundError(f"{adapter_dir} is not a llava-prumerge adapter directory: {name} is missing")
    saved = TokenReductionConfig.from_dict(json.loads((adapter_dir / TOKEN_REDUCTION_FILE).read_text()))
    reduction = saved if token_reduction is None else TokenReductionConfig.coerce(token_reduction)
    spec = BaseModelSpec(**json.loads((adapter_dir / BASE_MODEL_FILE).read_text()))
    if spec.mm_projector and not Path(spec.mm_projector).is_absolute() and (adapter_dir / spec.mm_projector).is_file():
        spec.mm_projector = str(adapter_dir / spec.mm_projector)  # a projector shipped inside the adapter directory
    model, processor = load_base_model(spec, reduction, dtype=dtype, attn_implementation=attn_implementation)
    if (adapter_dir / "preprocessor_config.json").is_file() or (adapter_dir / "processor_config.json").is_file():
        processor = AutoProcessor.from_pretrained(adapter_dir)
    model = PeftModel.from_pretrained(model, adapter_dir)
    if merge:
        model = model.merge_and_unload()
        model.set_token_reduction(reduction)
    model.eval()
    return model, processor
