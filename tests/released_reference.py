"""An independent, deliberately naive re-implementation of the released code's algorithm.

One image at a time, one kept token at a time, percentiles from numpy, plain Python lists, as the
authors' ``clip_encoder.py`` does at batch size 1 (spec Sec. 1-4). The tests compare the batched
library code against it; it is not used by the library.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F


def reference_reduce(features, queries, keys, plus=False, knn=32, iqr_scale=1.5, min_keep=1, merge="sum"):
    """features ``[N, C]``, queries/keys ``[N + 1, C]`` of one image -> ``(tokens [n, C], kept indices)``."""
    n, width = features.shape
    logits = (queries[0].double() @ keys.double().T) / width**0.5
    attention = torch.softmax(logits, dim=0)[1:].float()
    q1, q3 = np.percentile(attention.numpy(), [25, 75])
    fence = q3 + iqr_scale * (q3 - q1)
    count = max(int((attention.numpy() > fence).sum()), min_keep)
    kept = torch.topk(attention, count).indices.tolist()
    if plus:
        stride = max((n // count) // 3, 1)
        for candidate in range(0, n - 1, stride):
            if candidate not in kept:
                kept.append(candidate)
    unit = F.normalize(keys[1:].float(), dim=-1)
    out = []
    for centre in kept:
        others = [j for j in range(n) if j != centre]
        sims = unit[others] @ unit[centre]
        nearest = torch.topk(sims, min(knn, n - 1)).indices.tolist()
        neighbours = [others[t] for t in nearest]
        if merge == "sum":
            token = features[centre].clone()
            for j in neighbours:
                token = token + attention[j] * features[j]
        else:
            total = attention[centre].clone()
            token = attention[centre] * features[centre]
            for j in neighbours:
                token = token + attention[j] * features[j]
                total = total + attention[j]
            token = token / total
        out.append(token)
    pruned = [j for j in range(n) if j not in kept]
    summary = torch.zeros(width)
    weight = 0.0
    for j in pruned:
        summary = summary + attention[j] * features[j]
        weight += float(attention[j])
    if merge == "mean" and weight > 0:
        summary = summary / weight
    out.append(summary)
    return torch.stack(out), kept
