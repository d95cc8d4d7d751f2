"""Re-lay token sequences for a variable number of visual tokens per image.

LLaVA's processor writes one run of ``N`` placeholder tokens per image (or, in older prompts, a
single ``<image>`` token); LLaVA-NeXT's writes a different count per image, which
:func:`placeholder_counts` recovers from the counts the stock model expects. After reduction
image ``i`` has ``n_i`` tokens, so ``input_ids``, ``attention_mask`` and ``labels`` are rebuilt
with exactly ``n_i`` placeholders for image ``i`` and re-padded on the same side. Pure tensor
code, batched: no Python loop over rows or images.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

IGNORE_INDEX = -100


@dataclass
class LaidOutBatch:
    """The rewritten batch. ``position_ids`` count only attended tokens (0 on padding)."""

    input_ids: torch.Tensor
    attention_mask: torch.Tensor
    position_ids: torch.Tensor
    labels: torch.Tensor | None


def placeholders_per_image(input_ids: torch.Tensor, image_token_id: int, num_images: int, expanded: int) -> int:
    """How many placeholder tokens stand for one image in ``input_ids``: ``expanded`` or 1.

    Raises ``ValueError`` naming the counts when the placeholders match neither layout.
    """
    found = int((input_ids == image_token_id).sum())
    if found == num_images * expanded:
        return expanded
    if found == num_images:
        return 1
    raise ValueError(
        f"input_ids hold {found} image placeholder tokens (id {image_token_id}) for {num_images} image(s); "
        f"expected {num_images * expanded} ({expanded} per image, as LlavaProcessor writes) or {num_images} "
        "(one per image)"
    )


def placeholder_counts(input_ids: torch.Tensor, image_token_id: int, expanded: torch.Tensor) -> torch.Tensor:
    """Placeholder tokens of each image in ``input_ids``: ``expanded`` ``[I]`` or one per image.

    ``expanded[i]`` is what the processor writes for image ``i`` (LLaVA-NeXT: it depends on the
    image's size). Adjacent images form one run of placeholders, so the split follows the total
    count, never the runs. Raises ``ValueError`` naming the counts when neither layout matches.
    """
    found = int((input_ids == image_token_id).sum())
    expanded = expanded.to(device="cpu", dtype=torch.long)
    if found == int(expanded.sum()):
        return expanded
    if found == expanded.numel():
        return torch.ones_like(expanded)
    raise ValueError(
        f"input_ids hold {found} image placeholder tokens (id {image_token_id}) for {expanded.numel()} image(s); "
        f"expected {int(expanded.sum())} ({expanded.tolist()} per image, as the processor writes) or "
        f"{expanded.numel()} (one per image)"
    )


def lay_out_image_tokens(
    input_ids: torch.Tensor,
    image_counts: torch.Tensor,
    image_token_id: int,
    per_image: int | torch.Tensor,
    attention_mask: torch.Tensor | None = None,
    labels: torch.Tensor | None = None,
    padding_side: str = "right",
    pad_token_id: int = 0,
) -> LaidOutBatch:
    """Give image ``i`` (in reading order over the batch) exactly ``image_counts[i]`` placeholders.

    Args:
        input_ids: ``[B, L]``, with ``per_image`` consecutive placeholders per image.
        image_counts: ``[I]`` tokens each image keeps after reduction.
        per_image: placeholders per image now, one count for all or ``[I]`` (:func:`placeholder_counts`).
        attention_mask: ``[B, L]``; positions with 0 are padding and dropped before re-padding.
        labels: ``[B, L]``; image positions become ``-100`` and padding ``-100``.
        padding_side: where the new padding goes (``"left"`` for generation).

    Returns:
        :class:`LaidOutBatch` of width ``max_b(new length of row b)``.
    """
    batch, _ = input_ids.shape
    device = input_ids.device
    if attention_mask is None:
        attention_mask = torch.ones_like(input_ids)
    attended = attention_mask.bool()
    is_image = input_ids == image_token_id
    if (is_image & ~attended).any():
        raise ValueError("attention_mask masks out image placeholder tokens; each image must be attended")

    ordinal = is_image.flatten().cumsum(0).view_as(input_ids) - 1
    last_image = max(image_counts.numel() - 1, 0)
    if isinstance(per_image, torch.Tensor):
        ends = per_image.to(device=device, dtype=torch.long).cumsum(0)
        image_index = torch.searchsorted(ends, ordinal, right=True).clamp(0, last_image)
        first_of_image = is_image & (ordinal == (ends - per_image.to(device))[image_index])
    else:
        image_index = (ordinal // per_image).clamp(0, last_image)
        first_of_image = is_image & (ordinal % per_image == 0)
    repeats = torch.where(first_of_image, image_counts.to(device)[image_index], (~is_image).long())
    repeats = repeats * attended

    new_lengths = repeats.sum(dim=1)
    width = int(new_lengths.max())
    flat_ids = input_ids.flatten().repeat_interleave(repeats.flatten())
    row = torch.arange(batch, device=device).repeat_interleave(new_lengths)
    starts = new_lengths.cumsum(0) - new_lengths
    column = torch.arange(flat_ids.numel(), device=device) - starts[row]
    if padding_side == "left":
        column = column + (width - new_lengths)[row]
    elif padding_side != "right":
        raise ValueError(f"padding_side={padding_side!r}: expected 'left' or 'right'")

    new_ids = torch.full((batch, width), pad_token_id, dtype=input_ids.dtype, device=device)
    new_ids[row, column] = flat_ids
    new_mask = torch.zeros((batch, width), dtype=attention_mask.dtype, device=device)
    new_mask[row, column] = 1
    position_ids = (new_mask.long().cumsum(dim=1) - 1).clamp(min=0)

    new_labels = None
    if labels is not None:
        flat_labels = labels.flatten().repeat_interleave(repeats.flatten())
        flat_labels = flat_labels.masked_fill(flat_ids == image_token_id, IGNORE_INDEX)
        new_labels = torch.full((batch, width), IGNORE_INDEX, dtype=labels.dtype, device=device)
        new_labels[row, column] = flat_labels
    return LaidOutBatch(new_ids, new_mask, position_ids, new_labels)


def infer_padding_side(attention_mask: torch.Tensor | None) -> str:
    """``"left"`` if some row starts with padding, else ``"right"``."""
    if attention_mask is not None and bool((attention_mask[:, 0] == 0).any()):
        return "left"
    return "right"


def restore_prompt(output, input_ids: torch.Tensor, laid_out_width: int):
    """``generate``'s output with each sequence's re-laid prompt (``laid_out_width`` columns)
    replaced by the caller's own ``input_ids``, so ``out[:, input_ids.shape[1]:]`` are the new
    tokens as with the stock model. ``output`` is a tensor or a generate output with ``sequences``."""
    sequences = output if isinstance(output, torch.Tensor) else output.sequences
    prompt = input_ids.repeat_interleave(sequences.shape[0] // input_ids.shape[0], dim=0)
    restored = torch.cat([prompt, sequences[:, laid_out_width:]], dim=1)
    if isinstance(output, torch.Tensor):
        return restored
    output.sequences = restored
    return output
