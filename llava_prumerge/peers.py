"""Other papers' visual-token reducers, ported as pure batched tensor functions.

Each function reproduces the released code of its paper on a batch (the released code runs one
image, or one batch with per-image shapes baked in); every image's output depends on that image
only. Scores and similarities are computed in float32; indices are int64. Ties are broken towards
the lower patch index everywhere (the released code relies on ``torch.topk``, whose order among
equal values is unspecified, or on ``torch.argmax``, which returns the first maximum).

The inputs are named after LLaVA-1.5's CLIP-ViT-L/14-336 tower: ``hidden_states[-2]`` (the
output of "block 22", the penultimate block) is what LLaVA projects; block 22 computes its
attention from ``layer_norm1(hidden_states[-3])``, and ``attentions[-2]`` is that attention.

=========  ===============================  ===============================  ===========  ==========================
peer       reads                            picks                            order        follows (repo, file)
=========  ===============================  ===============================  ===========  ==========================
FasterVLM  block-22 CLS attention, mean     top-k patches                    raster       Theia-4869/FasterVLM,
           over heads (``attentions[-2]``                                                 ``llava/model/
           ``[:, :, 0, 1:]``)                                                             llava_arch.py``
VisionZip  block-22 CLS attention, sum      CLS + top-(d-1) patches, then c  CLS, kept    dvlab-research/VisionZip,
           over heads; block-22 keys, mean  tokens merging the others into   (raster),    ``visionzip/
           over heads; ``hidden_states      evenly spaced targets by key     contextual   clip_encoder.py``,
           [-2]`` with CLS                  cosine                                        ``utils.py``, ``main.py``
DivPrune   projected features (the image's  greedy max-min cosine distance   raster       vbdi/divprune, ``LLaVA/
           LLM input embeddings)                                                          llava/model/llava_arch.py``
Random     pixel values (per-image seed)    k patches without replacement    raster       baseline, no released code
Pooling    ``hidden_states[-2]`` patches    adaptive average pooling of the  raster of    baseline, no released code
           on the patch grid                grid to r x c                    r x c
=========  ===============================  ===============================  ===========  ==========================

Shapes: ``B`` images, ``N`` patches (576 on a 24 x 24 grid), ``C`` width, ``H`` heads, ``D`` the
projector's output width.
"""

from __future__ import annotations

import hashlib

import torch
import torch.nn.functional as F

from .config import spatial_grid_for

VISIONZIP_SPLITS = {64: (54, 10), 128: (108, 20), 192: (162, 30)}
"""``budget -> (dominant, contextual)``: 64 from VisionZip's README (``visionzip(model, dominant=54,
contextual=10)``); 128 and 192 the splits later comparisons used (e.g. the ``SUBMERGE`` baseline
in DivPrune derivatives), not in VisionZip's code, whose ``main.py`` defaults to 191 + 30."""


def _descending_order(scores: torch.Tensor) -> torch.Tensor:
    """Patch indices sorted by descending score, equal scores by ascending index, ``[B, N]``."""
    return scores.argsort(dim=1, descending=True, stable=True)


def _gather_rows(values: torch.Tensor, index: torch.Tensor) -> torch.Tensor:
    """``values[b, index[b, i]]`` for ``values [B, N, C]`` and ``index [B, K]``: ``[B, K, C]``."""
    return values.gather(1, index[..., None].expand(-1, -1, values.shape[-1]))


def block_cls_attention(queries: torch.Tensor, keys: torch.Tensor, num_heads: int, reduce: str) -> torch.Tensor:
    """CLS-to-patch attention of one ViT block, reduced over heads, float32 ``[B, N]``.

    ``queries``/``keys`` are the block's ``q_proj``/``k_proj`` outputs ``[B, N + 1, C]`` (with bias,
    unscaled, CLS row first). Per head of width ``C / H``: softmax of ``q_cls · k / sqrt(C / H)``
    over all ``N + 1`` keys, i.e. row 0 of transformers' ``attentions[i]``. ``reduce="mean"``
    averages the heads (FasterVLM: ``image_attentions.mean(dim=1)``), ``"sum"`` sums them
    (VisionZip: ``cls_attention.sum(dim=1)``). The CLS column is dropped, not renormalised.
    """
    if queries.shape != keys.shape or queries.dim() != 3:
        raise ValueError(f"queries {tuple(queries.shape)} and keys {tuple(keys.shape)} must both be [B, N+1, C]")
    batch, tokens, width = keys.shape
    if num_heads < 1 or width % num_heads:
        raise ValueError(f"num_heads={num_heads} must divide the width {width}")
    head_dim = width // num_heads
    q_cls = queries[:, 0].float().view(batch, num_heads, head_dim)
    logits = torch.einsum("bhd,bnhd->bhn", q_cls, keys.float().view(batch, tokens, num_heads, head_dim))
    attention = (logits * head_dim**-0.5).softmax(dim=-1)[:, :, 1:]  # [B, H, N]
    if reduce == "mean":
        return attention.mean(dim=1)
    if reduce == "sum":
        return attention.sum(dim=1)
    raise ValueError(f"reduce={reduce!r}: expected 'mean' (FasterVLM) or 'sum' (VisionZip)")


def fastervlm_select(attention: torch.Tensor, k: int) -> torch.Tensor:
    """FasterVLM: the ``k`` patches of highest CLS attention, ascending (raster) order, ``[B, k]``.

    ``attention [B, N]`` is block 22's CLS attention averaged over heads (:func:`block_cls_attention`
    with ``reduce="mean"``). FasterVLM's ``encode_images`` takes ``torch.topk(image_attentions, k)``,
    scatters it into a boolean ``index_masks`` and keeps ``image_feature[index_mask]``, hence raster
    order. Equal scores: the lower index is kept (``topk``'s choice is unspecified there). The
    released code scores in the model dtype (fp16); here float32.
    """
    if not 0 <= k <= attention.shape[1]:
        raise ValueError(f"k={k} must be in [0, N={attention.shape[1]}]")
    return _descending_order(attention.float())[:, :k].sort(dim=1).values


def visionzip_split(budget: int) -> tuple[int, int]:
    """VisionZip's ``(dominant, contextual)`` token counts for a budget (dominant includes the CLS).

    64, 128, 192: :data:`VISIONZIP_SPLITS`. Any other budget keeps 64's ratio: ``dominant =
    round(budget · 54 / 64)`` (Python's round), at least 1 (the CLS), and ``contextual = budget −
    dominant``.
    """
    if isinstance(budget, bool) or not isinstance(budget, int) or budget < 1:
        raise ValueError(f"budget={budget!r}: expected an integer >= 1")
    if budget in VISIONZIP_SPLITS:
        return VISIONZIP_SPLITS[budget]
    dominant = max(1, round(budget * 54 / 64))
    return dominant, budget - dominant


def visionzip_reduce(
    hidden: torch.Tensor,
    attention_sum: torch.Tensor,
    keys: torch.Tensor,
    num_heads: int,
    dominant: int,
    contextual: int,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """VisionZip (``CLIPVisionTower_VisionZip.forward``): dominant tokens, then contextual merges.

    Args:
        hidden: ``[B, N + 1, C]`` ``hidden_states[-2]`` with the CLS row first (what LLaVA projects).
        attention_sum: ``[B, N]`` block 22's CLS attention summed over heads, CLS column dropped
            (:func:`block_cls_attention` with ``reduce="sum"``).
        keys: ``[B, N + 1, C]`` block 22's ``k_proj`` output (unscaled), CLS row first.
        num_heads: heads of block 22.
        dominant: dominant tokens ``d``, the CLS included (``main.py`` passes ``dominant_num =
            dominant - 1`` patches to the tower, which adds the CLS).
        contextual: contextual tokens ``c``, ``0 <= c <= N - (d - 1)``.

    Returns:
        ``(tokens [B, d + c, C], kept [B, d - 1], targets [B, c])``. ``tokens``: the CLS, the top
        ``d - 1`` patches by ``attention_sum`` in raster order (the code's ``masked_select``), then
        one token per target. ``kept``/``targets`` are patch indices (0..N-1, CLS excluded).

    As the released code: the other ``R = N - (d - 1)`` patches, in raster order, are the merge
    pool; the metric is the keys averaged over heads (``raw_key_states.mean(1)`` on
    ``[B, H, N + 1, C / H]``), L2-normalised; the targets are pool positions
    ``arange(0, R, max(1, R // c))[:c]``; every other pool token joins its most similar target
    (``argmax``: the first target on ties); a contextual token is ``target + mean(joined)``, the
    target itself not in the mean, ``target`` alone when nothing joined (``counts.clamp(min=1)``).

    Differences from the released code, none of which changes the result on distinct scores:
    ``topk`` ties go to the lower index; scores, similarities and the merge are float32 (the
    released code works in the tower's dtype, fp16); ``contextual=0`` returns no contextual tokens
    (the released code divides by zero).
    """
    batch, tokens, width = hidden.shape
    n = tokens - 1
    kept_count = dominant - 1
    pool = n - kept_count
    if attention_sum.shape != (batch, n) or keys.shape != (batch, tokens, keys.shape[-1]):
        raise ValueError(
            f"hidden {tuple(hidden.shape)}, attention_sum {tuple(attention_sum.shape)} and keys "
            f"{tuple(keys.shape)} must be [B, N+1, C], [B, N], [B, N+1, C']"
        )
    if not 1 <= dominant <= n + 1 or not 0 <= contextual <= pool:
        raise ValueError(f"dominant={dominant}, contextual={contextual}: need 1 <= d <= N+1 and 0 <= c <= N-(d-1)")
    device = hidden.device
    kept = _descending_order(attention_sum.float())[:, :kept_count].sort(dim=1).values  # [B, d-1]
    is_kept = torch.zeros(batch, n, dtype=torch.bool, device=device).scatter_(1, kept, True)
    # the merge pool in raster order: a stable sort puts the False (not kept) entries first
    remaining = is_kept.to(torch.uint8).argsort(dim=1, stable=True)[:, :pool]  # [B, R]
    dominant_tokens = torch.cat([hidden[:, :1], _gather_rows(hidden[:, 1:], kept)], dim=1)
    if contextual == 0:
        return dominant_tokens, kept, remaining[:, :0]

    key_width = keys.shape[-1]
    if num_heads < 1 or key_width % num_heads:
        raise ValueError(f"num_heads={num_heads} must divide the key width {key_width}")
    metric = keys[:, 1:].float().view(batch, n, num_heads, key_width // num_heads).mean(dim=2)
    metric = _gather_rows(metric, remaining)
    metric = metric / metric.norm(dim=-1, keepdim=True)  # as released: no epsilon

    positions = torch.arange(0, pool, max(1, pool // contextual), device=device)[:contextual]  # [c]
    targets = remaining[:, positions]
    similarity = torch.bmm(metric, metric[:, positions].transpose(1, 2))  # [B, R, c]
    is_target = torch.zeros(pool, dtype=torch.bool, device=device)
    is_target[positions] = True
    assignment = F.one_hot(similarity.argmax(dim=2), contextual).float()  # [B, R, c]
    assignment = assignment.masked_fill(is_target[None, :, None], 0.0)  # targets merge into nobody
    counts = assignment.sum(dim=1).clamp(min=1)[..., None]  # [B, c, 1]
    pool_hidden = _gather_rows(hidden[:, 1:], remaining).float()
    merged = torch.bmm(assignment.transpose(1, 2), pool_hidden) / counts
    contextual_tokens = (pool_hidden[:, positions] + merged).to(hidden.dtype)
    return torch.cat([dominant_tokens, contextual_tokens], dim=1), kept, targets


def divprune_count(ratio: float, n: int) -> int:
    """Tokens DivPrune keeps for a ratio: ``round(ratio · n)`` (Python's round, as ``int(round(
    threshold_ratio * image_feature_length))`` in its ``DivPrune``)."""
    return int(round(ratio * n))


def divprune_select(projected: torch.Tensor, k: int) -> torch.Tensor:
    """DivPrune: ``k`` patches of greatest diversity, ascending (raster) order, ``[B, k]``.

    ``projected [B, N, D]`` are the projector's outputs (DivPrune runs on the LLM's input embeddings
    of the image). Distance ``1 − cos``; the first pick maximises the second-smallest entry of its
    distance column (the diagonal included, so in effect the distance to the nearest other token:
    ``torch.topk(m, 2, dim=0, largest=False).values[1, :]``); each next pick maximises the minimum
    distance, over the rows of the picks so far, of its column (``torch.min(m2, dim=0)``). Ties
    go to the lower index (``torch.argmax``). The kept indices are sorted, as the released code
    sorts ``keep_indexs``.

    Differences from the released code: the released greedy loop does not exclude the tokens
    already picked, whose own distance is ≈ 0, so once every unpicked token has a zero minimum
    distance (exact duplicates of picked ones) it picks a picked token again and keeps fewer than
    ``k`` distinct tokens; here a picked token is never picked again, so exactly ``k`` distinct
    tokens are kept (identical picks otherwise). The released code also runs in the model dtype
    (fp16) on ``new_input_embeds[0]`` (one image); here float32, per image of the batch.
    """
    batch, n, _ = projected.shape
    if not 0 <= k <= n:
        raise ValueError(f"k={k} must be in [0, N={n}]")
    picks = torch.empty(batch, k, dtype=torch.long, device=projected.device)
    if k == 0:
        return picks
    features = projected.float()
    normed = features / features.norm(dim=-1, keepdim=True)  # as released: no epsilon
    distance = 1.0 - torch.bmm(normed, normed.transpose(1, 2))  # [B, N, N]
    rows = torch.arange(batch, device=projected.device)
    scores = distance.topk(min(2, n), dim=1, largest=False).values[:, -1]  # per column, [B, N]
    picked = torch.zeros(batch, n, dtype=torch.bool, device=projected.device)
    # k steps, each a batched argmax and row read: the greedy choice is sequential by nature.
    for step in range(k):
        pick = scores.masked_fill(picked, float("-inf")).argmax(dim=1)
        picks[:, step] = pick
        picked[rows, pick] = True
        row = distance[rows, pick]  # distances from the pick to every column
        scores = row if step == 0 else torch.minimum(scores, row)
    return picks.sort(dim=1).values


def image_seeds(pixel_values: torch.Tensor, seed: int) -> torch.Tensor:
    """A deterministic seed per image, ``[B]`` int64 in ``[0, 2**63)``, for :func:`random_select`.

    BLAKE2b of ``seed`` (8 bytes), the image's shape and its pixel values as contiguous float32
    bytes on the CPU. The same values give the same seed in any batch, on any device, and in any
    dtype that holds them exactly (float32, float64). Limits: the seed identifies exact values, so
    an fp16/bf16 copy of a float32 image (rounded values) or a re-encoded/resized image gets
    another seed; -0.0 and 0.0, or NaNs with different payloads, differ too. Hash the pixel values
    before any lossy cast. Costs one host copy of the batch and a hash (~1 ms per 336² image).
    """
    if pixel_values.dim() < 1:
        raise ValueError("pixel_values must be [B, ...]")
    values = pixel_values.detach().to(device="cpu", dtype=torch.float32).contiguous()
    prefix = int(seed).to_bytes(8, "little", signed=True) + repr(tuple(values.shape[1:])).encode()
    seeds = []
    for image in values:
        digest = hashlib.blake2b(prefix, digest_size=8)
        digest.update(bytes(image.clone().untyped_storage()))  # clone: a view's storage is the whole batch
        seeds.append(int.from_bytes(digest.digest(), "little") & (2**63 - 1))
    return torch.tensor(seeds, dtype=torch.long, device=pixel_values.device)


def random_select(seeds: torch.Tensor, n: int, k: int) -> torch.Tensor:
    """Random baseline: ``k`` of ``n`` patches per image, ascending, ``[B, k]`` on ``seeds``' device.

    Image ``b`` draws ``torch.randperm(n)[:k]`` from a CPU ``torch.Generator`` seeded with
    ``seeds[b]`` (:func:`image_seeds`), so its picks depend on its seed only, not on the batch or
    the device. One generator per image, hence a loop over the batch (cheap: ``n`` is 576).
    """
    if not 0 <= k <= n:
        raise ValueError(f"k={k} must be in [0, n={n}]")
    picks = []
    for seed in seeds.tolist():
        generator = torch.Generator().manual_seed(int(seed))
        picks.append(torch.randperm(n, generator=generator)[:k].sort().values)
    if not picks:
        return torch.empty(0, k, dtype=torch.long, device=seeds.device)
    return torch.stack(picks).to(seeds.device)


def pooling_grid(budget: int) -> tuple[int, int]:
    """The ``(rows, cols)`` pooled grid for a budget: the rule of our ``spatial`` method
    (:func:`~llava_prumerge.config.spatial_grid_for`: 64 → 8 x 8, 128 → 8 x 16, 192 → 12 x 16)."""
    return spatial_grid_for(budget)


def pool_tokens(features: torch.Tensor, grid: tuple[int, int], out: tuple[int, int]) -> torch.Tensor:
    """Pooling baseline: ``adaptive_avg_pool2d`` of the patch grid to ``out``, ``[B, r · c, C]``.

    ``features [B, N, C]`` lie on the ``grid = (rows, cols)`` patch grid in raster order; the
    output is the ``out = (r, c)`` pooled grid in raster order (24 x 24 → 8 x 8 is an exact 3 x 3
    average; otherwise PyTorch's adaptive bins ``[⌊i·rows/r⌋, ⌈(i+1)·rows/r⌉)``). Pooled in float32,
    returned in ``features``' dtype.
    """
    batch, n, width = features.shape
    rows, cols = grid
    if rows * cols != n:
        raise ValueError(f"grid {rows}x{cols} does not match N={n} patches")
    if not (1 <= out[0] <= rows and 1 <= out[1] <= cols):
        raise ValueError(f"pooled grid {out} must fit the {rows}x{cols} patch grid")
    image = features.float().transpose(1, 2).reshape(batch, width, rows, cols)
    pooled = F.adaptive_avg_pool2d(image, out)  # [B, C, r, c]
    return pooled.flatten(2).transpose(1, 2).to(features.dtype)
