"""Check every sample of a LLaVA-format dataset exactly as training builds it (``scripts/validate_data.py``)."""

from __future__ import annotations

from collections import Counter

from ..conversation import MalformedSample
from .dataset import DataSettings, LlavaInstructionDataset


def validate_dataset(settings: DataSettings, tokenizer, image_processor, tokens_per_image: int, progress: bool = True):
    """Check every sample as training would; returns ``(problems, counts)``.

    ``problems`` is a list of ``(sample id, kind, message)`` with kind one of ``missing_image``,
    ``unreadable_image``, ``malformed``; ``counts`` tallies samples by outcome.
    """
    dataset = LlavaInstructionDataset(settings, tokenizer, image_processor, tokens_per_image)
    problems: list[tuple[str, str, str]] = []
    counts: Counter = Counter()
    iterator = range(len(dataset))
    if progress:
        from tqdm import tqdm

        iterator = tqdm(iterator, desc=f"validating {settings.data_path}", unit="sample")
    seen_ids: set[str] = set()
    for index in iterator:
        sample = dataset.samples[index]
        sample_id = str(sample.get("id", index)) if isinstance(sample, dict) else str(index)
        if sample_id in seen_ids:
            problems.append((sample_id, "malformed", "duplicate id"))
        seen_ids.add(sample_id)
        try:
            dataset.build(index)
        except MalformedSample as error:
            message = str(error)
            kind = (
                "missing_image"
                if message.startswith("image not found")
                else "unreadable_image"
                if message.startswith("unreadable image")
                else "malformed"
            )
            problems.append((sample_id, kind, message))
            counts[kind] += 1
        else:
            counts["ok"] += 1
            counts["with_image" if sample.get("image") else "text_only"] += 1
    return problems, counts
