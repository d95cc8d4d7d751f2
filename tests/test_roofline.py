"""Roofline arithmetic (paper Table 2) on hand-checked small cases."""

import pytest

from llava_prumerge.roofline import HARDWARE, VICUNA, Hardware, LlamaShape, block_operations, prefill_cost, table_2

TOY = LlamaShape("toy", hidden=4, intermediate=8, layers=2, heads=2, kv_heads=2, vocab=10)


def test_toy_block_by_hand():
    ops = {op.name: op for op in block_operations(TOY, tokens=3, weight_bits=16)}
    # q_proj: 2·s·d_in·d_out = 2·3·4·4 OPs; weights 4·4·2 B; reads 3·4·2 B; writes 3·4·2 B
    assert (ops["q_proj"].ops, ops["q_proj"].weight_bytes, ops["q_proj"].read_bytes) == (96, 32, 24)
    assert ops["gate_proj"].ops == 2 * 3 * 4 * 8 and ops["down_proj"].weight_bytes == 8 * 4 * 2
    # qk: 2·heads·s²·head_dim = 2·2·9·2; scores written: heads·s² FP16 values
    assert ops["qk_matmul"].ops == 72 and ops["qk_matmul"].write_bytes == 2 * 9 * 2
    assert ops["softmax"].ops == 5 * 18
    int4 = {op.name: op for op in block_operations(TOY, tokens=3, weight_bits=4)}
    assert int4["q_proj"].weight_bytes == ops["q_proj"].weight_bytes / 4
    assert int4["q_proj"].read_bytes == ops["q_proj"].read_bytes  # W4A16: activations stay FP16


def test_roofline_time_is_the_slower_of_compute_and_memory():
    ops = {op.name: op for op in block_operations(TOY, tokens=3)}
    compute_bound = Hardware("slow compute", fp16_ops=1.0, bandwidth=1e12)
    memory_bound = Hardware("slow memory", fp16_ops=1e12, bandwidth=1.0)
    assert ops["q_proj"].seconds(compute_bound) == pytest.approx(96.0)
    assert ops["q_proj"].seconds(memory_bound) == pytest.approx(32 + 24 + 24)


def test_prefill_totals_and_memory():
    cost = prefill_cost(TOY, tokens=3, hardware=HARDWARE["V100"])
    per_block = sum(op.ops for op in block_operations(TOY, 3))
    assert cost.ops == 2 * per_block + 2 * 4 * 10  # two blocks + the last token's lm_head row
    assert TOY.parameters == 2 * (2 * 16 + 2 * 16 + 3 * 32 + 8) + 2 * 10 * 4 + 4
    assert cost.weight_bytes == TOY.parameters * 2
    assert cost.kv_cache_bytes == 2 * 2 * 3 * 4 * 2  # K and V, layers, tokens, width, FP16
    assert cost.total_memory_bytes == cost.weight_bytes + cost.kv_cache_bytes + cost.activation_bytes


def test_fewer_tokens_cost_less_everywhere():
    full = prefill_cost(VICUNA["7B"], 616, HARDWARE["V100"])
    reduced = prefill_cost(VICUNA["7B"], 80, HARDWARE["V100"])
    for field in ("ops", "seconds", "memory_traffic_bytes", "kv_cache_bytes", "activation_bytes"):
        assert getattr(reduced, field) < getattr(full, field), field
    assert reduced.weight_bytes == full.weight_bytes


def test_table_2_fp16_rows_are_close_to_the_paper():
    rows = {(r["backbone"], r["quantisation"], r["method"]): r for r in table_2("V100")}
    assert len(rows) == 8
    seven = rows[("Vicuna-7B", "FP16", "LLaVA-1.5")]
    assert 6.7e9 < VICUNA["7B"].parameters < 6.8e9
    # within 20% of Table 2 for FLOPs and prefill time, 5% for the stored activations (docs/roofline.md)
    assert seven["flops_tb"] == pytest.approx(9.3, rel=0.2) and seven["prefill_ms"] == pytest.approx(88.6, rel=0.2)
    assert seven["activation_gb"] == pytest.approx(4.6, rel=0.05)
    reduced = rows[("Vicuna-7B", "FP16", "LLaVA-1.5 w/ PruMerge")]
    assert reduced["prefill_ms"] == pytest.approx(15.3, rel=0.1) and reduced["total_memory_gb"] == pytest.approx(
        13.7, rel=0.1
    )
