"""One-epoch LoRA finetuning of LLaVA-1.5 on already-reduced visual tokens (paper Sec. 4.1, Table 6).

Defaults are the released LLaVA-1.5 LoRA recipe (``finetune_lora.sh``): LoRA r 128 / alpha 256 /
dropout 0.05 on every linear layer of the language model, the projector trained fully at 2e-5,
lr 2e-4, one epoch, cosine schedule, warmup 3%, no weight decay, global batch 128, max length 2048,
gradient checkpointing, ``image_aspect_ratio pad``, grouping by modality length; the vision tower
is frozen. ``scripts/train.py`` is the entry point; ``scripts/finetune_lora.sh`` launches it.
"""

from __future__ import annotations

import json
import logging
import os
import sys
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn
from transformers import HfArgumentParser, Trainer, TrainerCallback, TrainingArguments, set_seed
from transformers.trainer_utils import get_last_checkpoint

from .checkpoints import BaseModelSpec, load_base_model, write_reload_info
from .config import TokenReductionConfig
from .data import DataSettings, LlavaCollator, LlavaInstructionDataset, ModalityLengthGroupedSampler, too_many_bad

logger = logging.getLogger("llava_prumerge.training")


@dataclass
class ModelSettings(BaseModelSpec):
    """The base model and the reduction applied while finetuning."""

    token_reduction: str = field(
        default="prumerge",
        metadata={
            "help": "A method (prumerge, prumerge_plus, ...), a named config of llava_prumerge/configs/reduction "
            "(prumerge_budget64, ...) or a YAML path."
        },
    )
    attn_implementation: str | None = field(
        default="sdpa", metadata={"help": "Attention kernel: sdpa, eager or flash_attention_2."}
    )


@dataclass
class LoraSettings:
    """LoRA on every linear layer of the language model (never the vision tower, projector or lm_head)."""

    lora_r: int = field(default=128, metadata={"help": "LoRA rank."})
    lora_alpha: int = field(default=256, metadata={"help": "LoRA alpha."})
    lora_dropout: float = field(default=0.05, metadata={"help": "LoRA dropout."})


@dataclass
class PruMergeTrainingArguments(TrainingArguments):
    """``TrainingArguments`` plus the recipe's extras."""

    mm_projector_lr: float = field(default=2e-5, metadata={"help": "Learning rate of the fully trained projector."})
    group_by_modality_length: bool = field(
        default=True, metadata={"help": "Batches of only-image or only-text samples of similar length (LLaVA)."}
    )
    resume: bool = field(default=False, metadata={"help": "Resume from the last checkpoint in output_dir."})
    global_batch_size: int | None = field(
        default=None,
        metadata={
            "help": "Samples per optimizer step over all processes; sets gradient_accumulation_steps to "
            "global / (per_device_train_batch_size x WORLD_SIZE), which must divide evenly."
        },
    )


def lora_target_modules(model: nn.Module) -> list[str]:
    """Names of every ``nn.Linear`` inside the language model (found by type, not by name)."""
    language_model = model.model.language_model
    prefix = next(name for name, module in model.named_modules() if module is language_model)
    return [f"{prefix}.{name}" for name, module in language_model.named_modules() if isinstance(module, nn.Linear)]


class VisualTokenStats:
    """Kept visual tokens per image and the visual share of the sequence between two log steps."""

    def __init__(self) -> None:
        self.reset()

    def reset(self) -> None:
        self.images = 0
        self.visual = 0
        self.tokens = 0
        self.least = None
        self.most = None
        self.started = time.perf_counter()

    def update(self, counts: torch.Tensor | None, attention_mask: torch.Tensor | None) -> None:
        if attention_mask is not None:
            self.tokens += int(attention_mask.sum())
        if counts is None or counts.numel() == 0:
            return
        self.images += counts.numel()
        self.visual += int(counts.sum())
        low, high = int(counts.min()), int(counts.max())
        self.least = low if self.least is None else min(self.least, low)
        self.most = high if self.most is None else max(self.most, high)

    def summary(self) -> dict[str, float]:
        elapsed = max(time.perf_counter() - self.started, 1e-9)
        logs = {"tokens_per_second": self.tokens / elapsed}
        if self.tokens:
            logs["visual_token_share"] = self.visual / self.tokens
        if self.images:
            logs.update(
                visual_tokens_mean=self.visual / self.images,
                visual_tokens_min=float(self.least),
                visual_tokens_max=float(self.most),
            )
        return logs


class PruMergeTrainer(Trainer):
    """``Trainer`` with the projector's own learning rate, modality-grouped sampling, visual-token
    statistics in the logs, and counted skipping of bad samples."""

    def __init__(self, *args, max_bad_fraction: float = 0.01, bad_fraction_min_samples: int = 10_000, **kwargs):
        super().__init__(*args, **kwargs)
        self.max_bad_fraction = max_bad_fraction
        self.bad_fraction_min_samples = bad_fraction_min_samples
        self.visual_stats = VisualTokenStats()
        self.samples_seen = 0
        self.samples_skipped = 0

    def _get_train_sampler(self, train_dataset=None):
        dataset = train_dataset if train_dataset is not None else self.train_dataset
        if self.args.group_by_modality_length and hasattr(dataset, "modality_lengths"):
            return ModalityLengthGroupedSampler(
                dataset.modality_lengths(),
                batch_size=self.args.train_batch_size * self.args.gradient_accumulation_steps,
                world_size=self.args.world_size,
                seed=self.args.seed,
            )
        return super()._get_train_sampler(train_dataset)

    def create_optimizer(self, model=None):
        if self.optimizer is None and self.args.mm_projector_lr is not None:
            model = self.model if model is None else model
            decay = set(self.get_decay_parameter_names(model))
            groups: dict[tuple[bool, bool], list[nn.Parameter]] = {}
            for name, parameter in model.named_parameters():
                if parameter.requires_grad:
                    key = ("multi_modal_projector" in name, name in decay)
                    groups.setdefault(key, []).append(parameter)
            parameter_groups = []  # language-model groups first: the logged learning rate is group 0's
            for (is_projector, decays), parameters in sorted(groups.items()):
                group = {"params": parameters, "weight_decay": self.args.weight_decay if decays else 0.0}
                if is_projector:
                    group["lr"] = self.args.mm_projector_lr
                parameter_groups.append(group)
            optimizer_cls, optimizer_kwargs = self.get_optimizer_cls_and_kwargs(self.args, model)
            self.optimizer = optimizer_cls(parameter_groups, **optimizer_kwargs)
            return self.optimizer
        return super().create_optimizer(model)

    def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):
        skipped = inputs.pop("skipped", [])
        self._count_samples(len(inputs["input_ids"]), skipped)
        if num_items_in_batch is not None:
            inputs = {**inputs, "num_items_in_batch": num_items_in_batch}
        outputs = model(**inputs)
        if model.training:  # text-only batches return upstream's output, without the re-laid mask
            mask = outputs.get("attention_mask")
            self.visual_stats.update(
                outputs.get("visual_token_counts"), inputs["attention_mask"] if mask is None else mask
            )
        return (outputs.loss, outputs) if return_outputs else outputs.loss

    def prediction_step(self, model, inputs, prediction_loss_only, ignore_keys=None):
        inputs = {key: value for key, value in inputs.items() if key != "skipped"}
        return super().prediction_step(model, inputs, prediction_loss_only, ignore_keys)

    def _count_samples(self, rows: int, skipped: list[tuple[str, str]]) -> None:
        """Each batch row stands for one dataset index; ``skipped`` lists those that were bad (and
        replaced by the next good sample)."""
        for sample_id, reason in skipped:
            logger.warning("skipped bad sample %s: %s", sample_id, reason)
        self.samples_seen += rows
        self.samples_skipped += len(skipped)
        size = len(self.train_dataset) if self.train_dataset is not None else self.samples_seen
        if too_many_bad(
            self.samples_skipped, self.samples_seen, size, self.max_bad_fraction, self.bad_fraction_min_samples
        ):
            raise RuntimeError(
                f"{self.samples_skipped} of {self.samples_seen} samples were bad, more than "
                f"max_bad_fraction={self.max_bad_fraction}; last: {skipped[-1] if skipped else None}. "
                "Run scripts/validate_data.py to list them all."
            )

    def log(self, logs: dict[str, float], start_time: float | None = None) -> None:
        if "loss" in logs:  # a training log step
            logs.update(self.visual_stats.summary())
            logs["skipped_samples"] = float(self.samples_skipped)
            self.visual_stats.reset()
        super().log(logs, start_time)


class SaveReloadInfoCallback(TrainerCallback):
    """Writes the token reduction, the base-model spec and the processor into every checkpoint."""

    def __init__(self, spec: BaseModelSpec, reduction: TokenReductionConfig, processor, settings: dict[str, Any]):
        self.spec, self.reduction, self.processor, self.settings = spec, reduction, processor, settings

    def write(self, directory: str | Path) -> None:
        write_reload_info(directory, self.spec, self.reduction)
        self.processor.save_pretrained(directory)
        (Path(directory) / "llava_prumerge_settings.json").write_text(json.dumps(self.settings, indent=2) + "\n")

    def on_save(self, args, state, control, **kwargs):
        if state.is_world_process_zero:
            self.write(Path(args.output_dir) / f"checkpoint-{state.global_step}")

    def on_train_begin(self, args, state, control, **kwargs):
        if state.is_world_process_zero and "wandb" in (args.report_to or []):
            import wandb

            if wandb.run is not None:
                wandb.config.update({"token_reduction": self.reduction.to_dict()}, allow_val_change=True)


def prepare_deepspeed_on_cpu(use_cpu: bool, timeout_seconds: int = 1800) -> list[str]:
    """Make DeepSpeed's CPU accelerator (``DS_ACCELERATOR=cpu``, gloo) work with several processes.

    Call before ``TrainingArguments`` exist; returns extra flags for them. With the installed
    accelerate 1.15 / DeepSpeed 0.19 two processes on the CPU disagree about the world size:

    - ``use_cpu: true``: accelerate's ``PartialState`` takes its MULTI_CPU path and calls
      ``torch.distributed.init_process_group`` itself, never ``deepspeed.comm``. ``DeepSpeedConfig``
      (built by ``zero.Init`` in ``from_pretrained`` under ZeRO-3, and by ``deepspeed.initialize``)
      reads the world size from ``deepspeed.comm``, catches its "not initialised" error and counts one
      process: ``train_batch_size 4 != 2 * 1 * 1``.
    - ``use_cpu: false``: ``PartialState`` finds no GPU-like device, so its backend is None; it lets
      DeepSpeed initialise (world size 2) but counts one process itself, and so does the Trainer:
      ``2 != 2 * 1 * 2``.

    So with DeepSpeed on the CPU, ``use_cpu`` is true (the Trainer's device is DeepSpeed's; a false
    value is overridden with a warning), ``use_cpu: true`` selects DeepSpeed's CPU accelerator when
    ``DS_ACCELERATOR`` is unset, and under a launcher ``deepspeed.comm`` is initialised here, with the
    accelerator's backend (gloo, or ccl with oneCCL); accelerate then reuses that process group.
    """
    if use_cpu and "DS_ACCELERATOR" not in os.environ:
        os.environ["DS_ACCELERATOR"] = "cpu"
    from deepspeed.accelerator import get_accelerator

    accelerator = get_accelerator()
    if accelerator.device_name() != "cpu":
        if use_cpu:
            raise ValueError(
                f"use_cpu with DeepSpeed needs DeepSpeed's CPU accelerator, but it is {accelerator.device_name()!r} "
                f"(DS_ACCELERATOR={os.environ.get('DS_ACCELERATOR')!r}): set DS_ACCELERATOR=cpu or use_cpu false"
            )
        return []
    extra = []
    if not use_cpu:
        logger.warning("DeepSpeed runs on its CPU accelerator: setting use_cpu true")
        extra = ["--use_cpu", "true"]
    if int(os.environ.get("WORLD_SIZE", "1")) > 1:
        import deepspeed
        from deepspeed import comm

        if not comm.is_initialized():
            from datetime import timedelta

            deepspeed.init_distributed(
                dist_backend=accelerator.communication_backend_name(),
                auto_mpi_discovery=False,
                timeout=timedelta(seconds=timeout_seconds),
            )
    return extra


def parse_settings(argv: list[str]):
    """``[CONFIG.yaml] [--key value ...]``: YAML values become defaults, flags override them.

    The YAML may stand anywhere in ``argv`` (launchers put ``--local_rank`` first).
    """
    parser = HfArgumentParser((ModelSettings, DataSettings, LoraSettings, PruMergeTrainingArguments))
    argv = list(argv)
    config_path = None
    for position, arg in enumerate(argv):
        flag_value = position > 0 and argv[position - 1].startswith("--") and "=" not in argv[position - 1]
        if arg.endswith((".yaml", ".yml")) and not flag_value:
            config_path = Path(argv.pop(position))
            break
    if config_path is not None:
        import yaml

        if not config_path.is_file():
            raise FileNotFoundError(f"training config not found: {config_path}")
        values = yaml.safe_load(config_path.read_text()) or {}
        known = {action.dest for action in parser._actions}
        unknown = sorted(set(values) - known)
        if unknown:
            raise ValueError(f"{config_path}: unknown setting(s) {unknown}")
        parser.set_defaults(**values)
    raw, _ = parser.parse_known_args(argv)
    if raw.deepspeed:
        argv += prepare_deepspeed_on_cpu(raw.use_cpu, raw.ddp_timeout)
    if raw.global_batch_size:
        world_size = int(os.environ.get("WORLD_SIZE", "1"))
        per_step = raw.per_device_train_batch_size * world_size
        if raw.global_batch_size % per_step:
            raise ValueError(
                f"global_batch_size={raw.global_batch_size} is not a multiple of per_device_train_batch_size="
                f"{raw.per_device_train_batch_size} x WORLD_SIZE={world_size}"
            )
        argv += ["--gradient_accumulation_steps", str(raw.global_batch_size // per_step)]
    return parser.parse_args_into_dataclasses(args=argv)


def run(argv: list[str] | None = None) -> PruMergeTrainer:
    """Finetune as the settings say; returns the trainer (its ``output_dir`` holds adapter + reload info)."""
    from peft import LoraConfig, get_peft_model

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
    model, processor = load_base_model(spec, reduction, dtype, model_settings.attn_implementation)
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
    model = get_peft_model(model, lora)
    if args.gradient_checkpointing:
        args.gradient_checkpointing_kwargs = args.gradient_checkpointing_kwargs or {"use_reentrant": False}
    vision = model.config.vision_config
    tokens_per_image = (vision.image_size // vision.patch_size) ** 2
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
    checkpoint = None
    if args.resume:
        checkpoint = get_last_checkpoint(args.output_dir) if os.path.isdir(args.output_dir) else None
        if checkpoint is None:
            raise FileNotFoundError(f"--resume: no checkpoint-* directory in {args.output_dir}")
        logger.info("resuming from %s", checkpoint)
    trainer.train(resume_from_checkpoint=checkpoint)
    trainer.save_state()
    trainer.save_model(args.output_dir)
    if trainer.is_world_process_zero():
        reload_info.write(args.output_dir)
        logger.info(
            "saved adapter to %s (%d bad samples skipped of %d)",
            args.output_dir,
            trainer.samples_skipped,
            trainer.samples_seen,
        )
    return trainer
