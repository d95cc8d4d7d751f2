"""The token-reduction algorithms: pure tensor code, no model, hook, numpy or I/O imports.

Everything follows ``shared/spec/prumerge.md`` (section numbers below refer to it, "Sec." to the
paper). A whole batch is reduced in tensor operations on the input's device; the only
device-to-host transfer is the one that learns the longest kept count (adaptive methods only).

Shapes: ``B`` images, ``N`` patch tokens per image (576 for CLIP-ViT-L/14-336), ``C`` width.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F

from .config import MERGING_METHODS, PEER_METHODS, TokenReductionConfig, spatial_grid_for

_NOT_KEPT = torch.iinfo(torch.int64).max


@dataclass
class ReducedTokens:
    """Reduced visual tokens of a batch, padded to the longest image.

    Attributes:
        tokens: ``[B, M, C]``; row ``b`` holds ``lengths[b]`` valid tokens, then zeros.
        lengths: ``[B]`` int64, tokens kept for each image (summary token included).
        indices: ``[B, K]`` int64 patch index (0..N-1) of each selected token in output order,
            ``-1`` past the image's selection. The summary token has no index.
        scores: ``[B, N]`` float32 CLS attention of each patch (None for methods that use none).
        attentive: ``[B]`` how many of ``indices`` were selected by attention; the rest of the
            selection are PruMerge+ spatial samples (None for methods that use no attention).
    """

    tokens: torch.Tensor
    lengths: torch.Tensor
    indices: torch.Tensor
    scores: torch.Tensor | None = None
    attentive: torch.Tensor | None = None
    projected: bool = False
    """``tokens`` are already projected (``divprune`` selects after the projector)."""


PRODUCER_ATTENTION_METHODS = ("fastervlm", "visionzip")
"""Peers that read the CLS attention of the block that *produces* the feature layer ("block 22")."""


@dataclass
class PeerInputs:
    """What the peer reducers read beyond the feature layer; the model fills only what the method needs.

    ``cls`` ``[B, C]``: the feature layer's CLS (visionzip feeds it); ``producer_queries``/``producer_keys``
    ``[B, N+1, C]``: q/k of the block that produced the feature layer (fastervlm, visionzip);
    ``projector``: the multimodal projector (divprune selects on its output); ``seeds`` ``[B]``:
    per-image seeds (random).
    """

    cls: torch.Tensor | None = None
    producer_queries: torch.Tensor | None = None
    producer_keys: torch.Tensor | None = None
    projector: object | None = None
    seeds: torch.Tensor | None = None


def cls_attention(
    queries: torch.Tensor,
    keys: torch.Tensor,
    attention: str = "single_head",
    num_heads: int | None = None,
) -> torch.Tensor:
    """CLS-to-patch attention ``a_j`` (spec Sec. 1, paper Eq. 3.2), float32, shape ``[B, N]``.

    ``queries``/``keys`` are ``[B, N + 1, C]`` with the CLS row first. ``single_head``: one softmax
    of ``q_cls · kᵀ / sqrt(C)`` over all ``N + 1`` keys; ``per_head``: the same per head of width
    ``C / num_heads``, averaged over heads. The CLS column is dropped and not renormalised.
    """
    if queries.shape != keys.shape or queries.dim() != 3:
        raise ValueError(f"queries {tuple(queries.shape)} and keys {tuple(keys.shape)} must both be [B, N+1, C]")
    batch, tokens, width = keys.shape
    q_cls = queries[:, 0].float()
    keys = keys.float()
    if attention == "single_head":
        logits = torch.einsum("bc,bnc->bn", q_cls, keys) * width**-0.5
        return logits.softmax(dim=-1)[:, 1:]
    if attention == "per_head":
        if not num_heads or width % num_heads:
            raise ValueError(f"per_head attention needs num_heads dividing the width {width}, got {num_heads}")
        head_dim = width // num_heads
        logits = torch.einsum(
            "bhd,bnhd->bhn", q_cls.view(batch, num_heads, head_dim), keys.view(batch, tokens, num_heads, head_dim)
        )
        return (logits * head_dim**-0.5).softmax(dim=-1).mean(dim=1)[:, 1:]
    raise ValueError(f"attention={attention!r}: expected 'single_head' or 'per_head'")


def outlier_count(
    scores: torch.Tensor, iqr_scale: float = 1.5, scope: str = "image", group_size: int = 1
) -> torch.Tensor:
    """Number of scores strictly above the upper IQR fence ``Q3 + iqr_scale·(Q3 − Q1)``, ``[B]``.

    Quartiles use linear interpolation (numpy's and ``torch.quantile``'s default; spec Sec. 2).
    ``scope="image"``: fence and count per image. ``scope="batch"``: one fence over all ``B·N``
    scores and the same count ``⌊outliers / B⌋`` for every image, which equals the released code's
    ``int(N · outliers / (B·N))`` without its float rounding. ``scope="video"``: rows come in
    consecutive groups of ``group_size`` (the frames of one video); one fence over each group's
    ``group_size·N`` scores, and each row counts its own scores above its group's fence, so frames
    with more salient content keep more tokens. The paper is silent on videos (Sec. 4.3 only says
    PruMerge is applied to Video-LLaVA); this is the IQR of Sec. 3.2 read over the video's tokens.
    """
    probs = torch.tensor([0.25, 0.75], dtype=scores.dtype, device=scores.device)
    if scope == "video" and group_size > 1:
        batch, n = scores.shape
        if batch % group_size:
            raise ValueError(f"scope='video': {batch} frames do not split into videos of {group_size} frames")
        q1, q3 = torch.quantile(scores.reshape(batch // group_size, group_size * n), probs, dim=1)
        fence = (q3 + iqr_scale * (q3 - q1)).repeat_interleave(group_size)
        return (scores > fence[:, None]).sum(dim=1)
    if scope in ("image", "video"):
        q1, q3 = torch.quantile(scores, probs, dim=1)
        fence = q3 + iqr_scale * (q3 - q1)
        return (scores > fence[:, None]).sum(dim=1)
    if scope == "batch":
        q1, q3 = torch.quantile(scores.flatten(), probs)
        fence = q3 + iqr_scale * (q3 - q1)
        total = (scores > fence).sum()
        return (total // scores.shape[0]).expand(scores.shape[0]).clone()
    raise ValueError(f"scope={scope!r}: expected 'image', 'batch' or 'video'")


def spatial_grid_indices(rows: int, cols: int, grid_rows: int, grid_cols: int, device=None) -> torch.Tensor:
    """Raster indices of a ``rows × cols`` lattice evenly spread over a ``grid_rows × grid_cols``
    patch grid (Table 4 "Spatial", Fig. 4 d-h): cell centres ``⌊(2i + 1)·G / (2·rows)⌋``."""
    if rows > grid_rows or cols > grid_cols:
        raise ValueError(f"spatial grid {rows}x{cols} does not fit the {grid_rows}x{grid_cols} patch grid")
    r = (2 * torch.arange(rows, device=device) + 1) * grid_rows // (2 * rows)
    c = (2 * torch.arange(cols, device=device) + 1) * grid_cols // (2 * cols)
    return (r[:, None] * grid_cols + c[None, :]).flatten()


def _descending_rank(scores: torch.Tensor) -> torch.Tensor:
    """``rank[b, j]`` = position of patch j when image b's scores are sorted high to low."""
    order = scores.argsort(dim=1, descending=True, stable=True)
    ranks = torch.arange(scores.shape[1], device=scores.device).expand_as(order)
    return torch.empty_like(order).scatter_(1, order, ranks)


def attentive_count(scores: torch.Tensor, config: TokenReductionConfig, group_size: int = 1) -> torch.Tensor:
    """Patches chosen by attention per image ``[B]``: the IQR outliers (Sec. 3.2, at least
    ``min_keep``), or what a fixed budget leaves (PruMerge's budget counts its summary token).
    ``group_size``: frames per video, for ``scope="video"`` (:func:`outlier_count`)."""
    batch, n = scores.shape
    if config.budget is None:
        count = outlier_count(scores, config.iqr_scale, config.scope, group_size)
        return count.clamp(min=config.min_keep, max=n)
    if config.method == "prumerge_plus":
        return torch.full((batch,), plus_budget_split(config.budget)[0], device=scores.device)
    count = config.budget - 1 if config.method == "prumerge" else config.budget
    return torch.full((batch,), count, device=scores.device)


def plus_budget_split(budget: int) -> tuple[int, int]:
    """PruMerge+ at a budget ``B``: ``(by attention, spatial samples)`` of the ``B - 1`` merged
    tokens, in the adaptive method's 1 : 3 ratio: ``max(1, round((B - 1) / 4))`` by attention."""
    total = budget - 1
    attentive = max(1, (total + 2) // 4)
    return attentive, total - attentive


def strided_samples(selected: torch.Tensor, count: torch.Tensor) -> torch.Tensor:
    """Adaptive PruMerge+'s spatial samples ``[B, N]`` (spec Sec. 3): with ``m`` attention picks,
    every ``max(⌊⌊N/m⌋/3⌋, 1)``-th patch below ``N - 1`` that attention did not pick."""
    n = selected.shape[1]
    stride = (n // count // 3).clamp(min=1)
    patch = torch.arange(n, device=selected.device)
    return (patch % stride[:, None] == 0) & (patch < n - 1) & ~selected


def evenly_spaced_samples(selected: torch.Tensor, samples: int) -> torch.Tensor:
    """Budgeted PruMerge+'s spatial samples ``[B, N]``: ``samples`` patches evenly spaced (cell
    centres) over the patches attention did not pick, in raster order."""
    batch, n = selected.shape
    sampled = torch.zeros_like(selected)
    if samples == 0:
        return sampled
    unpicked = n - int(selected[0].sum())  # the same attention count for every image here
    patch = torch.arange(n, device=selected.device).expand(batch, n)
    in_raster_order = torch.where(selected, patch + n, patch).argsort(dim=1)[:, :unpicked]
    positions = (2 * torch.arange(samples, device=selected.device) + 1) * unpicked // (2 * samples)
    return sampled.scatter(1, in_raster_order[:, positions], True)


def output_order_keys(scores: torch.Tensor, selected: torch.Tensor, sampled: torch.Tensor) -> torch.Tensor:
    """Sort keys ``[B, N]`` that list each image's kept patches first, in output order: attention
    picks by descending attention, then spatial samples by ascending index; ``_NOT_KEPT`` last."""
    n = scores.shape[1]
    patch = torch.arange(n, device=scores.device).expand_as(scores)
    order_keys = torch.full(scores.shape, _NOT_KEPT, dtype=torch.long, device=scores.device)
    order_keys = torch.where(sampled, patch + n, order_keys)
    return torch.where(selected, _descending_rank(scores), order_keys)


def select_patches(
    scores: torch.Tensor, config: TokenReductionConfig, group_size: int = 1
) -> tuple[torch.Tensor, torch.Tensor]:
    """Which patches each image keeps and in what order: ``(order keys [B, N], attentive count [B])``
    for the selecting methods (``prumerge``, ``prumerge_plus``, ``aits``)."""
    count = attentive_count(scores, config, group_size)
    selected = _descending_rank(scores) < count[:, None]
    if config.method != "prumerge_plus":
        sampled = torch.zeros_like(selected)
    elif config.budget is None:
        sampled = strided_samples(selected, count)
    else:
        sampled = evenly_spaced_samples(selected, plus_budget_split(config.budget)[1])
    return output_order_keys(scores, selected, sampled), count


def _merge(
    features: torch.Tensor,
    keys: torch.Tensor,
    scores: torch.Tensor,
    kept: torch.Tensor,
    is_kept: torch.Tensor,
    lengths: torch.Tensor,
    knn: int,
    merge: str,
) -> torch.Tensor:
    """Token supplement (spec Sec. 4, paper Sec. 3.3): key-kNN merge and the summary token.

    ``kept [B, K]`` are the centres' patch indices (row ``b`` valid up to ``lengths[b]``),
    ``is_kept [B, N]`` marks every kept patch. Neighbours of kept token i are the ``knn`` other
    patches (kept or pruned) of highest key cosine similarity; clusters may overlap.

    Each merged token is a weighted sum of ``knn + 1`` feature rows (1 at the centre, ``a_j`` at
    its neighbours), computed for the whole batch by one ``embedding_bag`` over the flattened
    ``[B * N, C]`` features, which never materialises the gathered ``[B, K, knn, C]`` rows; the
    summary token (``a_j`` over every pruned patch) is one batched matrix-vector product. The
    output ``[B, K + 1, C]`` holds image ``b``'s summary at row ``lengths[b]`` and zeros after.
    """
    batch, n, width = features.shape
    rows = kept.shape[1]
    device = features.device
    valid = torch.arange(rows, device=device) < lengths[:, None]
    # cosine similarity of each centre's key to every key; dividing the [B, K, N] dot products by the
    # norms is much cheaper than normalising all [B, N, C] keys first. In float32: raw fp16 dot
    # products of keys with norms of a few hundred would overflow.
    keys = keys.float()
    norms = keys.norm(dim=-1).clamp_min(1e-12)
    centre_keys = keys.gather(1, kept[..., None].expand(-1, -1, width))
    similarity = torch.bmm(centre_keys, keys.transpose(1, 2))
    similarity = similarity / (norms.gather(1, kept)[..., None] * norms[:, None, :])
    similarity.scatter_(2, kept[..., None], float("-inf"))  # a token is not its own neighbour
    neighbours = similarity.topk(min(knn, n - 1), dim=2).indices  # [B, K, knn]
    neighbour_scores = scores.gather(1, neighbours.flatten(1)).view_as(neighbours)

    centre = torch.ones_like(scores[:, :1]).expand(batch, rows) if merge == "sum" else scores.gather(1, kept)
    members = torch.cat([kept[..., None], neighbours], dim=2)  # [B, K, knn + 1]
    weights = torch.cat([centre[..., None], neighbour_scores], dim=2).float() * valid[..., None]
    summary_weights = scores.masked_fill(is_kept, 0.0).float()  # [B, N]
    if merge == "mean":
        tiny = torch.finfo(torch.float32).tiny
        weights = weights / weights.sum(dim=2, keepdim=True).clamp_min(tiny)
        summary_weights = summary_weights / summary_weights.sum(dim=1, keepdim=True).clamp_min(tiny)
    elif merge != "sum":
        raise ValueError(f"merge={merge!r}: expected 'sum' or 'mean'")

    offsets = (torch.arange(batch, device=device) * n)[:, None, None]
    merged = F.embedding_bag(
        (members + offsets).view(batch * rows, -1),
        features.reshape(batch * n, width),
        per_sample_weights=weights.view(batch * rows, -1).to(features.dtype),
        mode="sum",
    )
    output = torch.zeros(batch, rows + 1, width, dtype=features.dtype, device=device)
    output[:, :rows] = merged.view(batch, rows, width)
    summary = torch.bmm(summary_weights.to(features.dtype)[:, None, :], features)  # [B, 1, C]
    output[torch.arange(batch, device=device), lengths] = summary[:, 0]
    return output


def reduce_visual_tokens(
    features: torch.Tensor,
    queries: torch.Tensor | None,
    keys: torch.Tensor | None,
    config: TokenReductionConfig,
    num_heads: int | None = None,
    grid_size: tuple[int, int] | None = None,
    frames_per_video: int = 1,
    peer_inputs: PeerInputs | None = None,
) -> ReducedTokens:
    """Reduce a batch of visual tokens as ``config`` says.

    Args:
        features: ``[B, N, C]`` patch features fed to the projector (CLS dropped).
        queries, keys: ``[B, N + 1, C]`` q/k projections (with bias, unscaled) of the block that
            consumes ``features``, CLS row first (spec Sec. 1). Unused by ``sequential``,
            ``spatial`` and ``none``, which accept None.
        config: the reduction settings.
        num_heads: heads of that block, for ``attention="per_head"``.
        grid_size: ``(rows, cols)`` of the patch grid, for ``spatial``; default a square grid.
        frames_per_video: with ``scope="video"``, the ``B`` rows are videos of this many consecutive
            frames sharing one IQR fence (:func:`outlier_count`); 1 for images.
        peer_inputs: for the peers (:data:`~llava_prumerge.config.PEER_METHODS`), what they read
            beyond ``features`` (:func:`reduce_with_peer`).

    Returns:
        :class:`ReducedTokens` in ``features``' dtype and device. Token order per image: selected
        tokens by descending attention, PruMerge+ spatial samples by ascending index, then the
        summary token (``prumerge``/``prumerge_plus``); sequential/spatial in raster order.
    """
    if features.dim() != 3:
        raise ValueError(f"features must be [B, N, C], got {tuple(features.shape)}")
    batch, n, width = features.shape
    device = features.device
    method = config.method
    if config.output_count is not None and config.output_count > n:
        raise ValueError(f"TokenReductionConfig: {config.output_count} tokens requested but the image has only N={n}")

    if method == "none":
        indices = torch.arange(n, device=device).expand(batch, n)
        return ReducedTokens(features, torch.full((batch,), n, device=device), indices)
    if method in PEER_METHODS:
        return reduce_with_peer(features, config, peer_inputs or PeerInputs(), num_heads, grid_size or _square_grid(n))

    if method in ("sequential", "spatial"):
        if method == "sequential":
            index = torch.arange(config.budget, device=device)
        else:
            rows, cols = grid_size or _square_grid(n)
            if rows * cols != n:
                raise ValueError(f"grid_size {rows}x{cols} does not match N={n} patches")
            index = spatial_grid_indices(*config.grid, rows, cols, device=device)
        tokens = features[:, index]
        return ReducedTokens(tokens, torch.full((batch,), len(index), device=device), index.expand(batch, -1))

    if queries is None or keys is None:
        raise ValueError(f"method={method!r} needs the queries and keys of the consuming block")
    if keys.shape[:2] != (batch, n + 1):
        raise ValueError(f"keys {tuple(keys.shape)} must be [B, N+1, *] for features {tuple(features.shape)}")
    scores = cls_attention(queries, keys, config.attention, num_heads)
    order_keys, attentive = select_patches(scores, config, frames_per_video)
    is_kept = order_keys != _NOT_KEPT
    lengths = is_kept.sum(dim=1)
    if config.budget is None:
        longest = int(lengths.max())  # the one device-to-host sync
    else:
        longest = config.budget - 1 if method in MERGING_METHODS else config.budget
    order = order_keys.argsort(dim=1, stable=True)[:, :longest]
    valid = torch.arange(longest, device=device) < lengths[:, None]
    kept = torch.where(valid, order, order[:, :1])  # pad with a real index; masked out below
    indices = torch.where(valid, order, -1)

    if method == "aits":
        tokens = features.gather(1, kept[..., None].expand(-1, -1, width)) * valid[..., None]
        return ReducedTokens(tokens, lengths, indices, scores, attentive)

    tokens = _merge(features, keys[:, 1:], scores, kept, is_kept, lengths, config.knn, config.merge)
    return ReducedTokens(tokens, lengths + 1, indices, scores, attentive)


def _square_grid(n: int) -> tuple[int, int]:
    side = int(round(n**0.5))
    if side * side != n:
        raise ValueError(f"N={n} patches is not a square grid; pass grid_size=(rows, cols)")
    return side, side


def _require(value, name: str, method: str):
    if value is None:
        raise ValueError(f"method={method!r} needs {name} (PeerInputs.{name})")
    return value


def reduce_with_peer(
    features: torch.Tensor,
    config: TokenReductionConfig,
    inputs: PeerInputs,
    num_heads: int | None,
    grid_size: tuple[int, int],
) -> ReducedTokens:
    """A peer reducer (:mod:`llava_prumerge.peers`) on a batch, as :class:`ReducedTokens`.

    Every image keeps exactly the method's count. ``indices`` are the kept patches (visionzip: its
    dominant patches, without the CLS and the contextual tokens; pooling: none).
    """
    from . import peers

    batch, n, width = features.shape
    device = features.device
    method = config.method
    full = torch.full((batch,), 0, dtype=torch.long, device=device)
    if method == "pooling":
        tokens = peers.pool_tokens(features, grid_size, spatial_grid_for(config.budget))
        empty = torch.empty(batch, 0, dtype=torch.long, device=device)
        return ReducedTokens(tokens, full + tokens.shape[1], empty)
    if method == "visionzip":
        queries = _require(inputs.producer_queries, "producer_queries", method)
        keys = _require(inputs.producer_keys, "producer_keys", method)
        cls = _require(inputs.cls, "cls", method)
        attention = peers.block_cls_attention(queries, keys, num_heads, "sum")
        dominant, contextual = config.visionzip_split
        hidden = torch.cat([cls[:, None].to(features.dtype), features], dim=1)
        tokens, kept, _ = peers.visionzip_reduce(hidden, attention, keys, num_heads, dominant, contextual)
        return ReducedTokens(tokens, full + tokens.shape[1], kept, scores=attention)
    if method == "fastervlm":
        queries = _require(inputs.producer_queries, "producer_queries", method)
        keys = _require(inputs.producer_keys, "producer_keys", method)
        attention = peers.block_cls_attention(queries, keys, num_heads, "mean")
        kept = peers.fastervlm_select(attention, config.budget)
        tokens = features.gather(1, kept[..., None].expand(-1, -1, width))
        return ReducedTokens(tokens, full + kept.shape[1], kept, scores=attention)
    if method == "random":
        kept = peers.random_select(_require(inputs.seeds, "seeds", method), n, config.budget).to(device)
        tokens = features.gather(1, kept[..., None].expand(-1, -1, width))
        return ReducedTokens(tokens, full + kept.shape[1], kept)
    if method == "divprune":
        projector = _require(inputs.projector, "projector", method)
        projected = projector(features)
        count = config.budget if config.budget is not None else peers.divprune_count(config.keep_ratio, n)
        kept = peers.divprune_select(projected, count)
        tokens = projected.gather(1, kept[..., None].expand(-1, -1, projected.shape[-1]))
        return ReducedTokens(tokens, full + kept.shape[1], kept, projected=True)
    raise ValueError(f"method={method!r} is not a peer reducer")
