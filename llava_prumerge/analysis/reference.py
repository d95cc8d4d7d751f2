"""The released code's PruMerge, as it is written there: one image and one kept token at a time.

A straightforward transcription of the loop in the authors' ``clip_encoder.py`` (spec Sec. 1-4, 6):
percentiles on the host with numpy, then for every kept token a concatenation of all other tokens,
a similarity row and a top-k, and the summary token of the pruned ones. It is the one reference of
the released algorithm: ``scripts/benchmark.py`` times it against the batched
:func:`llava_prumerge.reduce_visual_tokens` (what the model uses), and the tests compare the two
(same tokens with ``scope="image"``). ``plus`` and ``merge="mean"`` extend it to PruMerge+ (spec
Sec. 3) and the paper's weighted average, written in the same per-token style.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F


def released_loop_image(
    features: torch.Tensor,
    keys: torch.Tensor,
    scores: torch.Tensor,
    knn: int = 32,
    iqr_scale: float = 1.5,
    keep: int | None = None,
    plus: bool = False,
    merge: str = "sum",
    min_keep: int = 1,
) -> tuple[torch.Tensor, list[int]]:
    """One image: ``features [N, C]``, ``keys [N+1, C]`` (CLS first), ``scores [N]`` (CLS attention).

    ``keep`` forces the attention selection's size (else the IQR count, at least ``min_keep``).
    Returns ``(tokens [m + 1, C], kept patch indices)``: the merged kept tokens in selection order
    (by descending attention, then PruMerge+'s spatial samples by index), then the summary token.
    """
    n = features.shape[0]
    if keep is None:
        values = scores.float().cpu().numpy()  # the released code's host round trip
        q1, q3 = np.percentile(values, 25), np.percentile(values, 75)
        count = max(int((values > q3 + iqr_scale * (q3 - q1)).sum()), min_keep)
    else:
        count = keep
    kept = torch.topk(scores, count).indices.tolist()
    if plus:  # spec Sec. 3: every stride-th patch below N - 1 that attention did not pick
        stride = max((n // count) // 3, 1)
        kept += [j for j in range(0, n - 1, stride) if j not in kept]
    pruned = [j for j in range(n) if j not in kept]
    unit_keys = F.normalize(keys[1:].float(), dim=-1)
    merged = []
    for i, centre in enumerate(kept):
        others = kept[:i] + kept[i + 1 :] + pruned
        similarity = unit_keys[others] @ unit_keys[centre]
        nearest = [others[t] for t in torch.topk(similarity, min(knn, len(others))).indices.tolist()]
        token = features[centre] if merge == "sum" else scores[centre] * features[centre]
        weight = scores[centre]
        for j in nearest:
            token = token + scores[j] * features[j]
            weight = weight + scores[j]
        merged.append(token if merge == "sum" else token / weight)
    summary = torch.zeros_like(features[0])
    summary_weight = 0.0
    for j in pruned:
        summary = summary + scores[j] * features[j]
        summary_weight += float(scores[j])
    if merge == "mean" and summary_weight > 0:
        summary = summary / summary_weight
    return torch.stack([*merged, summary]), kept


def released_loop_prumerge(
    features: torch.Tensor, keys: torch.Tensor, scores: torch.Tensor, **options
) -> list[torch.Tensor]:
    """PruMerge per image with Python loops over ``features [B, N, C]``, ``keys [B, N+1, C]``, ``scores
    [B, N]``: one ``[m_i + 1, C]`` tensor per image. ``options``: :func:`released_loop_image`'s."""
    return [released_loop_image(features[b], keys[b], scores[b], **options)[0] for b in range(features.shape[0])]
