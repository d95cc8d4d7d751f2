"""Roofline analysis of the LLM prefill (paper Sec. 4.2, Table 2), from model configs alone.

Follows the method the paper cites (LLM-Viewer; Yuan et al. 2024, "LLM Inference Unveiled: Survey
and Roofline Model Insights"): every operation of a decoder block is given its operation count
(OPs) and the bytes it moves (weights read, activations read and written, KV cache written); its
time is ``max(OPs / peak, bytes / bandwidth)``; the prefill time is the sum over operations and
blocks plus the ``lm_head`` row of the last token. Quantisation is weight-only (W4A16 for INT4):
weights take ``bits / 8`` bytes, activations and the KV cache stay FP16, compute runs at the FP16
peak. Memory: weights + KV cache + the activations every operation writes (all kept, as Table 2's
"storing activation" column does; see ``docs/roofline.md`` for how our numbers compare).
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Hardware:
    """Peak dense FP16 tensor throughput (OP/s) and memory bandwidth (B/s), vendor datasheets."""

    name: str
    fp16_ops: float
    bandwidth: float


HARDWARE = {
    "V100": Hardware("V100 SXM2", 125e12, 900e9),  # the paper's device
    "A100": Hardware("A100 80GB SXM", 312e12, 2039e9),
    "H100": Hardware("H100 SXM", 989e12, 3350e9),
}


@dataclass(frozen=True)
class LlamaShape:
    """What the roofline needs of a Llama-family decoder."""

    name: str
    hidden: int
    intermediate: int
    layers: int
    heads: int
    kv_heads: int
    vocab: int

    @property
    def parameters(self) -> int:
        head_dim = self.hidden // self.heads
        attention = 2 * self.hidden * self.hidden + 2 * self.hidden * self.kv_heads * head_dim
        block = attention + 3 * self.hidden * self.intermediate + 2 * self.hidden
        return self.layers * block + 2 * self.vocab * self.hidden + self.hidden


VICUNA = {
    "7B": LlamaShape("Vicuna-7B", 4096, 11008, 32, 32, 32, 32000),
    "13B": LlamaShape("Vicuna-13B", 5120, 13824, 40, 40, 40, 32000),
}
WEIGHT_BITS = {"FP16": 16, "INT4": 4}
ACTIVATION_BYTES = 2  # FP16 activations and KV cache


@dataclass(frozen=True)
class Operation:
    """One operation of one decoder block: its OPs and bytes read/written."""

    name: str
    ops: float
    weight_bytes: float
    read_bytes: float
    write_bytes: float

    @property
    def memory_bytes(self) -> float:
        return self.weight_bytes + self.read_bytes + self.write_bytes

    def seconds(self, hardware: Hardware) -> float:
        """Roofline time: bound by compute or by memory traffic, whichever is slower."""
        return max(self.ops / hardware.fp16_ops, self.memory_bytes / hardware.bandwidth)


def block_operations(shape: LlamaShape, tokens: int, weight_bits: int = 16, batch: int = 1) -> list[Operation]:
    """The operations of one decoder block for a prefill of ``tokens`` tokens."""
    s, h, i, a = batch * tokens, shape.hidden, shape.intermediate, ACTIVATION_BYTES
    head_dim = h // shape.heads
    kv = shape.kv_heads * head_dim
    w = weight_bits / 8
    scores = batch * shape.heads * tokens * tokens  # attention-score elements

    def linear(name: str, d_in: int, d_out: int) -> Operation:
        return Operation(name, 2 * s * d_in * d_out, d_in * d_out * w, s * d_in * a, s * d_out * a)

    return [
        Operation("attn_norm", 4 * s * h, h * a, s * h * a, s * h * a),
        linear("q_proj", h, h),
        linear("k_proj", h, kv),  # its output is the K cache
        linear("v_proj", h, kv),  # its output is the V cache
        Operation("qk_matmul", 2 * scores * head_dim, 0, s * (h + kv) * a, scores * a),
        Operation("softmax", 5 * scores, 0, scores * a, scores * a),
        Operation("sv_matmul", 2 * scores * head_dim, 0, (scores + s * kv) * a, s * h * a),
        linear("o_proj", h, h),
        Operation("attn_add", s * h, 0, 2 * s * h * a, s * h * a),
        Operation("mlp_norm", 4 * s * h, h * a, s * h * a, s * h * a),
        linear("gate_proj", h, i),
        linear("up_proj", h, i),
        Operation("mlp_act", 5 * s * i, 0, 2 * s * i * a, s * i * a),
        linear("down_proj", i, h),
        Operation("mlp_add", s * h, 0, 2 * s * h * a, s * h * a),
    ]


@dataclass(frozen=True)
class PrefillCost:
    """Table 2's columns for one configuration (bytes and seconds)."""

    ops: float
    memory_traffic_bytes: float
    seconds: float
    weight_bytes: float
    kv_cache_bytes: float
    activation_bytes: float

    @property
    def total_memory_bytes(self) -> float:
        return self.weight_bytes + self.kv_cache_bytes + self.activation_bytes


def prefill_cost(
    shape: LlamaShape, tokens: int, hardware: Hardware, weight_bits: int = 16, batch: int = 1
) -> PrefillCost:
    """Roofline prefill cost of ``tokens`` tokens (visual + text) on ``hardware``."""
    operations = block_operations(shape, tokens, weight_bits, batch)
    head = Operation("lm_head", 2 * batch * shape.hidden * shape.vocab, shape.hidden * shape.vocab * weight_bits / 8,
                     batch * shape.hidden * ACTIVATION_BYTES, batch * shape.vocab * ACTIVATION_BYTES)  # fmt: skip
    layers = shape.layers
    head_dim = shape.hidden // shape.heads
    return PrefillCost(
        ops=layers * sum(op.ops for op in operations) + head.ops,
        memory_traffic_bytes=layers * sum(op.memory_bytes for op in operations) + head.memory_bytes,
        seconds=layers * sum(op.seconds(hardware) for op in operations) + head.seconds(hardware),
        weight_bytes=shape.parameters * weight_bits / 8,
        kv_cache_bytes=2 * layers * batch * tokens * shape.kv_heads * head_dim * ACTIVATION_BYTES,
        activation_bytes=layers * sum(op.write_bytes for op in operations),
    )


# Table 2 of the paper (V100; 576 visual tokens vs PruMerge's 40, plus a 40-token prompt):
# (backbone, quantisation, reduced) -> (FLOPs in TB, prefill ms, total memory GB, storing activation GB)
PAPER_TABLE_2 = {
    ("7B", "FP16", False): (9.3, 88.6, 23.3, 4.60),
    ("7B", "FP16", True): (0.91, 15.3, 13.7, 0.28),
    ("7B", "INT4", False): (2.3, 151.6, 5.9, 1.20),
    ("7B", "INT4", True): (0.28, 14.9, 3.5, 0.07),
    ("13B", "FP16", False): (18.2, 170.5, 41.6, 7.30),
    ("13B", "FP16", True): (1.80, 29.5, 26.6, 0.44),
    ("13B", "INT4", False): (4.6, 294.9, 10.5, 1.80),
    ("13B", "INT4", True): (0.45, 29.0, 6.8, 0.11),
}


def table_2(hardware: str = "V100", visual_tokens=(576, 40), prompt_tokens: int = 40) -> list[dict]:
    """Table 2's rows (7B/13B × FP16/INT4 × without/with reduction), with the paper's values."""
    rows = []
    full, reduced = visual_tokens
    for backbone, shape in VICUNA.items():
        for quantisation, bits in WEIGHT_BITS.items():
            for is_reduced, visual in ((False, full), (True, reduced)):
                cost = prefill_cost(shape, visual + prompt_tokens, HARDWARE[hardware], bits)
                paper = PAPER_TABLE_2.get((backbone, quantisation, is_reduced)) if hardware == "V100" else None
                rows.append(
                    {
                        "method": "LLaVA-1.5 w/ PruMerge" if is_reduced else "LLaVA-1.5",
                        "backbone": shape.name,
                        "quantisation": quantisation,
                        "tokens": visual + prompt_tokens,
                        "flops_tb": cost.ops / 1e12,
                        "prefill_ms": cost.seconds * 1e3,
                        "total_memory_gb": cost.total_memory_bytes / 1e9,
                        "activation_gb": cost.activation_bytes / 1e9,
                        "memory_traffic_gb": cost.memory_traffic_bytes / 1e9,
                        "paper": paper,
                    }
                )
    return rows
