"""`LlavaNextPruMergeForConditionalGeneration`: LLaVA-1.6 (AnyRes) with the reducers on every crop.

A thin subclass of transformers' ``LlavaNextForConditionalGeneration`` (follows
``transformers/models/llava_next/modeling_llava_next.py`` of transformers 5.24). The stock model
encodes every crop of an image (the base view of the whole image first, then the ``rows × cols``
grid crops; ``N`` patches each, 576 for CLIP-L/336), projects all patch tokens, then
``pack_image_features`` lays them out: the base crop's ``N`` tokens, then the grid crops as one
``[rows·s, cols·s]`` map (``s = √N``), cropped back to the image's aspect ratio by
``unpad_image``, one ``image_newline`` after every map row: up to 576 + 48·48 + 48 = 2,928 tokens
per image (a square photo on the 2×2 grid).

Here each crop's ``N`` patches are reduced exactly as a LLaVA-1.5 image (one batched
:func:`~llava_prumerge.models.vision.reduce_encoded` over all crops of all images: every method
and option of :class:`~llava_prumerge.TokenReductionConfig`, adaptive counts per crop, a budget per
crop), then projected and laid out as ``config.token_layout`` says:

- ``"grid"`` (default): the stock layout, restricted to the kept tokens. The base crop's tokens
  with a patch in raster order of their patches, then its tokens without one (the summary token
  of PruMerge/PruMerge+, VisionZip's CLS and contextual tokens, pooled tokens), in the reducer's
  order. Then the grid crops: a map of token slots (-1 = not kept) goes through the stock code's
  ``view``/``permute`` and ``unpad_image``, so each kept token lands at its patch's position; the
  map is read row-major with one ``image_newline`` after each row that holds a kept token (rows
  without one are dropped). Kept tokens whose patch lies in the padding that ``unpad_image`` cuts
  off are dropped, as the stock model drops those patches (``dropped_token_counts``). Then the
  grid crops' tokens without a patch, crop by crop. So ``visual_token_counts = Σ crop counts −
  dropped + newlines``; methods without patch indices (``pooling``) put all grid tokens after an
  empty grid.
- ``"flat"``: crop by crop (base first), each in the reducer's output order; no newlines, no
  unpadding, ``visual_token_counts = Σ crop counts`` (HiRED's PruMerge baseline).

A ``budget`` is per crop by default (``config.budget_split = "crop"``). With ``"image"`` it is the
image's total, split across its crops as HiRED does (Arif et al., AAAI 2025; ``HiRED_token_selection``
in its ``modeling_llava_next.py``): the base view gets ``round(base_share · budget)`` (HiRED's
``alpha``; default 0.5), the grid crops share the rest in proportion to the base view's CLS
attention mass over the part of the image each crop covers (the same CLS attention the reducers
read, of the block consuming the feature layer), by largest remainder so that the crops' budgets
add up to the budget exactly; every crop keeps at least the method's minimum (2 for PruMerge/
PruMerge+, 1 otherwise) and at most ``N``. Two departures from HiRED's code, both stated: HiRED
takes the mass from its first layer's attention, thresholded to the top ``(1 − alpha)·N`` patches,
and splits the base view's patch vector into consecutive chunks rather than spatial regions; here
a base-view patch at grid position ``(r, c)`` counts for the crop covering ``(r·rows/s, c·cols/s)``
(the base view is the whole image resized to a square, so this ignores the padding of the crop
canvas). Crops with the same budget are reduced in one batched call.

Inputs may hold the processor's placeholders (a different count per image, computed from
``image_sizes`` as the stock code computes it, :meth:`~LlavaNextPruMergeForConditionalGeneration.stock_token_counts`)
or one placeholder per image; ``forward`` and ``generate`` re-lay the batch for the reduced
counts (:mod:`~llava_prumerge.models.sequence`). ``method="none"`` with the processor's
placeholders runs the stock code unchanged.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from transformers import LlavaNextForConditionalGeneration
from transformers.modeling_outputs import BaseModelOutputWithPooling
from transformers.models.llava_next.modeling_llava_next import (
    LlavaNextCausalLMOutputWithPast,
    get_anyres_image_grid_shape,
    image_size_to_num_patches,
    unpad_image,
)

from ..config import MERGING_METHODS, resolve_reduction
from ..reduction import ReducedTokens, cls_attention
from .sequence import LaidOutBatch, infer_padding_side, lay_out_image_tokens, placeholder_counts, restore_prompt
from .vision import TokenReductionMixin, encode_for_reduction, reduce_encoded, valid_rows

TOKEN_LAYOUTS = ("grid", "flat")
BUDGET_SPLITS = ("crop", "image")
"""Whether ``TokenReductionConfig.budget`` is per crop or the image's total (module docstring)."""
"""How an image's reduced crop tokens are laid out for the language model (module docstring)."""

LEADING_TOKENS_WITHOUT_PATCH = {"visionzip": 1}
"""Output rows a method puts before its indexed tokens: VisionZip's output starts with the CLS."""


@dataclass
class ReducedNextImageFeatures(BaseModelOutputWithPooling):
    """``get_image_features`` output with a reduction.

    ``pooler_output``: per-image list of laid-out projected tokens (newlines included);
    ``last_hidden_state``: the reducer's tokens per crop ``[C, M, C_vision]`` (padded; already
    projected for ``divprune``). Per image ``[I]``: ``visual_token_counts`` (tokens the language
    model sees), ``newline_counts`` and ``dropped_token_counts`` (grid layout; 0 for flat).
    ``crop_token_counts``: a list per image of ``[P_i]`` tokens each crop's reducer kept (base
    first). Per crop, all images' crops in order: ``kept_indices`` ``[C, K]`` (patch index of
    each selected token, -1 past the selection), ``token_patch_indices`` ``[C, M]`` (patch of each
    output row, -1 for rows without one), ``cls_attention`` ``[C, N]``, ``attentive_counts`` ``[C]``.
    """

    visual_token_counts: torch.LongTensor | None = None
    crop_token_counts: list[torch.LongTensor] | None = None
    newline_counts: torch.LongTensor | None = None
    dropped_token_counts: torch.LongTensor | None = None
    kept_indices: torch.LongTensor | None = None
    token_patch_indices: torch.LongTensor | None = None
    cls_attention: torch.FloatTensor | None = None
    attentive_counts: torch.LongTensor | None = None


@dataclass
class LlavaNextPruMergeCausalLMOutputWithPast(LlavaNextCausalLMOutputWithPast):
    """``forward`` output. ``logits`` follow the re-laid sequence described by ``attention_mask``
    (``[B, L']``) and ``labels``; ``visual_token_counts`` ``[I]`` gives each image's tokens and
    ``crop_token_counts`` (a list per image of ``[P_i]``, ``None`` for ``method="none"``) each crop's."""

    attention_mask: torch.LongTensor | None = None
    labels: torch.LongTensor | None = None
    visual_token_counts: torch.LongTensor | None = None
    crop_token_counts: list[torch.LongTensor] | None = None


def split_largest_remainder(total: int, weights: torch.Tensor, least: int, most: int) -> list[int]:
    """``total`` split in proportion to ``weights``, each share in ``[least, most]``, summing to
    ``total`` exactly: every share starts at ``least``; the rest goes by the largest-remainder
    (Hamilton) rule, ties to the earlier crop; what a cap at ``most`` cuts off is split again
    among the others the same way. Needs ``least·k <= total <= most·k``."""
    count = len(weights)
    weights = weights.double().clamp(min=0)
    shares = [least] * count
    left = total - least * count
    while left > 0:
        free = [i for i in range(count) if shares[i] < most]
        mass = sum(float(weights[i]) for i in free)
        ideal = {i: left * (float(weights[i]) / mass if mass > 0 else 1 / len(free)) for i in free}
        give = {i: int(ideal[i]) for i in free}
        for i in sorted(free, key=lambda i: (-(ideal[i] - int(ideal[i])), i))[: left - sum(give.values())]:
            give[i] += 1
        left = 0
        for i in free:
            taken = min(give[i], most - shares[i])
            shares[i] += taken
            left += give[i] - taken
    return shares


def _merge_reduced(parts: list[tuple[list[int], ReducedTokens]], crops: int) -> ReducedTokens:
    """Per-budget reductions (``(crop indices, ReducedTokens)``) back into one, crops in order."""
    first = parts[0][1]
    width = max(r.tokens.shape[1] for _, r in parts)
    kept = max(r.indices.shape[1] for _, r in parts)
    device = first.tokens.device
    tokens = first.tokens.new_zeros(crops, width, first.tokens.shape[-1])
    lengths = torch.zeros(crops, dtype=torch.long, device=device)
    indices = torch.full((crops, kept), -1, dtype=torch.long, device=device)
    scores = None if first.scores is None else first.scores.new_zeros(crops, first.scores.shape[1])
    attentive = None if first.attentive is None else torch.zeros(crops, dtype=torch.long, device=device)
    for members, reduced in parts:
        rows = torch.tensor(members, device=device)
        tokens[rows, : reduced.tokens.shape[1]] = reduced.tokens
        lengths[rows] = reduced.lengths
        indices[rows, : reduced.indices.shape[1]] = reduced.indices
        if scores is not None:
            scores[rows] = reduced.scores
        if attentive is not None:
            attentive[rows] = reduced.attentive
    return ReducedTokens(tokens, lengths, indices, scores, attentive, projected=first.projected)


def token_patch_indices(reduced: ReducedTokens, method: str) -> torch.Tensor:
    """Patch index of every output row of ``reduced`` ``[C, M]``: -1 for rows without a patch
    (summary, CLS, contextual and pooled tokens) and for padding rows.

    ``reduced.indices`` lists the selected patches in output order; they are the rows from
    ``LEADING_TOKENS_WITHOUT_PATCH[method]`` (0 for all but visionzip) on.
    """
    crops, width = reduced.tokens.shape[:2]
    offset = LEADING_TOKENS_WITHOUT_PATCH.get(method, 0)
    indexed = min(reduced.indices.shape[1], max(width - offset, 0))
    patches = torch.full((crops, width), -1, dtype=torch.long, device=reduced.tokens.device)
    patches[:, offset : offset + indexed] = reduced.indices[:, :indexed]
    return patches.masked_fill(~valid_rows(reduced.lengths, width), -1)


def grid_token_order(
    patches: torch.Tensor,
    valid: torch.Tensor,
    token_ids: torch.Tensor,
    grid_shape: tuple[int, int],
    side: int,
    image_size: torch.Tensor | tuple[int, int],
    newline_id: int,
) -> tuple[torch.Tensor, int, int]:
    """The grid layout of one image: which token goes where.

    Args:
        patches: ``[P, M]`` patch index of each output row of the image's ``P`` crops (base first),
            -1 for rows without a patch (:func:`token_patch_indices`).
        valid: ``[P, M]`` rows that are tokens (not padding).
        token_ids: ``[P, M]`` id of each row's token in the feature table.
        grid_shape: ``(rows, cols)`` of grid crops (``P - 1 = rows · cols``).
        side: patches per crop side (``N = side²``).
        image_size: ``(height, width)`` of the original image, for ``unpad_image``.
        newline_id: id of ``image_newline`` in the feature table.

    Returns:
        ``(order [L], newlines, dropped)``: feature-table ids in sequence order, the number of
        newlines among them, and the kept grid tokens cut off with the padding.
    """
    rows, cols = grid_shape
    base_kept = valid[0] & (patches[0] >= 0)
    base = token_ids[0][base_kept][patches[0][base_kept].argsort()]
    base_extra = token_ids[0][valid[0] & (patches[0] < 0)]

    grid_patches, grid_valid, grid_ids = patches[1:], valid[1:], token_ids[1:]
    kept = grid_valid & (grid_patches >= 0)
    crop = torch.arange(rows * cols, device=patches.device)[:, None].expand_as(grid_patches)
    slots = torch.full((rows * cols, side * side), -1, dtype=torch.long, device=patches.device)
    slots[crop[kept], grid_patches[kept]] = grid_ids[kept]
    # the stock pack_image_features' reshape of [rows·cols, N, D] crops into the [D, rows·s, cols·s] map
    slot_map = slots.view(rows, cols, side, side, 1).permute(4, 0, 2, 1, 3).flatten(1, 2).flatten(2, 3)
    slot_map = unpad_image(slot_map, image_size)[0]
    row_has_token = (slot_map >= 0).any(dim=1)
    newline = torch.full((slot_map.shape[0], 1), newline_id, dtype=torch.long, device=patches.device)
    grid = torch.cat([slot_map, newline], dim=1)[row_has_token].flatten()
    grid = grid[grid >= 0]
    grid_extra = grid_ids[grid_valid & (grid_patches < 0)]
    dropped = int(kept.sum()) - int((slot_map >= 0).sum())
    return torch.cat([base, base_extra, grid, grid_extra]), int(row_has_token.sum()), dropped


class LlavaNextPruMergeForConditionalGeneration(TokenReductionMixin, LlavaNextForConditionalGeneration):
    """LLaVA-NeXT whose crops reach the language model as PruMerge/PruMerge+ (or peer) tokens.

    Loads ``llava-hf/llava-v1.6-{vicuna,mistral}-7b-hf`` unchanged::

        model = LlavaNextPruMergeForConditionalGeneration.from_pretrained(
            "llava-hf/llava-v1.6-vicuna-7b-hf", token_reduction="prumerge_plus", token_layout="grid")

    The vision tower must be a ``CLIPVisionModel`` with ``vision_feature_select_strategy="default"``
    and an integer ``vision_feature_layer`` that some block consumes (-2). The processor must count
    the CLS it drops (``num_additional_image_tokens=1``, as llava-hf's processor configs say), or
    its placeholders and the stock features disagree.
    """

    def __init__(self, config):
        super().__init__(config)
        self.set_token_layout(getattr(config, "token_layout", None) or "grid")
        self.set_budget_split(getattr(config, "budget_split", None) or "crop", getattr(config, "base_share", 0.5))

    @classmethod
    def from_pretrained(
        cls, *args, token_layout: str | None = None, budget_split: str | None = None, base_share=None, **kwargs
    ):
        """``from_pretrained`` (with ``token_reduction=``), plus ``token_layout``, ``budget_split`` and
        ``base_share`` to override the saved ones."""
        model = super().from_pretrained(*args, **kwargs)
        if token_layout is not None:
            model.set_token_layout(token_layout)
        if budget_split is not None or base_share is not None:
            model.set_budget_split(budget_split or model.config.budget_split, base_share)
        return model

    def set_budget_split(self, budget_split: str, base_share: float | None = None) -> None:
        """``"crop"`` (a budget per crop) or ``"image"`` (the image's total, split HiRED's way with
        ``base_share`` of it to the base view); saved with the model."""
        if budget_split not in BUDGET_SPLITS:
            raise ValueError(f"budget_split={budget_split!r}: expected one of {BUDGET_SPLITS}")
        share = getattr(self.config, "base_share", 0.5) if base_share is None else base_share
        if isinstance(share, bool) or not isinstance(share, (int, float)) or not 0 < share < 1:
            raise ValueError(f"base_share={share!r}: expected a number between 0 and 1 (exclusive)")
        self.config.budget_split, self.config.base_share = budget_split, float(share)

    @property
    def token_layout(self) -> str:
        """``"grid"`` or ``"flat"`` (module docstring), saved in ``config.token_layout``."""
        return self.config.token_layout

    def set_token_layout(self, token_layout: str) -> None:
        """Switch the layout (``"grid"`` or ``"flat"``); it is saved with the model from now on."""
        if token_layout not in TOKEN_LAYOUTS:
            raise ValueError(f"token_layout={token_layout!r}: expected one of {TOKEN_LAYOUTS}")
        self.config.token_layout = token_layout

    # ----------------------------------------------------------------------------------------
    # Vision side
    # ----------------------------------------------------------------------------------------
    def _side(self) -> int:
        vision = self.config.vision_config
        return vision.image_size // vision.patch_size

    def crops_per_image(self, image_sizes: torch.Tensor) -> list[int]:
        """Crops of each image (base + grid), from ``image_sizes [I, 2]`` as the stock code counts them."""
        pinpoints, crop_size = self.config.image_grid_pinpoints, self.config.vision_config.image_size
        return [image_size_to_num_patches(size, pinpoints, crop_size) for size in image_sizes]

    def stock_token_counts(self, image_sizes: torch.Tensor) -> torch.Tensor:
        """Tokens the stock model feeds for each image ``[I]`` (and the processor writes placeholders
        for): the base crop's ``N``, the unpadded grid map, one newline per map row. ``default``
        strategy (the CLS dropped), the only one the stock packing supports with a CLS tower."""
        side = self._side()
        pinpoints, crop_size = self.config.image_grid_pinpoints, self.config.vision_config.image_size
        counts = []
        for size in image_sizes:
            rows, cols = get_anyres_image_grid_shape(size, pinpoints, crop_size)
            height, width = unpad_image(torch.empty(0, rows * side, cols * side), size).shape[1:]
            counts.append(side * side + height * width + height)
        return torch.tensor(counts, dtype=torch.long)

    def _check_strategy(self, vision_feature_select_strategy: str | None) -> None:
        if self.config.vision_feature_select_strategy != "default" or vision_feature_select_strategy not in (
            None,
            "default",
        ):
            raise ValueError("token reduction needs vision_feature_select_strategy='default' (CLS dropped)")

    def flatten_crops(self, pixel_values: torch.Tensor, image_sizes: torch.Tensor) -> tuple[torch.Tensor, list[int]]:
        """All crops ``[C, 3, H, W]`` in image order (``pixel_values [I, P_max, 3, H, W]`` holds zero
        crops past each image's count, as the processor pads), and the crops per image."""
        crops = self.crops_per_image(image_sizes)
        if pixel_values.dim() == 5:
            return torch.cat([pixels[:count] for pixels, count in zip(pixel_values, crops)]), crops
        if pixel_values.dim() != 4 or pixel_values.shape[0] != sum(crops):
            raise ValueError(
                f"pixel_values {tuple(pixel_values.shape)} do not hold the {sum(crops)} crops of image_sizes"
            )
        return pixel_values, crops

    def reduce_crop_tokens(
        self, pixel_values: torch.Tensor, image_sizes: torch.Tensor, vision_feature_layer: int | None = None
    ) -> tuple[ReducedTokens, list[int]]:
        """Encode every crop and reduce its patch tokens (one batched call; before the projector,
        except ``divprune``). Returns the per-crop :class:`~llava_prumerge.reduction.ReducedTokens`
        (all images' crops in order) and the crops per image."""
        crops, per_image = self.flatten_crops(pixel_values, image_sizes)
        layer = self.config.vision_feature_layer if vision_feature_layer is None else vision_feature_layer
        projector = self.model.multi_modal_projector
        config = self.token_reduction
        if self.config.budget_split == "crop":
            reduced, _ = reduce_encoded(self.model.vision_tower, crops, layer, config, projector=projector)
            return reduced, per_image
        budgets = self.crop_budgets(crops, image_sizes, per_image, layer)
        parts = {}
        for value in sorted(set(budgets)):  # one batched reduction per distinct crop budget
            members = [i for i, b in enumerate(budgets) if b == value]
            sub = resolve_reduction(config, value)
            parts[value] = (
                members,
                reduce_encoded(self.model.vision_tower, crops[members], layer, sub, projector=projector)[0],
            )
        return _merge_reduced(list(parts.values()), len(budgets)), per_image

    def crop_budgets(
        self, crops: torch.Tensor, image_sizes: torch.Tensor, per_image: list[int], layer: int
    ) -> list[int]:
        """Each crop's budget when ``budget_split="image"`` (module docstring), crops in order."""
        config = self.token_reduction
        if config.budget is None:
            raise ValueError("budget_split='image' splits a budget: set TokenReductionConfig.budget (per image)")
        side, n = self._side(), self._side() ** 2
        least = 2 if config.method in MERGING_METHODS else 1
        starts = [sum(per_image[:i]) for i in range(len(per_image))]
        hidden, queries, keys = encode_for_reduction(self.model.vision_tower, crops[starts], layer)
        mass = cls_attention(queries, keys, config.attention, self.config.vision_config.num_attention_heads)
        budgets = []
        for image, count in enumerate(per_image):
            total = config.budget
            if count == 1:
                budgets.append(min(total, n))
                continue
            rows, cols = get_anyres_image_grid_shape(
                image_sizes[image], self.config.image_grid_pinpoints, self.config.vision_config.image_size
            )
            base = min(max(round(self.config.base_share * total), least), n)
            rest, grid = total - base, count - 1
            if rest < least * grid or rest > n * grid:
                raise ValueError(
                    f"budget={total} per image: the base view's {base} leave {rest} for {grid} crops, each of "
                    f"which keeps {least}..{n} tokens"
                )
            region = (torch.arange(side) * rows // side)[:, None] * cols + (torch.arange(side) * cols // side)[None, :]
            weights = torch.zeros(grid, dtype=torch.float64).index_add_(
                0, region.flatten().to(mass.device), mass[image].double()
            )
            budgets += [base, *split_largest_remainder(rest, weights.cpu(), least, n)]
        return budgets

    def get_image_features(
        self,
        pixel_values: torch.Tensor,
        image_sizes: torch.Tensor,
        vision_feature_layer: int | list[int] | None = None,
        vision_feature_select_strategy: str | None = None,
        **kwargs,
    ) -> ReducedNextImageFeatures | BaseModelOutputWithPooling:
        """Projected visual tokens per image, laid out as ``config.token_layout`` says.

        ``method="none"`` is upstream's method unchanged (the stock packing of all tokens).
        """
        if self.token_reduction.method == "none":
            return super().get_image_features(
                pixel_values=pixel_values,
                image_sizes=image_sizes,
                vision_feature_layer=vision_feature_layer,
                vision_feature_select_strategy=vision_feature_select_strategy,
                **kwargs,
            )
        self._check_strategy(vision_feature_select_strategy)
        if image_sizes is None:
            raise ValueError("LLaVA-NeXT needs image_sizes to know each image's crops")
        reduced, per_image = self.reduce_crop_tokens(pixel_values, image_sizes, vision_feature_layer)
        lengths, width = reduced.lengths, reduced.tokens.shape[1]
        valid = valid_rows(lengths, width)
        tokens = reduced.tokens[valid]
        projected = tokens if reduced.projected else self.model.multi_modal_projector(tokens)
        patches = token_patch_indices(reduced, self.token_reduction.method)
        crop_counts = list(lengths.split(per_image))
        images = len(per_image)
        newlines = torch.zeros(images, dtype=torch.long)
        dropped = torch.zeros(images, dtype=torch.long)
        if self.token_layout == "flat":
            features = list(projected.split([int(counts.sum()) for counts in crop_counts]))
        else:
            token_ids = (valid.flatten().cumsum(0) - 1).view_as(valid)
            table = torch.cat([projected, self.model.image_newline[None].to(projected)])
            side = self._side()
            pinpoints, crop_size = self.config.image_grid_pinpoints, self.config.vision_config.image_size
            features = []
            starts = [sum(per_image[:index]) for index in range(images)]
            for index, (start, count) in enumerate(zip(starts, per_image)):
                size = image_sizes[index]
                order, newlines[index], dropped[index] = grid_token_order(
                    patches[start : start + count],
                    valid[start : start + count],
                    token_ids[start : start + count],
                    get_anyres_image_grid_shape(size, pinpoints, crop_size),
                    side,
                    size,
                    newline_id=projected.shape[0],
                )
                features.append(table[order])
        return ReducedNextImageFeatures(
            last_hidden_state=reduced.tokens,
            pooler_output=features,
            visual_token_counts=torch.tensor([len(feature) for feature in features], dtype=torch.long),
            crop_token_counts=crop_counts,
            newline_counts=newlines,
            dropped_token_counts=dropped,
            kept_indices=reduced.indices,
            token_patch_indices=patches,
            cls_attention=reduced.scores,
            attentive_counts=reduced.attentive,
        )

    # ----------------------------------------------------------------------------------------
    # Language side
    # ----------------------------------------------------------------------------------------
    def _runs_stock(self, input_ids: torch.Tensor | None, image_sizes: torch.Tensor | None) -> bool:
        """``method="none"`` with the processor's placeholders: the stock code runs, untouched.
        (With one placeholder per image, ``none`` goes through the re-laying path instead.)"""
        if self.token_reduction.method != "none":
            return False
        if input_ids is None or image_sizes is None:
            return True
        found = int((input_ids == self.config.image_token_id).sum())
        return found == int(self.stock_token_counts(image_sizes).sum())

    def encode_and_lay_out(
        self,
        input_ids: torch.Tensor,
        pixel_values: torch.Tensor,
        image_sizes: torch.Tensor,
        attention_mask: torch.Tensor | None,
        labels: torch.Tensor | None,
        padding_side: str,
        vision_feature_layer: int | list[int] | None = None,
    ) -> tuple[ReducedNextImageFeatures | BaseModelOutputWithPooling, LaidOutBatch | None]:
        """Encode and reduce the images, then re-lay the batch for the reduced counts.

        Returns ``(features, laid_out)``: the image features and the rewritten batch, ``None`` when
        the placeholders already match the counts. The placeholders of image ``i`` are either
        :meth:`stock_token_counts` ``[i]`` (the processor's) or one.
        """
        if input_ids is None:
            raise ValueError("pixel_values with inputs_embeds is not supported: pass input_ids with image placeholders")
        if image_sizes is None:
            raise ValueError("LLaVA-NeXT needs image_sizes to know each image's crops")
        image_token_id = self.config.image_token_id
        per_image = placeholder_counts(input_ids, image_token_id, self.stock_token_counts(image_sizes))
        features = self.get_image_features(
            pixel_values=pixel_values, image_sizes=image_sizes, vision_feature_layer=vision_feature_layer
        )
        counts = torch.tensor([len(feature) for feature in features.pooler_output], dtype=torch.long)
        if torch.equal(counts, per_image):
            return features, None
        pad_token_id = self.config.text_config.pad_token_id
        laid_out = lay_out_image_tokens(
            input_ids,
            counts.to(input_ids.device),
            image_token_id,
            per_image,
            attention_mask=attention_mask,
            labels=labels,
            padding_side=padding_side,
            pad_token_id=0 if pad_token_id is None else pad_token_id,
        )
        return features, laid_out

    def forward(
        self,
        input_ids: torch.LongTensor | None = None,
        pixel_values: torch.Tensor | None = None,
        image_sizes: torch.LongTensor | None = None,
        attention_mask: torch.Tensor | None = None,
        position_ids: torch.LongTensor | None = None,
        cache=None,
        inputs_embeds: torch.Tensor | None = None,
        vision_feature_layer: int | list[int] | None = None,
        vision_feature_select_strategy: str | None = None,
        labels: torch.LongTensor | None = None,
        use_cache: bool | None = None,
        logits_to_keep: int | torch.Tensor = 0,
        mm_encoder_outputs: dict | None = None,
        **kwargs,
    ) -> LlavaNextPruMergeCausalLMOutputWithPast:
        """Upstream ``forward`` on the re-laid batch (see the module docstring).

        With images (and not the stock path), ``position_ids`` are recomputed from the new
        ``attention_mask`` (any passed in refer to the old layout); the output carries the new mask,
        labels and token counts.
        """
        common = dict(
            cache=cache,
            vision_feature_select_strategy=vision_feature_select_strategy,
            use_cache=use_cache,
            logits_to_keep=logits_to_keep,
            **kwargs,
        )
        if pixel_values is None or self._runs_stock(input_ids, image_sizes):
            return super().forward(
                input_ids=input_ids,
                pixel_values=pixel_values,
                image_sizes=image_sizes,
                attention_mask=attention_mask,
                position_ids=position_ids,
                inputs_embeds=inputs_embeds,
                vision_feature_layer=vision_feature_layer,
                labels=labels,
                mm_encoder_outputs=mm_encoder_outputs,
                **common,
            )
        features, laid_out = self.encode_and_lay_out(
            input_ids,
            pixel_values,
            image_sizes,
            attention_mask,
            labels,
            infer_padding_side(attention_mask),
            vision_feature_layer,
        )
        if laid_out is not None:
            input_ids, attention_mask, position_ids = laid_out.input_ids, laid_out.attention_mask, laid_out.position_ids
            labels = laid_out.labels
        outputs = super().forward(
            input_ids=input_ids,
            attention_mask=attention_mask,
            position_ids=position_ids,
            labels=labels,
            mm_encoder_outputs={"image": features},
            **common,
        )
        return LlavaNextPruMergeCausalLMOutputWithPast(
            **outputs,
            attention_mask=attention_mask,
            labels=labels,
            visual_token_counts=torch.tensor([len(f) for f in features.pooler_output], device=outputs.logits.device),
            crop_token_counts=getattr(features, "crop_token_counts", None),
        )

    @torch.no_grad()
    def generate(
        self,
        input_ids: torch.LongTensor | None = None,
        pixel_values: torch.Tensor | None = None,
        image_sizes: torch.LongTensor | None = None,
        attention_mask: torch.Tensor | None = None,
        **kwargs,
    ):
        """Upstream ``generate`` on the re-laid (left-padded) prompt.

        The images are encoded and reduced once, before prefill. The returned sequences start
        with the caller's own ``input_ids``, so ``out[:, input_ids.shape[1]:]`` are the new tokens
        exactly as with the stock model. With ``return_dict_in_generate=True`` the output also
        carries ``visual_token_counts`` ``[I]`` and ``crop_token_counts`` (a list per image;
        ``None`` for ``method="none"``).
        """
        if pixel_values is None:
            return super().generate(input_ids=input_ids, attention_mask=attention_mask, **kwargs)
        if self._runs_stock(input_ids, image_sizes):
            output = super().generate(
                input_ids=input_ids,
                pixel_values=pixel_values,
                image_sizes=image_sizes,
                attention_mask=attention_mask,
                **kwargs,
            )
            if not isinstance(output, torch.Tensor) and image_sizes is not None:
                output.visual_token_counts, output.crop_token_counts = self.stock_token_counts(image_sizes), None
            return output
        features, laid_out = self.encode_and_lay_out(
            input_ids, pixel_values, image_sizes, attention_mask, None, "left", kwargs.pop("vision_feature_layer", None)
        )
        counts = torch.tensor([len(f) for f in features.pooler_output])
        crop_counts = getattr(features, "crop_token_counts", None)
        kwargs.pop("position_ids", None)
        prompt_ids, prompt_mask = input_ids, attention_mask
        if laid_out is not None:
            prompt_ids, prompt_mask = laid_out.input_ids, laid_out.attention_mask
        output = super().generate(
            input_ids=prompt_ids, attention_mask=prompt_mask, mm_encoder_outputs={"image": features}, **kwargs
        )
        output = restore_prompt(output, input_ids, prompt_ids.shape[1])
        if isinstance(output, torch.Tensor):
            return output
        output.visual_token_counts, output.crop_token_counts = counts, crop_counts
        return output
