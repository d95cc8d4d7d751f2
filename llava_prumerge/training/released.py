"""The authors' released PruMerge adapters (LLaVA-format LoRA) → our adapter directory.

The finetuned rows of Table 1 were released as ``yuzhang/llava-prumerge{,-plus}-vicuna-7b-v1.5-lora``
and ``yuzhang/llava-prumerge-vicuna-13b-v1.5-lora``, in the original LLaVA repository's format:

- ``adapter_config.json`` + ``adapter_model.bin``: a PEFT ~0.4 LoRA (r 128, alpha 256) on
  ``q/k/v/o/gate/up/down_proj`` of every decoder layer, keys
  ``base_model.model.model.layers.{i}.{self_attn,mlp}.{q,k,...}_proj.lora_{A,B}.weight``;
- ``non_lora_trainables.bin``: the 2-layer MLP projector, ``base_model.model.model.mm_projector.{0,2}.*``;
- ``config.json`` (LLaVA's: ``mm_vision_tower``, ``mm_projector_type``, ...), ``trainer_state.json``.

Their base is Vicuna-v1.5 + CLIP-ViT-L/14-336 (``load_pretrained_model(path, model_base=vicuna)``),
**not** ``llava-hf/llava-1.5-7b-hf``, whose language model is already finetuned. LLaVA loads them by
stripping ``base_model.`` then ``model.`` from the projector keys, ``load_state_dict(strict=False)``,
then ``PeftModel.from_pretrained(...).merge_and_unload()`` (``llava/model/builder.py``).

:func:`convert_llava_checkpoint` writes the files ``scripts/finetune_lora.sh`` writes, so that
``load_finetuned``, the lmms-eval model (``adapter=``) and ``scripts/eval/*.sh`` (``ADAPTER=``) take
it as one of ours: ``adapter_config.json`` + ``adapter_model.safetensors`` (the LoRA, keys in
transformers 5's layout ``model.language_model.layers...``, ``target_modules`` restricted to the
language model: the released bare suffixes would also match CLIP's attention projections),
``mm_projector.bin`` (the trained projector in LLaVA's stage-1 file format, which the base
assembly reads), ``base_model.json`` (Vicuna + CLIP + that projector, start point (b)),
``token_reduction.json`` (chosen by the caller: the released files do not record PruMerge vs
PruMerge+) and ``released_checkpoint.json`` (where it came from). Nothing is unpickled beyond
tensors (``torch.load(weights_only=True)``); shapes are checked against the base's configs before
anything is written, and unexpected keys are listed, never dropped.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import torch

from ..config import TokenReductionConfig
from .checkpoints import BaseModelSpec, write_reload_info

LORA_TARGETS = ("q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj")
"""LLaVA's ``find_all_linear_names`` on a Llama: every linear layer but ``lm_head``."""
REQUIRED_FILES = ("adapter_config.json", "non_lora_trainables.bin", "config.json")
PROJECTOR_FILE = "mm_projector.bin"
PROVENANCE_FILE = "released_checkpoint.json"

_LORA_KEY = re.compile(
    r"^base_model\.model\.model\.layers\.(\d+)\.(self_attn|mlp)\.("
    + "|".join(LORA_TARGETS)
    + r")\.lora_([AB])\.weight$"
)
_PROJECTOR_KEY = re.compile(r"^(?:base_model\.)?(?:model\.)?model\.mm_projector\.([02])\.(weight|bias)$")
_TARGET_PATTERN = r"model\.language_model\.layers\.\d+\.(self_attn|mlp)\.({})"


def _load_tensors(path: Path) -> dict[str, torch.Tensor]:
    if path.suffix == ".safetensors":
        from safetensors.torch import load_file

        return load_file(path)
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as error:  # pickle errors of every kind: name the file
        raise ValueError(f"{path}: not a tensor file loadable with weights_only=True ({error})") from error
    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise ValueError(f"{path}: expected a dict of tensors")
    return state


def read_released_checkpoint(path: str | Path) -> dict[str, Any]:
    """The released files of ``path``: ``adapter_config``, ``lora``, ``projector``, ``llava_config``.

    ``FileNotFoundError`` lists every missing file; an unsupported LLaVA configuration (another
    projector, feature layer or start/end tokens) is a ``ValueError``.
    """
    path = Path(path)
    weights = next((path / n for n in ("adapter_model.bin", "adapter_model.safetensors") if (path / n).is_file()), None)
    missing = [name for name in REQUIRED_FILES if not (path / name).is_file()]
    if weights is None:
        missing.append("adapter_model.bin")
    if missing:
        raise FileNotFoundError(
            f"{path} is not a LLaVA-format LoRA checkpoint: missing {', '.join(missing)} "
            f"(expected {', '.join(REQUIRED_FILES)} and adapter_model.bin)"
        )
    adapter_config = json.loads((path / "adapter_config.json").read_text())
    llava_config = json.loads((path / "config.json").read_text())
    expected = {
        "mm_projector_type": "mlp2x_gelu",
        "mm_vision_select_layer": -2,
        "mm_vision_select_feature": "patch",
        "mm_use_im_start_end": False,
    }
    for key, value in expected.items():
        if key in llava_config and llava_config[key] != value:
            raise ValueError(
                f"{path / 'config.json'}: {key}={llava_config[key]!r}; only {value!r} (LLaVA-1.5's) is supported"
            )
    if adapter_config.get("peft_type", "LORA") != "LORA":
        raise ValueError(f"{path / 'adapter_config.json'}: peft_type={adapter_config['peft_type']!r}, expected LORA")
    return {
        "path": path,
        "adapter_config": adapter_config,
        "llava_config": llava_config,
        "lora": _load_tensors(weights),
        "projector": _load_tensors(path / "non_lora_trainables.bin"),
    }


def _listed(keys: list[str]) -> str:
    return ", ".join(keys[:8]) + (f" ... ({len(keys)} in all)" if len(keys) > 8 else "")


def convert_lora_keys(lora: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """LLaVA's LoRA keys → PEFT's saved keys for our model (``model.language_model.layers...``).

    Any key that is not a LoRA A/B of a decoder layer's linear layer is an error listing them all.
    """
    converted, unexpected = {}, []
    for key, value in lora.items():
        match = _LORA_KEY.match(key)
        if match is None:
            unexpected.append(key)
            continue
        layer, block, projection, side = match.groups()
        converted[f"base_model.model.model.language_model.layers.{layer}.{block}.{projection}.lora_{side}.weight"] = (
            value
        )
    if unexpected:
        raise ValueError(
            f"adapter_model.bin: unexpected key(s) {_listed(unexpected)}; expected only "
            "base_model.model.model.layers.{i}.{self_attn,mlp}.{q,k,v,o,gate,up,down}_proj.lora_{A,B}.weight"
        )
    return converted


def convert_projector_keys(projector: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """``non_lora_trainables.bin`` → LLaVA's ``model.mm_projector.{0,2}.*`` (``mm_projector.bin``'s keys),
    stripping ``base_model.`` and ``model.`` as LLaVA's loader does; other keys are an error."""
    converted, unexpected = {}, []
    for key, value in projector.items():
        match = _PROJECTOR_KEY.match(key)
        if match is None:
            unexpected.append(key)
        else:
            converted[f"model.mm_projector.{match.group(1)}.{match.group(2)}"] = value
    if unexpected:
        raise ValueError(
            f"non_lora_trainables.bin: unexpected key(s) {_listed(unexpected)}; expected the mm_projector only"
        )
    absent = sorted({f"model.mm_projector.{i}.{n}" for i in "02" for n in ("weight", "bias")} - set(converted))
    if absent:
        raise ValueError(f"non_lora_trainables.bin: missing {', '.join(absent)}")
    return converted


def expected_shapes(text, vision, rank: int) -> dict[str, tuple[int, ...]]:
    """Every LoRA and projector tensor's shape for a base with these configs (LLaVA-1.5's layout)."""
    head_dim = getattr(text, "head_dim", None) or text.hidden_size // text.num_attention_heads
    kv = (getattr(text, "num_key_value_heads", None) or text.num_attention_heads) * head_dim
    q = text.num_attention_heads * head_dim
    sizes = {  # (in, out) of each linear layer
        "q_proj": (text.hidden_size, q),
        "k_proj": (text.hidden_size, kv),
        "v_proj": (text.hidden_size, kv),
        "o_proj": (q, text.hidden_size),
        "gate_proj": (text.hidden_size, text.intermediate_size),
        "up_proj": (text.hidden_size, text.intermediate_size),
        "down_proj": (text.intermediate_size, text.hidden_size),
    }
    shapes = {}
    for layer in range(text.num_hidden_layers):
        for projection, (fan_in, fan_out) in sizes.items():
            block = "mlp" if projection in ("gate_proj", "up_proj", "down_proj") else "self_attn"
            stem = f"base_model.model.model.language_model.layers.{layer}.{block}.{projection}"
            shapes[f"{stem}.lora_A.weight"] = (rank, fan_in)
            shapes[f"{stem}.lora_B.weight"] = (fan_out, rank)
    shapes["model.mm_projector.0.weight"] = (text.hidden_size, vision.hidden_size)
    shapes["model.mm_projector.0.bias"] = (text.hidden_size,)
    shapes["model.mm_projector.2.weight"] = (text.hidden_size, text.hidden_size)
    shapes["model.mm_projector.2.bias"] = (text.hidden_size,)
    return shapes


def check_against_base(tensors: dict[str, torch.Tensor], shapes: dict[str, tuple[int, ...]], base: str) -> None:
    """Every tensor has its base shape; the LoRA covers the same modules in every layer."""
    wrong = [
        f"{key} {tuple(value.shape)} (the base needs {shapes[key]})"
        for key, value in tensors.items()
        if key in shapes and tuple(value.shape) != shapes[key]
    ]
    outside = [key for key in tensors if key not in shapes]
    if wrong or outside:
        details = "; ".join(wrong[:4] + [f"{k} (no such layer in the base)" for k in outside[:4]])
        raise ValueError(f"the checkpoint does not fit the base {base} (a wrong base?): {details}")
    layers_by_module: dict[str, set[str]] = {}
    for key in tensors:
        if ".lora_" in key:
            layer, module = key.rsplit(".", 2)[0].split("layers.", 1)[1].split(".", 1)
            layers_by_module.setdefault(module, set()).add(layer)
    every_layer = set().union(*layers_by_module.values()) if layers_by_module else set()
    missing = sorted(
        f"layers.{layer}.{module}" for module, seen in layers_by_module.items() for layer in every_layer - seen
    )
    halves = [k for k in tensors if ".lora_A." in k and k.replace(".lora_A.", ".lora_B.") not in tensors]
    halves += [k for k in tensors if ".lora_B." in k and k.replace(".lora_B.", ".lora_A.") not in tensors]
    if missing or halves:
        raise ValueError(
            f"adapter_model.bin: incomplete LoRA (missing modules or A/B halves): {_listed(missing + halves)}"
        )


def _vision_config(name: str):
    from transformers import AutoConfig

    config = AutoConfig.from_pretrained(name)
    return getattr(config, "vision_config", config)


def convert_llava_checkpoint(
    checkpoint: str | Path,
    output: str | Path,
    token_reduction: TokenReductionConfig | dict | str,
    language_model: str | None = None,
    vision_tower: str | None = None,
) -> Path:
    """Write our adapter directory for a released LLaVA-format LoRA checkpoint; returns ``output``.

    ``language_model``/``vision_tower`` default to what the checkpoint names
    (``adapter_config.json``'s ``base_model_name_or_path``, ``config.json``'s ``mm_vision_tower``).
    Only configs of the base are read here; the weights are loaded when the adapter is.
    """
    from peft import LoraConfig
    from safetensors.torch import save_file
    from transformers import AutoConfig

    released = read_released_checkpoint(checkpoint)
    adapter_config, llava_config = released["adapter_config"], released["llava_config"]
    language_model = language_model or adapter_config.get("base_model_name_or_path")
    vision_tower = vision_tower or llava_config.get("mm_vision_tower")
    if not language_model or not vision_tower:
        raise ValueError(f"{checkpoint}: name the base: --language-model (Vicuna-v1.5) and --vision-tower (CLIP)")
    reduction = TokenReductionConfig.coerce(token_reduction)
    rank, alpha = int(adapter_config["r"]), adapter_config["lora_alpha"]
    targets = adapter_config.get("target_modules") or list(LORA_TARGETS)
    targets = [targets] if isinstance(targets, str) else list(targets)
    unknown = sorted(set(targets) - set(LORA_TARGETS))
    if unknown:
        raise ValueError(f"{checkpoint}/adapter_config.json: target_modules {unknown} are not decoder-layer linears")
    lora = convert_lora_keys(released["lora"])
    projector = convert_projector_keys(released["projector"])
    text = AutoConfig.from_pretrained(language_model)
    base = f"{language_model} + {vision_tower}"
    check_against_base({**lora, **projector}, expected_shapes(text, _vision_config(vision_tower), rank), base)

    output = Path(output)
    output.mkdir(parents=True, exist_ok=True)
    LoraConfig(
        r=rank,
        lora_alpha=alpha,
        lora_dropout=float(adapter_config.get("lora_dropout", 0.0)),
        bias=adapter_config.get("bias", "none"),
        target_modules=_TARGET_PATTERN.format("|".join(targets)),  # the language model only, never CLIP
        task_type="CAUSAL_LM",
        base_model_name_or_path=language_model,
    ).save_pretrained(output)
    save_file({k: v.contiguous() for k, v in lora.items()}, output / "adapter_model.safetensors")
    torch.save(projector, output / PROJECTOR_FILE)
    spec = BaseModelSpec(language_model=language_model, vision_tower=vision_tower, mm_projector=PROJECTOR_FILE)
    write_reload_info(output, spec, reduction)
    provenance = {
        "source": str(checkpoint),
        "format": "LLaVA (haotian-liu/LLaVA) LoRA: adapter_model.bin + non_lora_trainables.bin",
        "lora": {"r": rank, "lora_alpha": alpha, "target_modules": targets, "tensors": len(lora)},
        "llava_config": {
            k: llava_config.get(k) for k in ("mm_vision_tower", "mm_projector_type", "image_aspect_ratio")
        },
        "token_reduction_chosen_at_conversion": reduction.to_dict(),
    }
    (output / PROVENANCE_FILE).write_text(json.dumps(provenance, indent=2) + "\n")
    return output
