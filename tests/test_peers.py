"""The peer reducers (:mod:`llava_prumerge.peers`) against naive per-image reimplementations of
their released code, hand-made tie cases, exact budgets and batch invariance.

The ``released_*`` functions below are written in the style of each peer's released code (one
image at a time, the same operations in the same order, ``torch.topk``/``argmax`` as released)
and share no helper with the library.
"""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from llava_prumerge.peers import (
    block_cls_attention,
    divprune_count,
    divprune_select,
    fastervlm_select,
    image_seeds,
    pool_tokens,
    pooling_grid,
    random_select,
    visionzip_reduce,
    visionzip_split,
)

# (batch, patches, width, heads): tiny 6 x 6 grids and one real-size 24 x 24 grid
SHAPES = [(3, 36, 16, 4), (2, 576, 64, 4)]
FEATURE_TOL = {"atol": 1e-6, "rtol": 1e-6}


def make_block(batch, n, width, seed=0):
    """Random hidden states, q/k projections of one block (CLS row first) and projected features."""
    generator = torch.Generator().manual_seed(seed)
    hidden = torch.randn(batch, n + 1, width, generator=generator)
    queries = torch.randn(batch, n + 1, width, generator=generator) * 2.0
    keys = torch.randn(batch, n + 1, width, generator=generator) * 2.0
    projected = torch.randn(batch, n, 2 * width, generator=generator)
    return hidden, queries, keys, projected


# ---------------------------------------------------------------------------------------------
# naive references in the style of the released code, one image at a time
# ---------------------------------------------------------------------------------------------


def released_clip_attention(queries, keys, num_heads):
    """transformers' ``CLIPAttention.forward`` as VisionZip patches it (``visionzip/utils.py``), for
    ``[1, N + 1, C]`` q/k: the attention ``[1, H, N + 1, N + 1]`` and ``raw_key_states.mean(1)``."""
    bsz, tgt_len, embed_dim = queries.size()
    head_dim = embed_dim // num_heads
    scale = head_dim**-0.5

    def _shape(tensor, seq_len, bsz):
        return tensor.view(bsz, seq_len, num_heads, head_dim).transpose(1, 2).contiguous()

    query_states = queries * scale
    key_states = _shape(keys, -1, bsz)
    raw_key_states = key_states.clone().detach()
    proj_shape = (bsz * num_heads, -1, head_dim)
    query_states = _shape(query_states, tgt_len, bsz).view(*proj_shape)
    key_states = key_states.view(*proj_shape)
    attn_weights = torch.bmm(query_states, key_states.transpose(1, 2))
    attn_weights = torch.nn.functional.softmax(attn_weights, dim=-1)
    return attn_weights.view(bsz, num_heads, tgt_len, tgt_len), raw_key_states.mean(1)


def released_fastervlm(queries, keys, num_heads, visual_token_num):
    """FasterVLM: ``feature_select`` (``attentions[-2][:, :, 0, 1:]``) and ``encode_images``."""
    kept = []
    for b in range(queries.shape[0]):
        attentions, _ = released_clip_attention(queries[b : b + 1], keys[b : b + 1], num_heads)
        image_attentions = attentions[:, :, 0, 1:]
        B, N = image_attentions.shape[0], image_attentions.shape[2]
        image_attentions = image_attentions.mean(dim=1)  # (B, N)
        token_indices = torch.topk(image_attentions, k=visual_token_num, dim=1)[1]  # (B, T)
        index_masks = torch.zeros(B, N, dtype=torch.bool)
        index_masks.scatter_(1, token_indices, True)
        kept.append(torch.arange(N)[index_masks[0]])  # image_feature[index_mask]
    return torch.stack(kept)


def released_visionzip(hidden, queries, keys, num_heads, dominant, contextual):
    """VisionZip's ``CLIPVisionTower_VisionZip.forward`` (``visionzip/clip_encoder.py``), one image
    at a time; ``main.py`` passes ``dominant - 1`` as ``dominant_num``."""
    outputs, kept, targets = [], [], []
    for b in range(hidden.shape[0]):
        attn_weights, metric = released_clip_attention(queries[b : b + 1], keys[b : b + 1], num_heads)
        hidden_states = hidden[b : b + 1]
        dominant_num = dominant - 1
        contextual_num = contextual

        ## Dominant Visual Tokens
        cls_idx = 0
        cls_attention = attn_weights[:, :, cls_idx, cls_idx + 1 :]
        cls_attention_sum = cls_attention.sum(dim=1)
        topk_indices = cls_attention_sum.topk(dominant_num, dim=1).indices + 1
        all_indices = torch.cat([torch.zeros((hidden_states.shape[0], 1), dtype=topk_indices.dtype), topk_indices], 1)
        mask = torch.ones_like(hidden_states[:, :, 0], dtype=torch.bool).scatter_(1, all_indices, False)
        dominant_tokens = hidden_states.masked_select(~mask.unsqueeze(-1)).view(
            hidden_states.shape[0], dominant_num + 1, hidden_states.shape[2]
        )

        ### Filter
        metric_filtered = metric[mask].view(hidden_states.shape[0], hidden_states.shape[1] - (dominant_num + 1), -1)
        hidden_states_filtered = hidden_states.masked_select(mask.unsqueeze(-1)).view(
            hidden_states.shape[0], hidden_states.shape[1] - (dominant_num + 1), hidden_states.shape[2]
        )
        metric_normalized = metric_filtered / metric_filtered.norm(dim=-1, keepdim=True)

        ## Contextual Visual Tokens
        step = max(1, metric_normalized.shape[1] // contextual_num)
        target_indices = torch.arange(0, metric_normalized.shape[1], step)[:contextual_num]
        target_tokens = metric_normalized[:, target_indices, :]
        others = ~torch.isin(torch.arange(metric_normalized.shape[1]), target_indices)
        tokens_to_merge = metric_normalized[:, others, :]
        similarity = torch.bmm(tokens_to_merge, target_tokens.transpose(1, 2))
        assign_one_hot = torch.zeros(tokens_to_merge.shape[0], tokens_to_merge.shape[1], contextual_num)
        assign_one_hot.scatter_(2, similarity.argmax(dim=2).unsqueeze(-1), 1)
        counts = assign_one_hot.sum(dim=1).clamp(min=1).unsqueeze(-1)
        hidden_to_merge = hidden_states_filtered[:, others, :]
        aggregated_hidden = torch.bmm(assign_one_hot.transpose(1, 2), hidden_to_merge) / counts
        target_hidden = hidden_states_filtered[:, target_indices, :]
        contextual_tokens = target_hidden + aggregated_hidden

        outputs.append(torch.cat([dominant_tokens, contextual_tokens], dim=1)[0])
        kept.append(topk_indices[0].sort().values - 1)
        targets.append(mask[0, 1:].nonzero()[:, 0][target_indices])
    return torch.stack(outputs), torch.stack(kept), torch.stack(targets)


def pairwise_cosine_similarity(matrix):
    norm_matrix = matrix / matrix.norm(dim=1, keepdim=True)
    cosine_similarity = torch.mm(norm_matrix, norm_matrix.t())
    return cosine_similarity


def released_divprune_image(visual_feature_vectors, image_feature_length, threshold_ratio, first_max=True):
    """DivPrune's ``DivPrune`` (vbdi/divprune ``LLaVA/llava/model/llava_arch.py``) and the sort of
    ``keep_indexs``. ``first_max=False``: a deliberately wrong tie rule (the last maximum)."""
    threshold_terms = int(round(threshold_ratio * image_feature_length))
    cosine_matrix = 1.0 - (pairwise_cosine_similarity(visual_feature_vectors))
    s = torch.empty(threshold_terms, dtype=torch.long)
    for i in range(threshold_terms):
        if i == 0:
            m2 = cosine_matrix
        else:
            m2 = torch.index_select(cosine_matrix, 0, torch.index_select(s, 0, torch.arange(0, i)))
        if i == 0:
            scores = torch.topk(m2, 2, dim=0, largest=False).values[1, :]  # for distance
        else:
            scores = torch.min(m2, dim=0).values  # for distance
        if first_max:
            phrase_to_add_idx = torch.argmax(scores)
        else:
            phrase_to_add_idx = len(scores) - 1 - torch.argmax(scores.flip(0))
        s[i] = phrase_to_add_idx
    return s.sort().values


def released_divprune(projected, threshold_ratio):
    return torch.stack([released_divprune_image(image, image.shape[0], threshold_ratio) for image in projected])


# ---------------------------------------------------------------------------------------------
# block CLS attention
# ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize("batch, n, width, heads", SHAPES)
@pytest.mark.parametrize("reduce", ["mean", "sum"])
def test_block_cls_attention_is_row_zero_of_clip_attention(batch, n, width, heads, reduce):
    _, queries, keys, _ = make_block(batch, n, width)
    attention = block_cls_attention(queries, keys, heads, reduce)
    assert attention.shape == (batch, n) and attention.dtype == torch.float32
    for b in range(batch):
        weights, _ = released_clip_attention(queries[b : b + 1], keys[b : b + 1], heads)
        row = weights[0, :, 0, 1:]  # CLS column dropped, not renormalised
        expected = row.mean(dim=0) if reduce == "mean" else row.sum(dim=0)
        torch.testing.assert_close(attention[b], expected, **FEATURE_TOL)
    # not renormalised: the CLS column's share is missing from every head
    total = attention.sum(dim=1) if reduce == "mean" else attention.sum(dim=1) / heads
    assert torch.all(total < 1)


def test_block_cls_attention_rejects_unknown_reduce():
    _, queries, keys, _ = make_block(1, 4, 8)
    with pytest.raises(ValueError):
        block_cls_attention(queries, keys, 2, "max")
    with pytest.raises(ValueError):
        block_cls_attention(queries, keys, 3, "mean")


# ---------------------------------------------------------------------------------------------
# FasterVLM
# ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize("batch, n, width, heads", SHAPES)
def test_fastervlm_matches_released_code(batch, n, width, heads):
    _, queries, keys, _ = make_block(batch, n, width, seed=1)
    k = n // 9
    kept = fastervlm_select(block_cls_attention(queries, keys, heads, "mean"), k)
    assert kept.dtype == torch.long and kept.shape == (batch, k)
    assert torch.equal(kept, released_fastervlm(queries, keys, heads, k))


def test_fastervlm_ties_keep_the_lower_index_in_raster_order():
    attention = torch.tensor([[0.1, 0.3, 0.2, 0.3, 0.3, 0.0]])
    assert fastervlm_select(attention, 2).tolist() == [[1, 3]]
    assert fastervlm_select(attention, 4).tolist() == [[1, 2, 3, 4]]
    assert fastervlm_select(attention, 0).shape == (1, 0)


# ---------------------------------------------------------------------------------------------
# VisionZip
# ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "batch, n, width, heads, dominant, contextual", [(3, 36, 16, 4, 7, 5), (2, 576, 64, 4, 54, 10)]
)
def test_visionzip_matches_released_code(batch, n, width, heads, dominant, contextual):
    hidden, queries, keys, _ = make_block(batch, n, width, seed=2)
    attention = block_cls_attention(queries, keys, heads, "sum")
    tokens, kept, targets = visionzip_reduce(hidden, attention, keys, heads, dominant, contextual)
    expected, expected_kept, expected_targets = released_visionzip(hidden, queries, keys, heads, dominant, contextual)
    assert tokens.shape == (batch, dominant + contextual, width)
    assert kept.shape == (batch, dominant - 1) and targets.shape == (batch, contextual)
    assert kept.dtype == targets.dtype == torch.long
    assert torch.equal(kept, expected_kept)
    assert torch.equal(targets, expected_targets)
    torch.testing.assert_close(tokens, expected, **FEATURE_TOL)


def constructed_visionzip():
    """8 patches (CLS + 8 rows); patches 5 and 2 dominate; the pool is patches 0 1 3 4 6 7, the
    targets (c = 3, step 2) patches 0 3 6 with metrics e0, e1, -e0. Patch 1 (1, 1) and patch 7
    (3, 3) are equally close to targets 0 and 3 and go to the first (0); patch 4 (0.5, 2) goes to
    3; target 6 (-1, 0) gets nobody."""
    width, heads = 4, 2
    hidden = torch.arange(9 * width, dtype=torch.float32).view(1, 9, width) ** 0.5
    hidden[0, 0] = -100.0  # the CLS: must appear once, first, and nowhere else
    attention = torch.tensor([[0.01, 0.02, 0.8, 0.03, 0.04, 0.9, 0.05, 0.06]])
    metric = torch.tensor([[0.3, 0.7], [1, 0], [1, 1], [5, 5], [0, 1], [0.5, 2], [5, 5], [-1, 0], [3, 3]])
    keys = metric.repeat(1, heads)[None]  # both heads equal: the mean over heads is the metric itself
    queries = torch.zeros_like(keys)
    return hidden, attention, keys, queries, heads


def test_visionzip_cls_targets_and_ties_on_a_constructed_case():
    hidden, attention, keys, _, heads = constructed_visionzip()
    tokens, kept, targets = visionzip_reduce(hidden, attention, keys, heads, dominant=3, contextual=3)
    patch = hidden[0, 1:]
    assert kept.tolist() == [[2, 5]]
    assert targets.tolist() == [[0, 3, 6]]
    expected = torch.stack(
        [
            hidden[0, 0],  # the CLS first
            patch[2],
            patch[5],  # dominant patches in raster order
            patch[0] + (patch[1] + patch[7]) / 2,  # ties go to the first target
            patch[3] + patch[4],
            patch[6],  # no member: the target alone
        ]
    )
    torch.testing.assert_close(tokens[0], expected, **FEATURE_TOL)
    assert (tokens[0] == -100.0).all(dim=1).tolist() == [True, False, False, False, False, False]


def test_visionzip_reference_agrees_on_the_constructed_case_and_a_wrong_tie_rule_does_not():
    hidden, attention, keys, _, heads = constructed_visionzip()
    tokens, _, _ = visionzip_reduce(hidden, attention, keys, heads, dominant=3, contextual=3)
    # the released code's merge on the same dominant choice (the attention is given here)
    patch = hidden[0, 1:]
    pool = [0, 1, 3, 4, 6, 7]
    metric = keys[0, 1:, :2][pool]
    metric = metric / metric.norm(dim=-1, keepdim=True)
    target_indices = torch.arange(0, 6, 2)[:3]
    others = [i for i in range(6) if i not in target_indices.tolist()]
    similarity = metric[others] @ metric[target_indices].T
    for tie_rule, should_match in [(similarity.argmax(dim=1), True), (2 - similarity.flip(1).argmax(dim=1), False)]:
        merged = []
        for t in range(3):
            members = [pool[others[i]] for i in range(len(others)) if tie_rule[i] == t]
            mean = patch[members].mean(dim=0) if members else torch.zeros_like(patch[0])
            merged.append(patch[pool[int(target_indices[t])]] + mean)
        assert torch.allclose(tokens[0, 3:], torch.stack(merged)) is should_match


def test_visionzip_budgets_and_zero_contextual():
    hidden, queries, keys, _ = make_block(2, 36, 16, seed=3)
    attention = block_cls_attention(queries, keys, 4, "sum")
    for dominant, contextual in [(1, 35), (1, 1), (36, 1), (37, 0), (10, 0), (5, 32)]:
        tokens, kept, targets = visionzip_reduce(hidden, attention, keys, 4, dominant, contextual)
        assert tokens.shape == (2, dominant + contextual, 16)
        assert kept.shape == (2, dominant - 1) and targets.shape == (2, contextual)
        assert torch.equal(tokens[:, 0], hidden[:, 0])
        # kept and targets are disjoint patches (the CLS is neither)
        for b in range(2):
            assert len(set(kept[b].tolist()) | set(targets[b].tolist())) == dominant - 1 + contextual
    with pytest.raises(ValueError):
        visionzip_reduce(hidden, attention, keys, 4, 10, 28)  # 27 patches left, 28 targets


def test_visionzip_split():
    assert visionzip_split(64) == (54, 10)
    assert visionzip_split(128) == (108, 20)
    assert visionzip_split(192) == (162, 30)
    assert visionzip_split(32) == (27, 5)
    assert visionzip_split(100) == (84, 16)
    assert visionzip_split(1) == (1, 0)
    for budget in range(1, 600):
        dominant, contextual = visionzip_split(budget)
        assert dominant >= 1 and contextual >= 0 and dominant + contextual == budget


# ---------------------------------------------------------------------------------------------
# DivPrune
# ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize("batch, n, width, heads", SHAPES)
@pytest.mark.parametrize("ratio", [0.1, 64 / 576, 0.5])
def test_divprune_matches_released_code(batch, n, width, heads, ratio):
    _, _, _, projected = make_block(batch, n, width, seed=4)
    k = divprune_count(ratio, n)
    kept = divprune_select(projected, k)
    assert kept.dtype == torch.long and kept.shape == (batch, k)
    assert torch.equal(kept, released_divprune(projected, ratio))


def duplicate_tokens():
    """Axis-aligned tokens, so every cosine distance is exactly 0 or 1: directions e0 (patches 0,
    1, 7), e1 (2, 4), e2 (3, 6) and e3 (5, the only token without a duplicate)."""
    directions = [0, 0, 1, 2, 1, 3, 2, 0]
    return F.one_hot(torch.tensor(directions), 4).float()[None] * torch.tensor([1, 2, 1, 1, 3, 1, 1, 5.0])[:, None]


def test_divprune_ties_go_to_the_lower_index_on_duplicate_tokens():
    features = duplicate_tokens()
    # first pick: 5 (its nearest other token is at distance 1, all others have a duplicate at 0);
    # then every direction not yet picked is at distance 1: 0 (e0), 2 (e1), 3 (e2), lowest first
    assert divprune_select(features, 4).tolist() == [[0, 2, 3, 5]]
    assert torch.equal(divprune_select(features, 4), released_divprune_image(features[0], 8, 0.5)[None])
    # a reference with the wrong tie rule (last maximum) picks other tokens: the test can fail
    wrong = released_divprune_image(features[0], 8, 0.5, first_max=False)
    assert wrong.tolist() == [4, 5, 6, 7]  # 5, then the last of each direction: 7, 6, 4
    assert not torch.equal(divprune_select(features, 4)[0], wrong)


def test_divprune_never_repicks_where_the_released_loop_does():
    features = duplicate_tokens()
    # all four directions picked: every unpicked token is at distance 0 from the picks. The released
    # loop does not exclude picked tokens (their own distance is 0 too) and picks token 0 again.
    released = released_divprune_image(features[0], 8, 5 / 8)
    assert released.tolist() == [0, 0, 2, 3, 5]
    ours = divprune_select(features, 5)
    assert ours.tolist() == [[0, 1, 2, 3, 5]]
    assert divprune_select(features, 8).tolist() == [list(range(8))]


def test_divprune_count_is_pythons_round():
    assert divprune_count(0.1, 576) == 58
    assert divprune_count(64 / 576, 576) == 64
    assert divprune_count(0.5, 5) == 2  # round half to even, as int(round(...)) in DivPrune
    assert divprune_count(0.0, 576) == 0


# ---------------------------------------------------------------------------------------------
# batch invariance and exact counts, all peers
# ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize("batch, n, width, heads", SHAPES)
def test_every_peer_is_batch_invariant(batch, n, width, heads):
    hidden, queries, keys, projected = make_block(batch, n, width, seed=5)
    side = int(n**0.5)

    def run(sl):
        mean_attention = block_cls_attention(queries[sl], keys[sl], heads, "mean")
        sum_attention = block_cls_attention(queries[sl], keys[sl], heads, "sum")
        zipped = visionzip_reduce(hidden[sl], sum_attention, keys[sl], heads, 7, 5)
        return {
            "mean_attention": mean_attention,
            "fastervlm": fastervlm_select(mean_attention, 8),
            "visionzip_tokens": zipped[0],
            "visionzip_kept": zipped[1],
            "visionzip_targets": zipped[2],
            "divprune": divprune_select(projected[sl], 8),
            "pooled": pool_tokens(hidden[sl, 1:], (side, side), (2, 3)),
        }

    together = run(slice(None))
    for b in range(batch):
        alone = run(slice(b, b + 1))
        for name, value in alone.items():
            if value.dtype == torch.long:
                assert torch.equal(value[0], together[name][b]), name
            else:
                torch.testing.assert_close(value[0], together[name][b], **FEATURE_TOL, msg=name)
    assert together["fastervlm"].shape == (batch, 8)
    assert together["visionzip_tokens"].shape == (batch, 12, width)
    assert together["divprune"].shape == (batch, 8)
    assert together["pooled"].shape == (batch, 6, width)
    for name in ("fastervlm", "visionzip_kept", "divprune"):  # ascending, distinct
        assert torch.all(together[name].diff(dim=1) > 0), name


# ---------------------------------------------------------------------------------------------
# Random
# ---------------------------------------------------------------------------------------------


def test_random_select_is_seeded_per_image_and_batch_invariant():
    pixels = torch.randn(4, 3, 14, 14, generator=torch.Generator().manual_seed(6))
    pixels[3] = pixels[1]  # the same image twice in one batch
    seeds = image_seeds(pixels, seed=0)
    assert seeds.dtype == torch.long and seeds.shape == (4,) and torch.all(seeds >= 0)
    assert seeds[1] == seeds[3] and len(set(seeds.tolist())) == 3
    # the same image alone, in another batch, in float64, as a non-contiguous view: the same seed
    assert image_seeds(pixels[1:2], 0).item() == seeds[1]
    assert image_seeds(torch.cat([pixels[2:], pixels[:2]]), 0).tolist() == seeds[[2, 3, 0, 1]].tolist()
    assert image_seeds(pixels.double(), 0).tolist() == seeds.tolist()
    assert image_seeds(pixels.transpose(2, 3).contiguous().transpose(2, 3), 0).tolist() == seeds.tolist()
    assert image_seeds(pixels, 1).tolist() != seeds.tolist()  # the global seed matters

    picks = random_select(seeds, 36, 9)
    assert picks.dtype == torch.long and picks.shape == (4, 9)
    assert torch.all(picks.diff(dim=1) > 0) and picks.min() >= 0 and picks.max() < 36
    assert torch.equal(picks[1], picks[3])  # same image, same picks
    assert len({tuple(row) for row in picks.tolist()}) == 3  # different images, different picks
    for b in range(4):  # per image, as a naive loop would draw them
        generator = torch.Generator().manual_seed(int(seeds[b]))
        assert picks[b].tolist() == sorted(torch.randperm(36, generator=generator)[:9].tolist())
        assert torch.equal(random_select(image_seeds(pixels[b : b + 1], 0), 36, 9)[0], picks[b])
    assert torch.equal(random_select(seeds, 36, 9), picks)  # deterministic
    assert random_select(seeds, 576, 64).shape == (4, 64)


# ---------------------------------------------------------------------------------------------
# Pooling
# ---------------------------------------------------------------------------------------------


def test_pooling_24x24_to_8x8_is_a_3x3_average_pool():
    features = torch.randn(2, 576, 16, generator=torch.Generator().manual_seed(7))
    pooled = pool_tokens(features, (24, 24), (8, 8))
    image = features.transpose(1, 2).reshape(2, 16, 24, 24)
    expected = F.avg_pool2d(image, kernel_size=3).flatten(2).transpose(1, 2)
    assert pooled.shape == (2, 64, 16)
    torch.testing.assert_close(pooled, expected, **FEATURE_TOL)
    assert pool_tokens(features, (24, 24), pooling_grid(128)).shape == (2, 128, 16)
    assert pool_tokens(features, (24, 24), pooling_grid(192)).shape == (2, 192, 16)


def test_pooling_by_hand():
    # a 2 x 4 grid of scalar tokens 0..7 (raster order) pooled to 1 x 2: two 2 x 2 blocks
    features = torch.arange(8, dtype=torch.float32).view(1, 8, 1)
    assert pool_tokens(features, (2, 4), (1, 2)).flatten().tolist() == [(0 + 1 + 4 + 5) / 4, (2 + 3 + 6 + 7) / 4]
    # a 3 x 3 grid pooled to 2 x 2: overlapping adaptive bins rows/cols [0, 2) and [1, 3)
    grid = torch.tensor([[1.0, 2, 3], [4, 5, 6], [7, 8, 9]])
    pooled = pool_tokens(grid.reshape(1, 9, 1), (3, 3), (2, 2)).flatten().tolist()
    assert pooled == [(1 + 2 + 4 + 5) / 4, (2 + 3 + 5 + 6) / 4, (4 + 5 + 7 + 8) / 4, (5 + 6 + 8 + 9) / 4]
    # the output keeps the input dtype
    assert pool_tokens(features.half(), (2, 4), (1, 2)).dtype == torch.float16


def test_pooling_grid_is_the_spatial_rule():
    assert pooling_grid(64) == (8, 8)
    assert pooling_grid(128) == (8, 16)
    assert pooling_grid(192) == (12, 16)
