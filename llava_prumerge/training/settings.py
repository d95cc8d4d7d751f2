"""Every setting of a finetuning run, from a YAML recipe and ``--key value`` flags (paper Sec. 4.1).

Defaults are the released LLaVA-1.5 LoRA recipe (``finetune_lora.sh``): LoRA r 128 / alpha 256 /
dropout 0.05 on every linear layer of the language model, the projector trained fully at 2e-5,
lr 2e-4, one epoch, cosine schedule, warmup 3%, no weight decay, global batch 128, max length 2048,
gradient checkpointing, ``image_aspect_ratio pad``, grouping by modality length; the vision tower
is frozen.

``lora_r: 0`` selects LLaVA-1.5's stage-2 full finetuning instead of LoRA: the whole language model
trained at ``learning_rate``, the projector at ``mm_projector_lr``, the vision tower frozen; the output
directory is then a complete llava-hf checkpoint (see :mod:`llava_prumerge.training.run`).
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass, field
from pathlib import Path

from transformers import HfArgumentParser, TrainingArguments

from .checkpoints import BaseModelSpec
from .dataset import DataSettings

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
    """LoRA on every linear layer of the language model (never the vision tower, projector or lm_head);
    ``lora_r: 0`` for full finetuning of the language model instead (LLaVA-1.5 stage 2)."""

    lora_r: int = field(
        default=128,
        metadata={
            "help": "LoRA rank. 0: no LoRA, LLaVA-1.5 stage-2 full finetuning (the language model at learning_rate "
            "and the projector at mm_projector_lr trained fully, the vision tower frozen); output_dir is then a "
            "complete llava-hf checkpoint instead of an adapter."
        },
    )
    lora_alpha: int = field(default=256, metadata={"help": "LoRA alpha."})
    lora_dropout: float = field(default=0.05, metadata={"help": "LoRA dropout."})

    def __post_init__(self) -> None:
        if self.lora_r < 0:
            raise ValueError(f"lora_r must be a positive LoRA rank, or 0 for full finetuning; got {self.lora_r}")


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


BASE_KEY = "base"


def _read_config_file(path: Path, known: set[str]) -> dict:
    """One training YAML's own settings (its ``base`` key included), checked against ``known``."""
    import yaml

    values = yaml.safe_load(path.read_text()) or {}
    if not isinstance(values, dict):
        raise ValueError(f"{path}: a training config is a mapping of settings, got {type(values).__name__}")
    unknown = sorted(set(values) - known - {BASE_KEY})
    if unknown:
        raise ValueError(f"{path}: unknown setting(s) {unknown}")
    return values


def load_config_values(config_path: str | Path, known: set[str]) -> dict:
    """The settings of a training YAML with its ``base`` chain applied: the deepest base first, each overlay on top.

    ``base: OTHER.yaml`` names a path relative to the folder of the YAML that holds it; a base may have a
    base of its own. A missing file raises ``FileNotFoundError`` and a cycle ``ValueError``, both naming
    the files; a key outside ``known`` raises ``ValueError`` naming the file that has it.
    """
    path = Path(config_path)
    if not path.is_file():
        raise FileNotFoundError(f"training config not found: {path}")
    chain: list[Path] = []
    layers: list[dict] = []
    while True:
        if path.resolve() in [seen.resolve() for seen in chain]:
            names = " -> ".join(str(step) for step in [*chain, path])
            raise ValueError(f"training config base cycle: {names}")
        chain.append(path)
        values = dict(_read_config_file(path, known))
        base = values.pop(BASE_KEY, None)
        layers.append(values)
        if base is None:
            break
        if not isinstance(base, str) or not base:
            raise ValueError(f"{path}: {BASE_KEY} must be the path of another training YAML, got {base!r}")
        base_path = path.parent / base
        if not base_path.is_file():
            raise FileNotFoundError(f"{path}: base config not found: {base_path}")
        path = base_path
    merged: dict = {}
    for values in reversed(layers):
        merged.update(values)
    return merged


def parse_settings(argv: list[str]):
    """``[CONFIG.yaml] [--key value ...]``: YAML values become defaults, flags override them.

    The YAML may stand anywhere in ``argv`` (launchers put ``--local_rank`` first). A YAML may overlay
    another with ``base: OTHER.yaml`` (relative to its own folder, chains allowed): the base's values
    come first, the overlay's on top of them, then the flags (:func:`load_config_values`).
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
        known = {action.dest for action in parser._actions}
        parser.set_defaults(**load_config_values(config_path, known))
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
