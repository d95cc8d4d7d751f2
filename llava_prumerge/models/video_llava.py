"""`VideoLlavaPruMergeForConditionalGeneration`: Video-LLaVA with PruMerge / PruMerge+ on every frame.

Paper Sec. 4.3 / Table 3: PruMerge and PruMerge+ added to Video-LLaVA-7B at inference, no
training. The released code has no Video-LLaVA path; this follows transformers 5.24's
``models/video_llava/modeling_video_llava.py``:

- a video is ``F`` frames (8 for ``LanguageBind/Video-LLaVA-7B-hf``) encoded one by one by the video
  tower, a ``CLIPVisionModel`` (224 px, patch 14: ``N = 256`` patches on a 16×16 grid). The stock
  model feeds every frame's CLS token too: ``F × (N + 1) = 2056`` tokens per video, the processor
  writing as many ``<video>`` placeholders. The paper counts ``8 × 16 × 16 = 2048`` (Sec. 4.3);
- images go through the image tower with the CLS dropped (``N = 256`` tokens), as in LLaVA-1.5.

With a reduction, each frame's ``N`` patch tokens are reduced exactly as an image's (same
function, same config: every method and option of :class:`~llava_prumerge.TokenReductionConfig`;
a budget is per frame), then the frame's CLS goes in front (``keep_frame_cls``, default, as the
stock model feeds it; ``False`` drops it; ``visionzip`` keeps the CLS as its first token anyway). The adaptive count uses an IQR fence per frame
(``scope="image"``, default, batch-invariant) or per video (``scope="video"``: one fence over the
video's ``F·N`` scores, each frame keeping its own patches above it). Images are reduced as in
:class:`~llava_prumerge.LlavaPruMergeForConditionalGeneration`.

Inputs may hold the processor's placeholders (``N`` per image, ``F·(N+1)`` per video) or one
placeholder per image / video; batches may mix images, videos and text-only rows. ``forward`` and
``generate`` re-lay the sequence for the reduced counts, which they report per image, per video
and per frame. ``method="none"`` runs the stock code unchanged on the processor's placeholders
(and re-lays one placeholder per item, which the stock code refuses).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from transformers import VideoLlavaForConditionalGeneration
from transformers.modeling_outputs import BaseModelOutputWithPooling
from transformers.models.video_llava.modeling_video_llava import VideoLlavaCausalLMOutputWithPast

from .sequence import LaidOutBatch, infer_padding_side, lay_out_image_tokens, placeholders_per_image, restore_prompt
from .vision import TokenReductionMixin, reduce_encoded, valid_rows


@dataclass
class ReducedVisualFeatures(BaseModelOutputWithPooling):
    """``get_image_features`` / ``get_video_features`` output with a reduction.

    ``pooler_output``: every item's projected tokens concatenated, ``[1, T, D]`` (the stock model
    flattens its ``[I, N, D]`` the same way before scattering them into the placeholders);
    ``token_counts`` ``[I]`` (images) or ``[V]`` (videos): tokens per item; ``frame_token_counts``
    ``[V, F]``: tokens per frame (CLS included when kept; videos only); ``kept_indices`` ``[I·F, K]``:
    patch index of each selected token per image/frame (-1 past the selection); ``cls_attention``
    ``[I·F, N]``; ``attentive_counts`` ``[I·F]``.
    """

    token_counts: torch.LongTensor | None = None
    frame_token_counts: torch.LongTensor | None = None
    kept_indices: torch.LongTensor | None = None
    cls_attention: torch.FloatTensor | None = None
    attentive_counts: torch.LongTensor | None = None


@dataclass
class VideoLlavaPruMergeCausalLMOutputWithPast(VideoLlavaCausalLMOutputWithPast):
    """``forward`` output: ``logits`` follow the re-laid sequence (``attention_mask``, ``labels``);
    visual tokens per image ``[I]``, per video ``[V]`` and per frame ``[V, F]``."""

    attention_mask: torch.LongTensor | None = None
    labels: torch.LongTensor | None = None
    image_token_counts: torch.LongTensor | None = None
    video_token_counts: torch.LongTensor | None = None
    frame_token_counts: torch.LongTensor | None = None


class VideoLlavaPruMergeForConditionalGeneration(TokenReductionMixin, VideoLlavaForConditionalGeneration):
    """Video-LLaVA whose frames and images reach the language model as PruMerge/PruMerge+ tokens.

    Loads ``LanguageBind/Video-LLaVA-7B-hf`` unchanged::

        model = VideoLlavaPruMergeForConditionalGeneration.from_pretrained(
            "LanguageBind/Video-LLaVA-7B-hf", token_reduction="prumerge_plus")

    Both towers must be ``CLIPVisionModel``s with an integer ``vision_feature_layer`` that some
    block consumes (-2), and images use ``vision_feature_select_strategy="default"``.
    """

    # ----------------------------------------------------------------------------------------
    # Vision side
    # ----------------------------------------------------------------------------------------
    def _layer(self, vision_feature_layer: int | list[int] | None) -> int | list[int]:
        return self.config.vision_feature_layer if vision_feature_layer is None else vision_feature_layer

    def _patches(self) -> int:
        vision = self.config.vision_config
        return (vision.image_size // vision.patch_size) ** 2

    def get_image_features(
        self,
        pixel_values: torch.Tensor,
        vision_feature_layer: int | list[int] | None = None,
        vision_feature_select_strategy: str | None = None,
        **kwargs,
    ) -> ReducedVisualFeatures | BaseModelOutputWithPooling:
        """Projected tokens of ``pixel_values [I, 3, H, W]``: the image tower's ``N`` patches
        reduced (``method="none"``: upstream's method unchanged)."""
        if self.token_reduction.method == "none":
            return super().get_image_features(
                pixel_values=pixel_values,
                vision_feature_layer=vision_feature_layer,
                vision_feature_select_strategy=vision_feature_select_strategy,
                **kwargs,
            )
        if self.config.vision_feature_select_strategy != "default" or vision_feature_select_strategy not in (
            None,
            "default",
        ):
            raise ValueError("token reduction on images needs vision_feature_select_strategy='default' (CLS dropped)")
        projector = self.model.multi_modal_projector
        reduced, _ = reduce_encoded(
            self.model.image_tower, pixel_values, self._layer(vision_feature_layer), self.token_reduction, 1, projector
        )
        valid = valid_rows(reduced.lengths, reduced.tokens.shape[1])
        projected = reduced.tokens[valid] if reduced.projected else projector(reduced.tokens[valid])
        return ReducedVisualFeatures(
            last_hidden_state=reduced.tokens,
            pooler_output=projected[None],
            token_counts=reduced.lengths,
            kept_indices=reduced.indices,
            cls_attention=reduced.scores,
            attentive_counts=reduced.attentive,
        )

    def get_video_features(
        self, pixel_values_videos: torch.Tensor, vision_feature_layer: int | list[int] | None = None, **kwargs
    ) -> ReducedVisualFeatures | BaseModelOutputWithPooling:
        """Projected tokens of ``pixel_values_videos [V, F, 3, H, W]``: per frame its CLS (if
        ``keep_frame_cls``) then its reduced patches, frames in order, videos in order
        (``method="none"``: upstream's ``get_video_features`` unchanged, ``F × (N + 1)`` per video)."""
        config = self.token_reduction
        if config.method == "none":
            return self.model.get_video_features(
                pixel_values_videos=pixel_values_videos, vision_feature_layer=vision_feature_layer, **kwargs
            )
        videos, frames = pixel_values_videos.shape[:2]
        projector = self.model.multi_modal_projector
        reduced, cls = reduce_encoded(
            self.model.video_tower,
            pixel_values_videos.flatten(0, 1),
            self._layer(vision_feature_layer),
            config,
            frames_per_video=frames,
            projector=projector,
        )
        tokens, lengths = reduced.tokens, reduced.lengths
        if config.keep_frame_cls and config.method != "visionzip":  # visionzip's own output starts with the CLS
            cls = projector(cls) if reduced.projected else cls
            tokens, lengths = torch.cat([cls[:, None].to(tokens.dtype), tokens], dim=1), lengths + 1
        valid = tokens[valid_rows(lengths, tokens.shape[1])]
        projected = valid if reduced.projected else projector(valid)
        per_frame = lengths.view(videos, frames)
        return ReducedVisualFeatures(
            last_hidden_state=tokens,
            pooler_output=projected[None],
            token_counts=per_frame.sum(dim=1),
            frame_token_counts=per_frame,
            kept_indices=reduced.indices,
            cls_attention=reduced.scores,
            attentive_counts=reduced.attentive,
        )

    # ----------------------------------------------------------------------------------------
    # Language side
    # ----------------------------------------------------------------------------------------
    def encode_and_lay_out(
        self,
        input_ids: torch.Tensor,
        pixel_values: torch.Tensor | None,
        pixel_values_videos: torch.Tensor | None,
        attention_mask: torch.Tensor | None,
        labels: torch.Tensor | None,
        padding_side: str,
        vision_feature_layer: int | list[int] | None = None,
    ) -> tuple[dict[str, ReducedVisualFeatures | BaseModelOutputWithPooling], LaidOutBatch | None, dict]:
        """Encode (and reduce) the images and videos, then re-lay the batch for their counts.

        Returns ``(mm_encoder_outputs, laid_out, counts)``: the features by modality, the
        rewritten batch (``None`` when the placeholders already match) and the visual tokens per
        image (``image``, ``[I]``), video (``video``, ``[V]``) and frame (``frame``, ``[V, F]``).
        """
        if input_ids is None:
            raise ValueError("pixel values with inputs_embeds are not supported: pass input_ids with placeholders")
        pad_token_id = self.config.text_config.pad_token_id
        features, counts = {}, {}
        laid_out = None
        items = []
        if pixel_values is not None:
            expanded = self._patches() + (self.config.vision_feature_select_strategy == "full")
            per_item = placeholders_per_image(input_ids, self.config.image_token_id, pixel_values.shape[0], expanded)
            features["image"] = self.get_image_features(
                pixel_values=pixel_values, vision_feature_layer=vision_feature_layer
            )
            counts["image"] = self._counts(features["image"], pixel_values.shape[0], expanded)
            items.append((self.config.image_token_id, per_item, counts["image"]))
        if pixel_values_videos is not None:
            videos, frames = pixel_values_videos.shape[:2]
            expanded = frames * (self._patches() + 1)
            per_item = placeholders_per_image(input_ids, self.config.video_token_id, videos, expanded)
            features["video"] = self.get_video_features(
                pixel_values_videos=pixel_values_videos, vision_feature_layer=vision_feature_layer
            )
            counts["video"] = self._counts(features["video"], videos, expanded)
            frame_counts = getattr(features["video"], "frame_token_counts", None)
            counts["frame"] = (
                frame_counts if frame_counts is not None else torch.full((videos, frames), expanded // frames)
            )
            items.append((self.config.video_token_id, per_item, counts["video"]))
        if any(bool((item_counts != per_item).any()) for _, per_item, item_counts in items):
            ids, mask, labels_now = input_ids, attention_mask, labels
            for token_id, per_item, item_counts in items:
                laid_out = lay_out_image_tokens(
                    ids,
                    item_counts.to(ids.device),
                    token_id,
                    per_item,
                    attention_mask=mask,
                    labels=labels_now,
                    padding_side=padding_side,
                    pad_token_id=0 if pad_token_id is None else pad_token_id,
                )
                ids, mask, labels_now = laid_out.input_ids, laid_out.attention_mask, laid_out.labels
        return features, laid_out, counts

    @staticmethod
    def _counts(features, items: int, expanded: int) -> torch.Tensor:
        counts = getattr(features, "token_counts", None)
        return counts.cpu() if counts is not None else torch.full((items,), expanded)

    def forward(
        self,
        input_ids: torch.LongTensor | None = None,
        pixel_values: torch.Tensor | None = None,
        pixel_values_videos: torch.Tensor | None = None,
        attention_mask: torch.Tensor | None = None,
        position_ids: torch.LongTensor | None = None,
        pixel_values_images: torch.Tensor | None = None,
        cache=None,
        inputs_embeds: torch.Tensor | None = None,
        vision_feature_layer: int | list[int] | None = None,
        vision_feature_select_strategy: str | None = None,
        labels: torch.LongTensor | None = None,
        use_cache: bool | None = None,
        logits_to_keep: int | torch.Tensor = 0,
        mm_encoder_outputs: dict | None = None,
        **kwargs,
    ) -> VideoLlavaPruMergeCausalLMOutputWithPast:
        """Upstream ``forward`` on the re-laid batch (see the module docstring).

        With images or videos and a reduction, ``position_ids`` are recomputed from the new
        ``attention_mask`` (any passed in refer to the old layout); the output carries the new
        mask, labels and the visual-token counts. ``pixel_values_images`` (what the processor still
        returns by default) is another name for ``pixel_values``.
        """
        pixel_values = _images(pixel_values, pixel_values_images)
        common = dict(
            cache=cache,
            inputs_embeds=inputs_embeds,
            vision_feature_layer=vision_feature_layer,
            vision_feature_select_strategy=vision_feature_select_strategy,
            use_cache=use_cache,
            logits_to_keep=logits_to_keep,
            **kwargs,
        )
        no_visuals = pixel_values is None and pixel_values_videos is None
        if no_visuals or self._runs_stock(input_ids, pixel_values, pixel_values_videos):
            return super().forward(
                input_ids=input_ids,
                pixel_values=pixel_values,
                pixel_values_videos=pixel_values_videos,
                attention_mask=attention_mask,
                position_ids=position_ids,
                labels=labels,
                mm_encoder_outputs=mm_encoder_outputs,
                **common,
            )
        features, laid_out, counts = self.encode_and_lay_out(
            input_ids,
            pixel_values,
            pixel_values_videos,
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
            mm_encoder_outputs=features,
            **common,
        )
        return VideoLlavaPruMergeCausalLMOutputWithPast(
            **outputs,
            attention_mask=attention_mask,
            labels=labels,
            image_token_counts=counts.get("image"),
            video_token_counts=counts.get("video"),
            frame_token_counts=counts.get("frame"),
        )

    @torch.no_grad()
    def generate(
        self,
        input_ids: torch.LongTensor | None = None,
        pixel_values: torch.Tensor | None = None,
        pixel_values_videos: torch.Tensor | None = None,
        attention_mask: torch.Tensor | None = None,
        pixel_values_images: torch.Tensor | None = None,
        **kwargs,
    ):
        """Upstream ``generate`` on the re-laid (left-padded) prompt.

        Images and videos are encoded and reduced once, before prefill. The returned sequences
        start with the caller's own ``input_ids``, so ``out[:, input_ids.shape[1]:]`` are the new
        tokens as with the stock model. With ``return_dict_in_generate=True`` the output also
        carries ``image_token_counts`` ``[I]``, ``video_token_counts`` ``[V]`` and
        ``frame_token_counts`` ``[V, F]`` (``None`` for an absent modality), for ``none`` too.
        """
        pixel_values = _images(pixel_values, pixel_values_images)
        if pixel_values is None and pixel_values_videos is None:
            return super().generate(input_ids=input_ids, attention_mask=attention_mask, **kwargs)
        if self._runs_stock(input_ids, pixel_values, pixel_values_videos):
            visuals = {"pixel_values": pixel_values, "pixel_values_videos": pixel_values_videos}
            visuals = {key: value for key, value in visuals.items() if value is not None}  # None would be encoded
            output = super().generate(input_ids=input_ids, attention_mask=attention_mask, **visuals, **kwargs)
            if not isinstance(output, torch.Tensor):
                self._attach_counts(output, self._stock_counts(pixel_values, pixel_values_videos))
            return output
        features, laid_out, counts = self.encode_and_lay_out(
            input_ids,
            pixel_values,
            pixel_values_videos,
            attention_mask,
            None,
            "left",
            kwargs.pop("vision_feature_layer", None),
        )
        if laid_out is None:
            output = super().generate(
                input_ids=input_ids, attention_mask=attention_mask, mm_encoder_outputs=features, **kwargs
            )
            if not isinstance(output, torch.Tensor):
                self._attach_counts(output, counts)
            return output
        kwargs.pop("position_ids", None)
        output = super().generate(
            input_ids=laid_out.input_ids, attention_mask=laid_out.attention_mask, mm_encoder_outputs=features, **kwargs
        )
        output = restore_prompt(output, input_ids, laid_out.input_ids.shape[1])
        if isinstance(output, torch.Tensor):
            return output
        self._attach_counts(output, counts)
        return output

    def _runs_stock(
        self,
        input_ids: torch.Tensor | None,
        pixel_values: torch.Tensor | None,
        pixel_values_videos: torch.Tensor | None,
    ) -> bool:
        """``method="none"`` with the processor's placeholders: the stock code runs, untouched.
        (With one placeholder per image/video, ``none`` goes through the re-laying path instead.)"""
        if self.token_reduction.method != "none":
            return False
        if input_ids is None:
            return True
        counts = self._stock_counts(pixel_values, pixel_values_videos)
        for token_id, key in ((self.config.image_token_id, "image"), (self.config.video_token_id, "video")):
            expected = int(counts[key].sum()) if key in counts else 0
            if int((input_ids == token_id).sum()) != expected:
                return False
        return True

    def _stock_counts(self, pixel_values: torch.Tensor | None, pixel_values_videos: torch.Tensor | None) -> dict:
        counts = {}
        patches = self._patches()
        if pixel_values is not None:
            per_image = patches + (self.config.vision_feature_select_strategy == "full")
            counts["image"] = torch.full((pixel_values.shape[0],), per_image)
        if pixel_values_videos is not None:
            videos, frames = pixel_values_videos.shape[:2]
            counts["frame"] = torch.full((videos, frames), patches + 1)
            counts["video"] = counts["frame"].sum(dim=1)
        return counts

    @staticmethod
    def _attach_counts(output, counts: dict) -> None:
        output.image_token_counts = counts.get("image")
        output.video_token_counts = counts.get("video")
        output.frame_token_counts = None if counts.get("frame") is None else counts["frame"].cpu()


def _images(pixel_values: torch.Tensor | None, pixel_values_images: torch.Tensor | None) -> torch.Tensor | None:
    """``pixel_values``, or the processor's legacy name for it (``pixel_values_images``)."""
    if pixel_values is not None and pixel_values_images is not None:
        raise ValueError("pass pixel_values or pixel_values_images (the same input), not both")
    return pixel_values if pixel_values is not None else pixel_values_images
