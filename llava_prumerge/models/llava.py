"""`LlavaPruMergeForConditionalGeneration`: LLaVA-1.5 with PruMerge / PruMerge+ visual tokens.

A thin subclass of transformers' ``LlavaForConditionalGeneration`` (follows
``transformers/models/llava/modeling_llava.py`` of transformers 5.24). It overrides four things:

- ``get_image_features``: encodes with the CLIP tower up to the feature layer, reduces the patch
  tokens (:func:`llava_prumerge.reduce_visual_tokens`), then projects; same contract as upstream
  (``pooler_output`` is a per-image list, ``n_i`` rows for image ``i``).
- ``forward`` and ``generate``: re-lay ``input_ids``/``attention_mask``/``labels``/positions so that
  image ``i`` has ``n_i`` placeholder tokens, then run the unchanged language model.
- ``from_pretrained``: accepts ``token_reduction=`` to override the saved reduction.

The reduction config lives in ``model.config.token_reduction`` (a dict) and is saved with the
model. ``method="none"`` never touches the stock code path.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from transformers import LlavaForConditionalGeneration
from transformers.modeling_outputs import BaseModelOutputWithPooling
from transformers.models.llava.modeling_llava import LlavaCausalLMOutputWithPast

from ..reduction import ReducedTokens
from .sequence import infer_padding_side, lay_out_image_tokens, placeholders_per_image, restore_prompt
from .vision import TokenReductionMixin, encode_for_reduction, reduce_encoded, valid_rows


@dataclass
class ReducedImageFeatures(BaseModelOutputWithPooling):
    """``get_image_features`` output. ``pooler_output``: per-image list of projected tokens.

    ``visual_token_counts`` ``[I]``: tokens per image; ``kept_indices`` ``[I, K]``: patch index of
    each selected token (-1 past the selection); ``cls_attention`` ``[I, N]``: the scores used;
    ``attentive_counts`` ``[I]``: how many leading ``kept_indices`` were chosen by attention (the
    rest are PruMerge+ spatial samples).
    """

    visual_token_counts: torch.LongTensor | None = None
    kept_indices: torch.LongTensor | None = None
    cls_attention: torch.FloatTensor | None = None
    attentive_counts: torch.LongTensor | None = None


@dataclass
class LlavaPruMergeCausalLMOutputWithPast(LlavaCausalLMOutputWithPast):
    """``forward`` output. ``logits`` follow the re-laid sequence described by ``attention_mask``
    (``[B, L']``) and ``labels``; ``visual_token_counts`` ``[I]`` gives each image's tokens."""

    attention_mask: torch.LongTensor | None = None
    labels: torch.LongTensor | None = None
    visual_token_counts: torch.LongTensor | None = None


class LlavaPruMergeForConditionalGeneration(TokenReductionMixin, LlavaForConditionalGeneration):
    """LLaVA-1.5 whose images reach the language model as PruMerge/PruMerge+ tokens.

    Loads ``llava-hf/llava-1.5-{7b,13b}-hf`` unchanged::

        model = LlavaPruMergeForConditionalGeneration.from_pretrained(
            "llava-hf/llava-1.5-7b-hf", token_reduction=TokenReductionConfig(method="prumerge_plus"))

    Inputs may hold the processor's ``N`` placeholders per image or one per image; batches may mix
    images, several images per prompt and text-only rows. The vision tower must be a
    ``CLIPVisionModel`` with ``vision_feature_select_strategy="default"`` and an integer
    ``vision_feature_layer`` that some block consumes (LLaVA-1.5: -2).
    """

    text_only_dummy_image: bool | None = None
    """Run the vision side on a zero image for batches without images while training: ``None`` in
    multi-process runs only (see :meth:`runs_dummy_image`), ``True`` always, ``False`` never."""

    # ----------------------------------------------------------------------------------------
    # Vision side
    # ----------------------------------------------------------------------------------------
    def encode_for_reduction(
        self, pixel_values: torch.Tensor, vision_feature_layer: int | None = None, with_qk: bool = True
    ) -> tuple[torch.Tensor, torch.Tensor | None, torch.Tensor | None]:
        """Patch features ``[I, N, C]`` of the feature layer and the q/k ``[I, N+1, C]`` of the
        block that consumes it (spec Sec. 1; :func:`~llava_prumerge.models.vision.encode_for_reduction`).

        Runs the CLIP blocks up to the feature layer only; of the consuming block just
        ``layer_norm1`` and the q/k projections, so no attention map is needed and SDPA /
        FlashAttention towers work.
        """
        self._check_strategy()
        layer = self.config.vision_feature_layer if vision_feature_layer is None else vision_feature_layer
        hidden, queries, keys = encode_for_reduction(self.model.vision_tower, pixel_values, layer, with_qk)
        return hidden[:, 1:], queries, keys

    def _check_strategy(self) -> None:
        if self.config.vision_feature_select_strategy != "default":
            raise ValueError(
                "token reduction needs vision_feature_select_strategy='default' (CLS dropped), "
                f"got {self.config.vision_feature_select_strategy!r}"
            )

    def reduce_image_tokens(self, pixel_values: torch.Tensor, vision_feature_layer: int | None = None) -> ReducedTokens:
        """Encode ``pixel_values [I, 3, H, W]`` and reduce the patch tokens (before the projector)."""
        self._check_strategy()
        layer = self.config.vision_feature_layer if vision_feature_layer is None else vision_feature_layer
        projector = self.model.multi_modal_projector
        return reduce_encoded(self.model.vision_tower, pixel_values, layer, self.token_reduction, projector=projector)[
            0
        ]

    def get_image_features(
        self,
        pixel_values: torch.Tensor,
        vision_feature_layer: int | list[int] | None = None,
        vision_feature_select_strategy: str | None = None,
        **kwargs,
    ) -> ReducedImageFeatures | BaseModelOutputWithPooling:
        """Projected visual tokens per image; with a reduction, ``n_i`` rows for image ``i``.

        ``method="none"`` is upstream's method unchanged (all ``N`` tokens).
        """
        if self.token_reduction.method == "none":
            return super().get_image_features(
                pixel_values=pixel_values,
                vision_feature_layer=vision_feature_layer,
                vision_feature_select_strategy=vision_feature_select_strategy,
                **kwargs,
            )
        if vision_feature_select_strategy not in (None, self.config.vision_feature_select_strategy):
            raise ValueError("vision_feature_select_strategy cannot be overridden per call with token reduction")
        if kwargs.get("image_sizes") is not None:
            raise ValueError("image_sizes (variable-resolution inputs) are not supported with token reduction")
        reduced = self.reduce_image_tokens(pixel_values, vision_feature_layer)
        lengths = reduced.lengths
        valid = valid_rows(lengths, reduced.tokens.shape[1])
        projected = (
            reduced.tokens[valid] if reduced.projected else self.model.multi_modal_projector(reduced.tokens[valid])
        )
        return ReducedImageFeatures(
            last_hidden_state=reduced.tokens,
            pooler_output=list(projected.split(lengths.tolist())),
            visual_token_counts=lengths,
            kept_indices=reduced.indices,
            cls_attention=reduced.scores,
            attentive_counts=reduced.attentive,
        )

    def runs_dummy_image(self) -> bool:
        """Whether a batch without images still runs the vision side (:meth:`dummy_visual_sum`).

        :attr:`text_only_dummy_image` ``None`` (the default) means: while training with gradients in
        a multi-process run (``torch.distributed`` initialised, world size > 1). Then a rank whose
        micro-batch is text-only runs the same modules as ranks with images, which ZeRO-3 needs (each
        module's parameters are all-gathered by every rank in the same order; a rank that skips the
        vision tower and projector leaves the others waiting: a hang) and which DDP without
        ``find_unused_parameters`` needs too. LLaVA does the same by giving text-only samples a zero
        image. Single-process runs and evaluation never pay for it. ``True``/``False`` force it on/off
        while training.
        """
        if not (self.training and torch.is_grad_enabled()):
            return False
        if self.text_only_dummy_image is not None:
            return bool(self.text_only_dummy_image)
        distributed = torch.distributed.is_available() and torch.distributed.is_initialized()
        return distributed and torch.distributed.get_world_size() > 1

    def dummy_visual_sum(self, vision_feature_layer: int | list[int] | None = None) -> torch.Tensor:
        """Vision tower + reduction + projector on one zero image (the mean colour after CLIP
        normalisation); the sum of the projected tokens, to be added times 0 to the loss."""
        vision = self.config.vision_config
        tower = self.model.vision_tower
        parameter = next(tower.parameters())
        pixels = torch.zeros(1, 3, vision.image_size, vision.image_size, dtype=parameter.dtype, device=parameter.device)
        features = self.get_image_features(pixel_values=pixels, vision_feature_layer=vision_feature_layer)
        projected = features.pooler_output
        projected = torch.cat(list(projected)) if isinstance(projected, (list, tuple)) else projected
        return projected.float().sum()

    # ----------------------------------------------------------------------------------------
    # Language side
    # ----------------------------------------------------------------------------------------
    def _placeholders_per_image(self, input_ids: torch.Tensor, num_images: int) -> int:
        vision = self.config.vision_config
        expanded = (vision.image_size // vision.patch_size) ** 2
        if self.config.vision_feature_select_strategy == "full":
            expanded += 1
        return placeholders_per_image(input_ids, self.config.image_token_id, num_images, expanded)

    def encode_and_lay_out(
        self,
        input_ids: torch.Tensor,
        pixel_values: torch.Tensor,
        attention_mask: torch.Tensor | None,
        labels: torch.Tensor | None,
        padding_side: str,
        vision_feature_layer: int | list[int] | None,
    ):
        """Encode and reduce the images, then re-lay the batch for the reduced counts.

        Returns ``(features, laid_out)``: :class:`ReducedImageFeatures` (or upstream's output for
        ``method="none"``) and a :class:`~llava_prumerge.models.sequence.LaidOutBatch`, or ``None`` when the
        placeholders already match the counts. ``forward``/``generate`` call this; benchmarks use it
        to time the language model alone.
        """
        if input_ids is None:
            raise ValueError("pixel_values with inputs_embeds is not supported: pass input_ids with image placeholders")
        per_image = self._placeholders_per_image(input_ids, pixel_values.shape[0])
        features = self.get_image_features(pixel_values=pixel_values, vision_feature_layer=vision_feature_layer)
        counts = torch.tensor([len(f) for f in features.pooler_output], device=input_ids.device)
        if per_image == len(features.pooler_output[0]) and bool((counts == per_image).all()):
            return features, None
        pad_token_id = self.config.text_config.pad_token_id
        laid_out = lay_out_image_tokens(
            input_ids,
            counts,
            self.config.image_token_id,
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
        attention_mask: torch.Tensor | None = None,
        position_ids: torch.LongTensor | None = None,
        cache=None,
        inputs_embeds: torch.Tensor | None = None,
        vision_feature_layer: int | list[int] | None = None,
        vision_feature_select_strategy: str | None = None,
        labels: torch.LongTensor | None = None,
        logits_to_keep: int | torch.Tensor = 0,
        image_sizes: torch.Tensor | None = None,
        mm_encoder_outputs: dict | None = None,
        **kwargs,
    ) -> LlavaPruMergeCausalLMOutputWithPast:
        """Upstream ``forward`` on the re-laid batch (see the class docstring).

        With images, ``position_ids`` are recomputed from the new ``attention_mask`` (any passed
        in refer to the old layout); the output carries the new mask, labels and token counts.
        Without images, while training in a multi-process run, the vision side still runs on a zero
        image and adds ``0 ·`` its output to the loss (:meth:`runs_dummy_image`).
        """
        common = dict(
            cache=cache,
            vision_feature_select_strategy=vision_feature_select_strategy,
            logits_to_keep=logits_to_keep,
            image_sizes=image_sizes,
            **kwargs,
        )
        if pixel_values is None:
            # Same modules on every rank: the dummy image runs before the language model, as real images do.
            dummy = self.dummy_visual_sum(vision_feature_layer) if self.runs_dummy_image() else None
            outputs = super().forward(
                input_ids=input_ids,
                attention_mask=attention_mask,
                position_ids=position_ids,
                inputs_embeds=inputs_embeds,
                vision_feature_layer=vision_feature_layer,
                labels=labels,
                mm_encoder_outputs=mm_encoder_outputs,
                **common,
            )
            if dummy is not None:  # + 0: the same value and gradients, but the vision side is in the graph
                if outputs.loss is not None:
                    outputs["loss"] = outputs.loss + 0.0 * dummy
                else:
                    outputs["logits"] = outputs.logits + 0.0 * dummy.to(outputs.logits.dtype)
            return outputs
        features, laid_out = self.encode_and_lay_out(
            input_ids, pixel_values, attention_mask, labels, infer_padding_side(attention_mask), vision_feature_layer
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
        return LlavaPruMergeCausalLMOutputWithPast(
            **outputs,
            attention_mask=attention_mask,
            labels=labels,
            visual_token_counts=torch.tensor([len(f) for f in features.pooler_output], device=outputs.logits.device),
        )

    @torch.no_grad()
    def generate(
        self,
        input_ids: torch.LongTensor | None = None,
        pixel_values: torch.Tensor | None = None,
        attention_mask: torch.Tensor | None = None,
        **kwargs,
    ):
        """Upstream ``generate`` on the re-laid (left-padded) prompt.

        The images are encoded and reduced once, before prefill. The returned sequences start
        with the caller's own ``input_ids``, so ``out[:, input_ids.shape[1]:]`` are the new
        tokens exactly as with the stock model. With ``return_dict_in_generate=True`` the output
        also carries ``visual_token_counts`` (``[num_images]``, in the order of ``pixel_values``).
        """
        if pixel_values is None:
            return super().generate(input_ids=input_ids, attention_mask=attention_mask, **kwargs)
        features, laid_out = self.encode_and_lay_out(
            input_ids, pixel_values, attention_mask, None, "left", kwargs.pop("vision_feature_layer", None)
        )
        counts = torch.tensor([len(f) for f in features.pooler_output])
        if laid_out is None:
            output = super().generate(
                input_ids=input_ids, attention_mask=attention_mask, mm_encoder_outputs={"image": features}, **kwargs
            )
            if not isinstance(output, torch.Tensor):
                output.visual_token_counts = counts
            return output
        kwargs.pop("position_ids", None)
        output = super().generate(
            input_ids=laid_out.input_ids,
            attention_mask=laid_out.attention_mask,
            mm_encoder_outputs={"image": features},
            **kwargs,
        )
        output = restore_prompt(output, input_ids, laid_out.input_ids.shape[1])
        if isinstance(output, torch.Tensor):
            return output
        output.visual_token_counts = counts
        return output
