"""Right-padded batches of tokenized LLaVA examples (:mod:`llava_prumerge.training.dataset`)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch

from ..conversation import IGNORE_INDEX


@dataclass
class LlavaCollator:
    """Right-pads a list of dataset items into a batch; images of all rows are concatenated
    (LLaVA-NeXT crops padded with zero crops to the longest, as its processor pads a batch; the
    model reads each image's real crop count from ``image_sizes``)."""

    pad_token_id: int

    def __call__(self, items: list[dict[str, Any]]) -> dict[str, Any]:
        width = max(len(item["input_ids"]) for item in items)
        input_ids = torch.full((len(items), width), self.pad_token_id, dtype=torch.long)
        labels = torch.full((len(items), width), IGNORE_INDEX, dtype=torch.long)
        attention_mask = torch.zeros((len(items), width), dtype=torch.long)
        for row, item in enumerate(items):
            length = len(item["input_ids"])
            input_ids[row, :length] = torch.tensor(item["input_ids"])
            labels[row, :length] = torch.tensor(item["labels"])
            attention_mask[row, :length] = 1
        batch = {"input_ids": input_ids, "labels": labels, "attention_mask": attention_mask}
        pixels = [item["pixel_values"] for item in items if item["pixel_values"] is not None]
        if pixels and pixels[0].dim() == 5:  # LLaVA-NeXT: [k, P, 3, H, W], P differs: zero crops to the longest
            crops = max(p.shape[1] for p in pixels)
            pixels = [torch.nn.functional.pad(p, (0, 0, 0, 0, 0, 0, 0, crops - p.shape[1])) for p in pixels]
            batch["image_sizes"] = torch.cat(
                [item["image_sizes"] for item in items if item.get("image_sizes") is not None]
            )
        if pixels:
            batch["pixel_values"] = torch.cat(pixels)
        batch["skipped"] = [entry for item in items for entry in item["skipped"]]
        return batch
