"""One-epoch LoRA finetuning of LLaVA-1.5 on already-reduced visual tokens (paper Sec. 4.1, Table 6).

With ``lora_r: 0`` the run is LLaVA-1.5's stage-2 *full* finetuning instead: no LoRA, the whole
language model (``learning_rate``) and the projector (``mm_projector_lr``) trained, the vision tower
frozen; ``output_dir`` then holds a complete llava-hf-layout checkpoint (``config.json``, weights,
generation config, processor, plus ``token_reduction.json`` / ``base_model.json`` / settings), usable
as ``model_name_or_path`` of a later LoRA run and as ``pretrained=`` of the lmms-eval model. From
start point (b) that checkpoint is the assembled model.

``scripts/train.py`` calls :func:`run`; ``scripts/finetune_lora.sh`` launches it. The settings are
:mod:`llava_prumerge.training.settings`, the trainer :mod:`llava_prumerge.training.trainer`.
"""

from __future__ import annotations

import logging
import os
import sys
from dataclasses import asdict
from pathlib import Path

import torch
from torch import nn
from transformers import set_seed
from transformers.trainer_utils import get_last_checkpoint

from ..config import TokenReductionConfig
from .checkpoints import BaseModelSpec, load_base_model
from .collator import LlavaCollator
from .dataset import LlavaInstructionDataset
from .settings import LoraSettings, parse_settings
from .trainer import PruMergeTrainer, SaveReloadInfoCallback

logger = logging.getLogger("llava_prumerge.training")


def lora_target_modules(model: nn.Module) -> list[str]:
    """Names of every ``nn.Linear`` inside the language model (found by type, not by name)."""
    language_model = model.model.language_model
    prefix = next(name for name, module in model.named_modules() if module is language_model)
    return [f"{prefix}.{name}" for name, module in language_model.named_modules() if isinstance(module, nn.Linear)]


def stock_tokens_per_image(config) -> int:
    """The most visual tokens one image feeds the unreduced model (the text budget's reserve):
    ``N`` for LLaVA-1.5; for LLaVA-NeXT the base view and the most crops any pinpoint gives, plus
    one newline per grid row."""
    vision = config.vision_config
    side = vision.image_size // vision.patch_size
    pinpoints = getattr(config, "image_grid_pinpoints", None)
    if not pinpoints:
        return side * side
    crops = max((h // vision.image_size) * (w // vision.image_size) for h, w in pinpoints)
    rows = max(h // vision.image_size for h, _ in pinpoints) * side
    return (1 + crops) * side * side + rows


def add_lora(model: nn.Module, lora_settings: LoraSettings) -> nn.Module:
    """LoRA on every linear layer of the language model; the projector trained fully, the tower frozen."""
    from peft import LoraConfig, get_peft_model

    model.config.use_cache = False
    model.model.vision_tower.requires_grad_(False)
    lora = LoraConfig(
        r=lora_settings.lora_r,
        lora_alpha=lora_settings.lora_alpha,
        lora_dropout=lora_settings.lora_dropout,
        target_modules=lora_target_modules(model),
        modules_to_save=["multi_modal_projector"],
        bias="none",
        task_type="CAUSAL_LM",
    )
    return get_peft_model(model, lora)


def prepare_full_finetune(model: nn.Module) -> nn.Module:
    """LLaVA-1.5 stage 2 (``lora_r: 0``): the language model (``lm_head`` included) and the projector
    trained fully, the vision tower frozen."""
    model.requires_grad_(True)
    model.model.vision_tower.requires_grad_(False)
    return model


def check_full_checkpoint_saving(args) -> None:
    """Under ZeRO-3 a full model is written as ``config.json`` + weights only if DeepSpeed gathers them
    on save; otherwise ``save_model`` leaves a DeepSpeed checkpoint that nothing here reloads."""
    ds_config = getattr(args, "hf_deepspeed_config", None)
    if ds_config is not None and ds_config.is_zero3():
        if not ds_config.get_value("zero_optimization.stage3_gather_16bit_weights_on_model_save", False):
            raise ValueError(
                "lora_r 0 (full finetuning) under ZeRO-3 needs stage3_gather_16bit_weights_on_model_save: true "
                "in the DeepSpeed config, so that output_dir becomes a loadable checkpoint"
            )


def count_parameters(model: nn.Module) -> tuple[int, int]:
    """``(trainable, total)`` parameter counts (shared tensors once; ZeRO-3 partitions at full size)."""
    trainable = total = 0
    for parameter in model.parameters():
        size = getattr(parameter, "ds_numel", parameter.numel())
        total += size
        trainable += size if parameter.requires_grad else 0
    return trainable, total


def resume_checkpoint(args) -> str | None:
    """The last ``checkpoint-*`` of ``output_dir`` with ``--resume true``, else None."""
    if not args.resume:
        return None
    checkpoint = get_last_checkpoint(args.output_dir) if os.path.isdir(args.output_dir) else None
    if checkpoint is None:
        raise FileNotFoundError(f"--resume: no checkpoint-* directory in {args.output_dir}")
    logger.info("resuming from %s", checkpoint)
    return checkpoint


def run(argv: list[str] | None = None) -> PruMergeTrainer:
    """Finetune as the settings say; returns the trainer. Its ``output_dir`` holds the adapter + reload
    info (LoRA), or with ``lora_r: 0`` the full checkpoint + reload info."""
    model_settings, data_settings, lora_settings, args = parse_settings(sys.argv[1:] if argv is None else argv)
    logging.basicConfig(level=logging.INFO if args.process_index == 0 else logging.WARNING)
    reduction = TokenReductionConfig.coerce(model_settings.token_reduction)
    if args.report_to and "wandb" in args.report_to and not args.run_name:
        args.run_name = f"{reduction.method}-{Path(args.output_dir).name}"
    dtype = torch.bfloat16 if args.bf16 else torch.float16 if args.fp16 else torch.float32
    spec = BaseModelSpec(
        model_name_or_path=model_settings.model_name_or_path,
        language_model=model_settings.language_model,
        vision_tower=model_settings.vision_tower,
        mm_projector=model_settings.mm_projector,
    )
    set_seed(args.seed)  # before LoRA's random init, so that a run is reproducible (and resumable)
    model, processor = load_base_model(
        spec, reduction, dtype=dtype, attn_implementation=model_settings.attn_implementation
    )
    full = lora_settings.lora_r == 0
    if full:
        check_full_checkpoint_saving(args)
        model = prepare_full_finetune(model)
        mode = "full finetuning (LLaVA-1.5 stage 2: language model + projector, vision tower frozen)"
    else:
        model = add_lora(model, lora_settings)
        mode = (
            f"LoRA r {lora_settings.lora_r} / alpha {lora_settings.lora_alpha} / dropout "
            f"{lora_settings.lora_dropout} (projector trained fully, vision tower frozen)"
        )
    trainable, total = count_parameters(model)
    logger.info(
        "mode: %s; %d trainable parameters of %d (%.2f%%); lr %g, projector lr %s",
        mode,
        trainable,
        total,
        100 * trainable / max(total, 1),
        args.learning_rate,
        args.learning_rate if args.mm_projector_lr is None else args.mm_projector_lr,
    )
    if args.gradient_checkpointing:
        args.gradient_checkpointing_kwargs = args.gradient_checkpointing_kwargs or {"use_reentrant": False}
    tokens_per_image = stock_tokens_per_image(model.config)
    dataset = LlavaInstructionDataset(data_settings, processor.tokenizer, processor.image_processor, tokens_per_image)
    settings = {
        "model": asdict(model_settings),
        "data": asdict(data_settings),
        "lora": asdict(lora_settings),
        "token_reduction": reduction.to_dict(),
    }
    reload_info = SaveReloadInfoCallback(spec, reduction, processor, settings)
    args.remove_unused_columns = False  # the collator's keys are the model's inputs
    trainer = PruMergeTrainer(
        model=model,
        args=args,
        train_dataset=dataset,
        data_collator=LlavaCollator(pad_token_id=processor.tokenizer.pad_token_id),
        callbacks=[reload_info],
        max_bad_fraction=data_settings.max_bad_fraction,
        bad_fraction_min_samples=data_settings.bad_fraction_min_samples,
    )
    trainer.train(resume_from_checkpoint=resume_checkpoint(args))
    trainer.save_state()
    trainer.save_model(args.output_dir)
    if trainer.is_world_process_zero():
        reload_info.write(args.output_dir)
        logger.info(
            "saved %s to %s (%d bad samples skipped of %d)",
            "full checkpoint" if full else "adapter",
            args.output_dir,
            trainer.samples_skipped,
            trainer.samples_seen,
        )
    return trainer
