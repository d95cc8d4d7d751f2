"""What every model family shares: the saved reduction config and the CLIP encoding it reduces.

- :class:`TokenReductionMixin`: ``config.token_reduction`` (a dict saved with the model),
  ``from_pretrained(token_reduction=...)`` and :meth:`~TokenReductionMixin.set_token_reduction`;
- :func:`encode_for_reduction`: a CLIP tower run up to the feature layer, plus the q/k of the block
  that consumes it (spec Sec. 1), so the CLS attention needs no attention map (SDPA works);
- :func:`reduce_encoded`: those features reduced by :func:`llava_prumerge.reduce_visual_tokens`.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from transformers import CLIPVisionModel

from ..config import ATTENTION_METHODS, PEER_METHODS, TokenReductionConfig
from ..reduction import PRODUCER_ATTENTION_METHODS, PeerInputs, ReducedTokens, reduce_visual_tokens


class TokenReductionMixin:
    """The reduction settings of a model, kept in ``config.token_reduction`` and saved with it.

    Put first in the bases of a transformers model class (``class M(TokenReductionMixin, Stock)``).
    """

    def __init__(self, config):
        super().__init__(config)
        config.token_reduction = TokenReductionConfig.coerce(getattr(config, "token_reduction", None)).to_dict()

    @classmethod
    def from_pretrained(cls, *args, token_reduction: TokenReductionConfig | dict | str | None = None, **kwargs):
        """``PreTrainedModel.from_pretrained``, plus ``token_reduction`` to override the saved one."""
        model = super().from_pretrained(*args, **kwargs)
        if token_reduction is not None:
            model.set_token_reduction(token_reduction)
        return model

    @property
    def token_reduction(self) -> TokenReductionConfig:
        """The active reduction, parsed from ``config.token_reduction``."""
        return TokenReductionConfig.from_dict(self.config.token_reduction)

    def set_token_reduction(self, token_reduction: TokenReductionConfig | dict | str) -> None:
        """Switch the reduction (validated); it is saved with the model from now on."""
        self.config.token_reduction = TokenReductionConfig.coerce(token_reduction).to_dict()


def encode_for_reduction(
    tower: torch.nn.Module,
    pixel_values: torch.Tensor,
    layer: int | list[int],
    with_qk: bool = True,
    producer: dict | None = None,
) -> tuple[torch.Tensor, torch.Tensor | None, torch.Tensor | None]:
    """Hidden states ``[I, N+1, C]`` (CLS first) of ``tower``'s feature layer, and the q/k
    ``[I, N+1, C]`` of the block that consumes it (spec Sec. 1).

    ``hidden_states[layer]`` of the stock tower, computed by running the CLIP blocks up to the
    feature layer only; of the consuming block just ``layer_norm1`` and the q/k projections. With a
    ``producer`` dict, the q/k of the block that *produced* the feature layer (its
    ``layer_norm1(hidden_states[layer - 1])``: "block 22" of FasterVLM and VisionZip, whose
    ``attentions[-2]`` SDPA towers do not return) are stored in it as ``queries``/``keys``.
    """
    if not isinstance(tower, CLIPVisionModel):
        raise TypeError(f"token reduction needs a CLIPVisionModel vision tower, got {type(tower).__name__}")
    if not isinstance(layer, int):
        raise ValueError(f"token reduction needs one integer vision_feature_layer, got {layer!r}")
    blocks = tower.encoder.layers
    depth = layer % (len(blocks) + 1)  # hidden_states[depth] is the output of `depth` blocks
    if depth >= len(blocks):
        raise ValueError(
            f"vision_feature_layer={layer} is the tower's last output; the CLS attention needs the block "
            "that consumes the feature layer (LLaVA-1.5 uses -2)"
        )
    hidden = tower.embeddings(pixel_values.to(dtype=tower.dtype))
    hidden = tower.pre_layrnorm(hidden)
    for index, block in enumerate(blocks[:depth]):
        if producer is not None and index == depth - 1:
            normed = block.layer_norm1(hidden)
            producer["queries"], producer["keys"] = block.self_attn.q_proj(normed), block.self_attn.k_proj(normed)
        hidden = block(hidden, None)
    queries = keys = None
    if with_qk:
        consumer = blocks[depth]
        normed = consumer.layer_norm1(hidden)
        queries, keys = consumer.self_attn.q_proj(normed), consumer.self_attn.k_proj(normed)
    return hidden, queries, keys


def reduce_encoded(
    tower: torch.nn.Module,
    pixel_values: torch.Tensor,
    layer: int | list[int],
    config: TokenReductionConfig,
    frames_per_video: int = 1,
    projector: Callable[[torch.Tensor], torch.Tensor] | None = None,
) -> tuple[ReducedTokens, torch.Tensor]:
    """Encode ``pixel_values [I, 3, H, W]`` and reduce the patch tokens (before the projector,
    except for ``divprune``, which selects on the projected tokens: ``ReducedTokens.projected``).

    Returns the :class:`~llava_prumerge.reduction.ReducedTokens` and the CLS rows ``[I, C]`` of the
    feature layer. ``frames_per_video``: consecutive images that are one video's frames
    (``scope="video"``). A peer gets only what it reads (:class:`~llava_prumerge.reduction.PeerInputs`):
    the producing block's q/k, the CLS, the projector or per-image seeds; other methods pay for none.
    """
    method = config.method
    producer = {} if method in PRODUCER_ATTENTION_METHODS else None
    hidden, queries, keys = encode_for_reduction(
        tower, pixel_values, layer, with_qk=method in ATTENTION_METHODS, producer=producer
    )
    vision = tower.config
    side = vision.image_size // vision.patch_size
    peer = None
    if method in PEER_METHODS:
        from ..peers import image_seeds

        peer = PeerInputs(
            cls=hidden[:, 0] if method == "visionzip" else None,
            producer_queries=(producer or {}).get("queries"),
            producer_keys=(producer or {}).get("keys"),
            projector=projector if method == "divprune" else None,
            seeds=image_seeds(pixel_values, config.seed) if method == "random" else None,
        )
        if method == "divprune" and projector is None:
            raise ValueError("divprune selects on the projected tokens: pass the model's projector")
    reduced = reduce_visual_tokens(
        hidden[:, 1:],
        queries,
        keys,
        config,
        num_heads=vision.num_attention_heads,
        grid_size=(side, side),
        frames_per_video=frames_per_video,
        peer_inputs=peer,
    )
    return reduced, hidden[:, 0]


def valid_rows(lengths: torch.Tensor, width: int) -> torch.Tensor:
    """``[I, width]`` mask of the first ``lengths[i]`` rows of each padded item."""
    return torch.arange(width, device=lengths.device) < lengths[:, None]
