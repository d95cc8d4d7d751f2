"""The released code's PruMerge, as it is written there: one image and one kept token at a time.

A straightforward transcription of the loop in the authors' ``clip_encoder.py`` (spec Sec. 6):
percentiles on the host with numpy, then for every kept token a concatenation of all other tokens,
a similarity row and a top-k. It exists only as the comparison point of ``scripts/benchmark.py``
(the batched :func:`llava_prumerge.reduce_visual_tokens` is what the model uses); it computes the
same tokens as the batched code with ``scope="image"``.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F


def released_loop_prumerge(
    features: torch.Tensor,
    keys: torch.Tensor,
    scores: torch.Tensor,
    knn: int = 32,
    iqr_scale: float = 1.5,
    keep: int | None = None,
) -> list[torch.Tensor]:
    """PruMerge per image with Python loops. ``features [B, N, C]``, ``keys [B, N+1, C]`` (CLS first),
    ``scores [B, N]`` (CLS attention). ``keep`` forces the selection size (else the IQR count).
    Returns one ``[m_i + 1, C]`` tensor per image (merged tokens, then the summary token)."""
    outputs = []
    for b in range(features.shape[0]):
        attention = scores[b]
        if keep is None:
            values = attention.float().cpu().numpy()  # the released code's host round trip
            q1, q3 = np.percentile(values, 25), np.percentile(values, 75)
            count = max(int((values > q3 + iqr_scale * (q3 - q1)).sum()), 1)
        else:
            count = keep
        kept = torch.topk(attention, count).indices
        is_kept = torch.zeros_like(attention, dtype=torch.bool)
        is_kept[kept] = True
        pruned = (~is_kept).nonzero().squeeze(1)
        unit_keys = F.normalize(keys[b, 1:], dim=-1)
        kept_x, kept_keys, kept_attention = features[b, kept], unit_keys[kept], attention[kept]
        pruned_x, pruned_keys, pruned_attention = features[b, pruned], unit_keys[pruned], attention[pruned]
        merged = torch.zeros_like(kept_x)
        for i in range(count):
            rest_x = torch.cat([kept_x[:i], kept_x[i + 1 :], pruned_x])
            rest_keys = torch.cat([kept_keys[:i], kept_keys[i + 1 :], pruned_keys])
            rest_attention = torch.cat([kept_attention[:i], kept_attention[i + 1 :], pruned_attention])
            similarity = rest_keys @ kept_keys[i]
            nearest = torch.topk(similarity, min(knn, len(similarity))).indices
            merged[i] = kept_x[i] + (rest_x[nearest] * rest_attention[nearest, None]).sum(0)
        summary = (pruned_x * pruned_attention[:, None]).sum(0, keepdim=True)
        outputs.append(torch.cat([merged, summary]))
    return outputs
