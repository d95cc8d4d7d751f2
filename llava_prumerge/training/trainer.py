"""The ``Trainer`` of the finetune: the projector's own learning rate, modality-grouped sampling,
visual-token statistics in the logs, counted skipping of bad samples, reload info in checkpoints."""

from __future__ import annotations

import json
import logging
import time
from pathlib import Path
from typing import Any

import torch
from torch import nn
from transformers import Trainer, TrainerCallback

from ..config import TokenReductionConfig
from .checkpoints import BaseModelSpec, write_reload_info
from .dataset import too_many_bad
from .sampler import ModalityLengthGroupedSampler

logger = logging.getLogger("llava_prumerge.training")


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
