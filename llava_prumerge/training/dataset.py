"""LLaVA-1.5 instruction data (``llava_v1_5_mix665k.json`` format): samples → tokenized examples.

A sample is ``{"id", "image"?: path relative to the image folder (or a list of paths),
"conversations": [{"from": "human"|"gpt", "value": str}, ...]}``; text-only samples have no
``image``. Bad samples (missing/corrupt image, malformed conversation, nothing left to supervise)
never crash a run: the dataset substitutes the next good sample, and every skip is reported to the
trainer with its sample id and reason, so that it is counted, logged, and can stop the run when too
many are bad (``max_bad_fraction``, :func:`too_many_bad`). ``validation.validate_dataset`` finds
them all before training; ``collator`` and ``sampler`` batch the examples.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from PIL import Image, ImageFile
from torch.utils.data import Dataset

from ..conversation import IMAGE_TOKEN, MalformedSample, normalise_turns, tokenize_conversation
from ..images import expand_to_square, pad_colour

MAX_SUBSTITUTIONS = 16


def load_samples(path: str | Path) -> list[dict]:
    """Read a LLaVA JSON list (or JSON lines); errors name the file."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"data file not found: {path}")
    text = path.read_text(encoding="utf-8")
    try:
        if path.suffix == ".jsonl":
            samples = [json.loads(line) for line in text.splitlines() if line.strip()]
        else:
            samples = json.loads(text)
    except json.JSONDecodeError as error:
        raise ValueError(f"{path}: not valid JSON ({error})") from error
    if not isinstance(samples, list):
        raise ValueError(f"{path}: expected a JSON list of samples, got {type(samples).__name__}")
    return samples


def image_paths(sample: dict) -> list[str]:
    value = sample.get("image")
    if value is None:
        return []
    if isinstance(value, str):
        return [value]
    if isinstance(value, list) and all(isinstance(v, str) for v in value):
        return value
    raise MalformedSample("'image' must be a path or a list of paths")


def open_image(path: Path) -> Image.Image:
    """Open and fully decode an RGB image; raises :class:`MalformedSample` naming the file."""
    if not path.is_file():
        raise MalformedSample(f"image not found: {path}")
    truncated_allowed = ImageFile.LOAD_TRUNCATED_IMAGES
    ImageFile.LOAD_TRUNCATED_IMAGES = False  # a truncated file is a bad sample, not a silently grey image
    try:
        with Image.open(path) as handle:
            handle.load()
            return handle.convert("RGB")
    except (OSError, SyntaxError, ValueError) as error:
        raise MalformedSample(f"unreadable image {path}: {error}") from error
    finally:
        ImageFile.LOAD_TRUNCATED_IMAGES = truncated_allowed


@dataclass
class DataSettings:
    """Where the data is and how it becomes tokens (one config object for data, STYLE.md rule 5)."""

    data_path: str = field(default="", metadata={"help": "LLaVA-format JSON/JSONL file."})
    image_folder: str = field(default="", metadata={"help": "Folder the samples' 'image' paths are relative to."})
    image_aspect_ratio: str = field(
        default="pad", metadata={"help": "'pad': pad to square with the mean colour (LLaVA-1.5); 'none': as is."}
    )
    model_max_length: int = field(
        default=2048,
        metadata={"help": "Max tokens per sample, counting each image as the vision tower's N tokens."},
    )
    max_bad_fraction: float = field(
        default=0.01,
        metadata={
            "help": "Stop the run when more than this fraction of samples is bad. The fraction is judged only "
            "after bad_fraction_min_samples samples (or the whole dataset, if smaller); before that the run "
            "stops only when the bad samples already exceed this fraction of the whole dataset."
        },
    )
    bad_fraction_min_samples: int = field(
        default=10_000,
        metadata={"help": "Samples seen (per process) before max_bad_fraction is judged on the samples seen so far."},
    )


class LlavaInstructionDataset(Dataset):
    """Tokenized LLaVA-1.5 instruction samples with one ``<image>`` placeholder per image.

    Each item: ``input_ids``, ``labels`` (lists), ``pixel_values`` (``[k, 3, H, W]`` or None;
    LLaVA-NeXT: ``[k, P, 3, H, W]`` crops and ``image_sizes`` ``[k, 2]``), ``sample_id``, and
    ``skipped``: the ``(id, reason)`` of bad samples replaced to produce it. With a LLaVA-NeXT image
    processor (AnyRes: it has ``image_grid_pinpoints``) images are not padded to a square: the
    crops and the unpadding handle the aspect ratio, as LLaVA-NeXT trains.
    The text budget is ``model_max_length - images · tokens_per_image`` (the unreduced count, so
    the limit holds for every reduction).
    """

    def __init__(self, settings: DataSettings, tokenizer, image_processor, tokens_per_image: int):
        self.settings = settings
        self.samples = load_samples(settings.data_path)
        self.image_folder = Path(settings.image_folder) if settings.image_folder else Path(settings.data_path).parent
        self.tokenizer = tokenizer
        self.image_processor = image_processor
        self.tokens_per_image = tokens_per_image
        self.background = pad_colour(image_processor)
        self.image_token_id = tokenizer.convert_tokens_to_ids(IMAGE_TOKEN)
        if self.image_token_id is None or self.image_token_id == tokenizer.unk_token_id:
            raise ValueError(f"the tokenizer has no '{IMAGE_TOKEN}' token; use the model's processor (llava-hf format)")

    def __len__(self) -> int:
        return len(self.samples)

    def modality_lengths(self) -> list[int]:
        """Approximate text length per sample, negative for text-only (LLaVA's grouping convention)."""
        lengths = []
        for sample in self.samples:
            conversations = sample.get("conversations") or []
            words = sum(len(str(turn.get("value", "")).split()) for turn in conversations if isinstance(turn, dict))
            lengths.append(words if sample.get("image") else -max(words, 1))
        return lengths

    def build(self, index: int) -> dict[str, Any]:
        """Turn sample ``index`` into tensors; raises :class:`MalformedSample` when it is bad."""
        sample = self.samples[index]
        if not isinstance(sample, dict):
            raise MalformedSample("sample is not a JSON object")
        paths = image_paths(sample)
        turns = normalise_turns(sample.get("conversations"), len(paths))
        text_budget = self.settings.model_max_length - len(paths) * (self.tokens_per_image - 1)
        if text_budget <= len(paths):
            raise MalformedSample(f"{len(paths)} image(s) do not fit model_max_length={self.settings.model_max_length}")
        tokens = tokenize_conversation(turns, self.tokenizer, text_budget)
        found = tokens.input_ids.count(self.image_token_id)
        if found != len(paths):  # the model would fail on this batch in the middle of a run
            raise MalformedSample(f"{found} image token(s) in the tokenized sample for {len(paths)} image(s)")
        pixel_values = image_sizes = None
        if paths:
            images = [open_image(self.image_folder / p) for p in paths]
            anyres = getattr(self.image_processor, "image_grid_pinpoints", None) is not None
            if self.settings.image_aspect_ratio == "pad" and not anyres:
                images = [expand_to_square(image, self.background) for image in images]
            processed = self.image_processor(images, return_tensors="pt")
            pixel_values = processed["pixel_values"]
            image_sizes = processed.get("image_sizes") if anyres else None
        item = {
            "input_ids": tokens.input_ids,
            "labels": tokens.labels,
            "pixel_values": pixel_values,
            "sample_id": str(sample.get("id", index)),
        }
        if image_sizes is not None:
            item["image_sizes"] = image_sizes
        return item

    def __getitem__(self, index: int) -> dict[str, Any]:
        """Sample ``index``, or when it is bad the next good one; ``skipped`` then names sample
        ``index`` only (a bad substitute is counted when its own index comes up), so each bad
        sample is counted once per epoch."""
        skipped = []
        for attempt in range(MAX_SUBSTITUTIONS):
            position = (index + attempt) % len(self.samples)
            try:
                item = self.build(position)
            except MalformedSample as error:
                if attempt == 0:
                    sample = self.samples[position]
                    sample_id = sample.get("id", position) if isinstance(sample, dict) else position
                    skipped.append((str(sample_id), str(error)))
                continue
            item["skipped"] = skipped
            return item
        raise RuntimeError(
            f"{MAX_SUBSTITUTIONS} consecutive bad samples from index {index} in {self.settings.data_path}; "
            "run scripts/validate_data.py to list them"
        )


def too_many_bad(skipped: int, seen: int, dataset_size: int, max_bad_fraction: float, min_samples: int) -> bool:
    """Whether ``skipped`` bad samples among ``seen`` should stop the run.

    Two bad samples early in a 665k-sample run say little about the rest, so the fraction of the
    samples seen is judged only once ``min(min_samples, dataset_size)`` were seen. Before that
    the run stops only when the bad samples already exceed ``max_bad_fraction`` of the whole
    dataset, when the fraction can no longer come out below the limit.
    """
    if skipped > max_bad_fraction * dataset_size:
        return True
    return seen >= min(min_samples, dataset_size) and skipped > max_bad_fraction * seen
