"""The batched algorithms against the spec, a naive per-image reference, and hand-made cases."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest
import torch
from tolerances import assert_sums_close

from llava_prumerge import TokenReductionConfig, cls_attention, outlier_count, reduce_visual_tokens
from llava_prumerge.analysis.reference import released_loop_image
from llava_prumerge.reduction import spatial_grid_indices

SELECTING = ["prumerge", "prumerge_plus", "aits"]


def make_batch(batch=4, n=144, width=32, sharpness=None, seed=0):
    """Random features and q/k whose CLS attention gets sparser with ``sharpness`` (per image)."""
    generator = torch.Generator().manual_seed(seed)
    features = torch.randn(batch, n, width, generator=generator)
    queries = torch.randn(batch, n + 1, width, generator=generator)
    keys = torch.randn(batch, n + 1, width, generator=generator)
    sharpness = sharpness or [1.0 + 1.5 * i for i in range(batch)]
    scale = torch.tensor(sharpness).view(-1, 1, 1)
    return features, queries * scale, keys * scale


def reference_attention(queries: torch.Tensor, keys: torch.Tensor) -> torch.Tensor:
    """Spec Sec. 1 in float64, independently of the library: ``softmax(q_cls · kᵀ / √C)[1:]``."""
    logits = (queries[0].double() @ keys.double().T) / queries.shape[-1] ** 0.5
    return torch.softmax(logits, dim=0)[1:].float()


@pytest.mark.parametrize("plus", [False, True])
@pytest.mark.parametrize("merge", ["sum", "mean"])
@pytest.mark.parametrize("n, knn", [(144, 32), (64, 8), (16, 32)])
def test_matches_naive_reference_of_the_released_algorithm(plus, merge, n, knn):
    features, queries, keys = make_batch(n=n)
    config = TokenReductionConfig(method="prumerge_plus" if plus else "prumerge", knn=knn, merge=merge)
    reduced = reduce_visual_tokens(features, queries, keys, config)
    for b in range(features.shape[0]):
        scores = reference_attention(queries[b], keys[b])
        expected, kept = released_loop_image(features[b], keys[b], scores, knn=knn, plus=plus, merge=merge)
        length = int(reduced.lengths[b])
        assert length == len(expected)
        assert reduced.indices[b, : length - 1].tolist() == kept
        attentive = int(reduced.attentive[b])  # leading indices chosen by attention, then spatial samples
        assert kept[:attentive] == reduced.scores[b].argsort(descending=True)[:attentive].tolist()
        assert attentive == (len(kept) if not plus else attentive) and (plus or attentive == length - 1)
        # the summary token sums over up to N pruned patches, a kept token over knn + 1
        magnitude = 2 * float(features[b].abs().max())
        assert_sums_close(reduced.tokens[b, :length], expected, terms=features.shape[1], magnitude=magnitude)
        assert torch.all(reduced.tokens[b, length:] == 0)


def test_summary_token_is_attention_weighted_sum_of_pruned_tokens():
    features, queries, keys = make_batch(batch=2)
    reduced = reduce_visual_tokens(features, queries, keys, TokenReductionConfig())
    for b in range(2):
        length = int(reduced.lengths[b])
        pruned = torch.ones(features.shape[1], dtype=torch.bool)
        pruned[reduced.indices[b, : length - 1]] = False
        expected = (reduced.scores[b, pruned, None] * features[b, pruned]).sum(0)
        torch.testing.assert_close(reduced.tokens[b, length - 1], expected)


def test_selected_tokens_are_ordered_by_descending_attention():
    features, queries, keys = make_batch()
    reduced = reduce_visual_tokens(features, queries, keys, TokenReductionConfig(method="aits"))
    for b in range(features.shape[0]):
        chosen = reduced.indices[b, : int(reduced.lengths[b])]
        scores = reduced.scores[b, chosen]
        assert torch.all(scores[:-1] >= scores[1:])
        assert torch.equal(reduced.tokens[b, : len(chosen)], features[b, chosen])


@pytest.mark.parametrize(
    "config",
    [
        TokenReductionConfig(method="prumerge"),
        TokenReductionConfig(method="prumerge_plus"),
        TokenReductionConfig(method="aits"),
        TokenReductionConfig(method="prumerge", merge="mean", attention="per_head"),
        TokenReductionConfig(method="prumerge", budget=20),
        TokenReductionConfig(method="prumerge_plus", budget=40),
        TokenReductionConfig(method="sequential", budget=10),
        TokenReductionConfig(method="spatial", grid=(3, 4)),
        TokenReductionConfig(method="none"),
    ],
    ids=lambda c: f"{c.method}-{c.budget}-{c.merge}-{c.attention}",
)
def test_each_image_is_reduced_the_same_alone_and_in_a_batch(config):
    features, queries, keys = make_batch(batch=5)
    batched = reduce_visual_tokens(features, queries, keys, config, num_heads=4)
    for b in range(5):
        alone = reduce_visual_tokens(features[b : b + 1], queries[b : b + 1], keys[b : b + 1], config, num_heads=4)
        length = int(alone.lengths[0])
        assert int(batched.lengths[b]) == length
        assert torch.equal(batched.indices[b, : alone.indices.shape[1]], alone.indices[0])
        # Same selection; values differ only by float summation order inside batched matmuls.
        magnitude = 2 * float(features[b].abs().max())
        assert_sums_close(batched.tokens[b, :length], alone.tokens[0, :length], features.shape[1], magnitude)


def test_counts_adapt_to_the_attention_distribution():
    features, queries, keys = make_sparse_batch([5, 20, 40])
    counts = reduce_visual_tokens(features, queries, keys, TokenReductionConfig(method="aits")).lengths
    assert counts[0] < counts[1] < counts[2]
    # every hot patch is an outlier; a few of the near-flat ones may cross the fence too
    assert torch.all(counts >= torch.tensor([5, 20, 40])) and torch.all(counts <= torch.tensor([5, 20, 40]) + 8)


def make_sparse_batch(hot_counts, n=576, width=32, seed=0):
    """CLS attention like a trained CLIP's (paper Fig. 3a): a few hot patches, the rest near-flat."""
    generator = torch.Generator().manual_seed(seed)
    batch = len(hot_counts)
    features = torch.randn(batch, n, width, generator=generator)
    queries = torch.randn(batch, n + 1, width, generator=generator)
    keys = torch.randn(batch, n + 1, width, generator=generator)
    queries[:, 0] = 0.0
    queries[:, 0, 0] = 10.0
    keys[:, 1:, 0] = 0.1 * torch.randn(batch, n, generator=generator)
    for b, hot in enumerate(hot_counts):
        chosen = torch.randperm(n, generator=generator)[:hot]
        keys[b, 1 + chosen, 0] = 3.0 + torch.rand(hot, generator=generator)
    return features, queries, keys


def test_prumerge_plus_keeps_about_four_times_the_selection():
    features, queries, keys = make_sparse_batch([8, 16, 24, 32, 40, 48])
    aits = reduce_visual_tokens(features, queries, keys, TokenReductionConfig(method="aits")).lengths
    plus = reduce_visual_tokens(features, queries, keys, TokenReductionConfig(method="prumerge_plus")).lengths - 1
    ratio = plus.float() / aits.float()
    assert torch.all(aits < 60), aits
    assert torch.all((ratio >= 3.0) & (ratio <= 5.0)), ratio
    assert 3.5 <= float(ratio.mean()) <= 4.5, ratio


@pytest.mark.parametrize(
    "config, expected",
    [
        (TokenReductionConfig(method="prumerge", budget=32), 32),
        (TokenReductionConfig(method="prumerge_plus", budget=144), 144),
        (TokenReductionConfig(method="aits", budget=40), 40),
        (TokenReductionConfig(method="sequential", budget=40), 40),
        (TokenReductionConfig(method="spatial", grid=(5, 8)), 40),
        (TokenReductionConfig(method="prumerge", budget=576), 576),
    ],
)
def test_budget_gives_exactly_that_many_tokens(config, expected):
    features, queries, keys = make_batch(batch=3, n=576)
    reduced = reduce_visual_tokens(features, queries, keys, config)
    assert reduced.lengths.tolist() == [expected] * 3
    assert reduced.tokens.shape[1] == expected


def test_prumerge_plus_budget_keeps_the_one_to_three_split():
    features, queries, keys = make_batch(batch=2, n=576)
    reduced = reduce_visual_tokens(features, queries, keys, TokenReductionConfig(method="prumerge_plus", budget=145))
    assert reduced.attentive.tolist() == [36, 36]
    for b in range(2):
        top = reduced.scores[b].argsort(descending=True)[:36]
        assert reduced.indices[b, :36].tolist() == top.tolist()
        samples = reduced.indices[b, 36:144]
        assert len(samples) == 108 and torch.all(samples[1:] > samples[:-1])
        assert not set(samples.tolist()) & set(top.tolist())


def test_budget_larger_than_the_image_is_an_error():
    features, queries, keys = make_batch(batch=1, n=16)
    with pytest.raises(ValueError, match="only N=16"):
        reduce_visual_tokens(features, queries, keys, TokenReductionConfig(method="aits", budget=17))


def test_constant_attention_keeps_min_keep_tokens():
    features, _, keys = make_batch(batch=2, n=64)
    queries = torch.zeros(2, 65, 32)  # every patch gets the same attention: no IQR outlier
    reduced = reduce_visual_tokens(features, queries, keys, TokenReductionConfig())
    assert reduced.lengths.tolist() == [2, 2]  # one kept token + the summary token
    keep3 = reduce_visual_tokens(features, queries, keys, TokenReductionConfig(method="aits", min_keep=3))
    assert keep3.lengths.tolist() == [3, 3]
    plus = reduce_visual_tokens(features, queries, keys, TokenReductionConfig(method="prumerge_plus"))
    # m = 1: step 64, stride 21, candidates 0, 21, 42, 63 minus index 63 (= N-1, never a candidate).
    assert torch.all(torch.isfinite(plus.tokens))
    for b in range(2):
        length = int(plus.lengths[b])
        chosen = plus.indices[b, : length - 1].tolist()
        assert chosen[1:] == [c for c in (0, 21, 42) if c != chosen[0]]


def test_knn_larger_than_the_image_uses_every_other_patch():
    features, queries, keys = make_batch(batch=2, n=9, width=8)
    big = reduce_visual_tokens(features, queries, keys, TokenReductionConfig(knn=32))
    exact = reduce_visual_tokens(features, queries, keys, TokenReductionConfig(knn=8))
    torch.testing.assert_close(big.tokens, exact.tokens)


def test_sequential_and_spatial_pick_the_documented_patches():
    features, _, _ = make_batch(batch=2, n=576)
    sequential = reduce_visual_tokens(features, None, None, TokenReductionConfig(method="sequential", budget=40))
    assert torch.equal(sequential.tokens, features[:, :40])
    # 4 x 4 over a 24 x 24 grid: cell centres at rows/cols 3, 9, 15, 21.
    expected = [r * 24 + c for r in (3, 9, 15, 21) for c in (3, 9, 15, 21)]
    assert spatial_grid_indices(4, 4, 24, 24).tolist() == expected
    spatial = reduce_visual_tokens(features, None, None, TokenReductionConfig(method="spatial", grid=(4, 4)))
    assert torch.equal(spatial.tokens, features[:, expected])
    with pytest.raises(ValueError, match="does not fit"):
        reduce_visual_tokens(features, None, None, TokenReductionConfig(method="spatial", grid=(25, 1)))


def test_none_returns_every_token_unchanged():
    features, queries, keys = make_batch(batch=2)
    reduced = reduce_visual_tokens(features, queries, keys, TokenReductionConfig(method="none"))
    assert reduced.tokens is features and reduced.lengths.tolist() == [144, 144]


def test_batch_scope_shares_one_count_computed_over_the_batch():
    features, queries, keys = make_batch(batch=4, n=144)
    scores = cls_attention(queries, keys)
    flat = scores.flatten().double().numpy()
    import numpy as np

    q1, q3 = np.percentile(flat, [25, 75])
    total = int((flat > q3 + 1.5 * (q3 - q1)).sum())
    counts = outlier_count(scores, scope="batch")
    assert counts.tolist() == [total // 4] * 4
    reduced = reduce_visual_tokens(features, queries, keys, TokenReductionConfig(method="aits", scope="batch"))
    assert reduced.lengths.tolist() == [max(total // 4, 1)] * 4
    alone = outlier_count(scores[:1], scope="batch")
    assert alone.tolist() == outlier_count(scores[:1], scope="image").tolist()


def test_single_head_and_per_head_attention_by_hand():
    _, queries, keys = make_batch(batch=1, n=15, width=8)
    q_cls, k = queries[0, 0].double(), keys[0].double()
    single = torch.softmax(k @ q_cls / 8**0.5, dim=0)[1:]
    torch.testing.assert_close(cls_attention(queries, keys)[0].double(), single, rtol=1e-5, atol=1e-7)
    heads = [torch.softmax(k[:, h * 2 : h * 2 + 2] @ q_cls[h * 2 : h * 2 + 2] / 2**0.5, dim=0) for h in range(4)]
    per_head = torch.stack(heads).mean(0)[1:]
    torch.testing.assert_close(cls_attention(queries, keys, "per_head", 4)[0].double(), per_head, rtol=1e-5, atol=1e-7)
    assert float(single.sum()) < 1.0  # the CLS column is dropped, not renormalised


def test_keeps_dtype_and_device():
    features, queries, keys = make_batch(batch=2)
    reduced = reduce_visual_tokens(features.bfloat16(), queries.bfloat16(), keys.bfloat16(), TokenReductionConfig())
    assert reduced.tokens.dtype == torch.bfloat16 and reduced.tokens.device == features.device


def test_half_precision_keys_with_large_norms_pick_the_float32_neighbours():
    # fp16 dot products of keys with norms ~400 would overflow (> 65504); the similarity is float32.
    features, queries, keys = make_batch(batch=2, n=64, width=256)
    keys = keys / keys.norm(dim=-1, keepdim=True) * 400
    config = TokenReductionConfig(knn=8)
    full = reduce_visual_tokens(features, queries, keys, config)
    half = reduce_visual_tokens(features.half(), queries.half(), keys.half(), config)
    assert torch.isfinite(half.tokens).all()
    assert torch.equal(half.lengths, full.lengths) and torch.equal(half.indices, full.indices)
    torch.testing.assert_close(half.tokens.float(), full.tokens, rtol=2e-2, atol=2e-2)


def test_algorithm_module_imports_only_torch():
    source = Path(__file__).parents[1] / "llava_prumerge" / "reduction.py"
    imported = set()
    for node in ast.walk(ast.parse(source.read_text())):
        if isinstance(node, ast.Import):
            imported.update(alias.name.split(".")[0] for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.level == 0:
            imported.add(node.module.split(".")[0])
    assert imported <= {"__future__", "dataclasses", "torch"}, imported
