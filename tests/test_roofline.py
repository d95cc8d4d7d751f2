"""Roofline arithmetic (paper Sec. 4.2, Table 2): hand-checked small cases and the paper's table.

Also the Video-LLaVA-7B preset (Sec. 4.3) and the LLaVA-NeXT presets: their token counts (LLaVA-NeXT's
against transformers' own) and their LLMs' cost.
"""

import dataclasses
import importlib.util
import json
import subprocess
import sys
from pathlib import Path

import pytest

from llava_prumerge.analysis.roofline import (
    HARDWARE,
    LLAVA_NEXT,
    PAPER_TABLE_2,
    PRECISIONS,
    PRESETS,
    VICUNA,
    VIDEO_LLAVA,
    AnyResTokens,
    Hardware,
    LlamaShape,
    VideoTokens,
    block_operations,
    lm_head_operation,
    prefill_cost,
    table_2,
)

FP16, INT4, W4A16 = PRECISIONS["FP16"], PRECISIONS["INT4"], PRECISIONS["W4A16"]
SCRIPT = Path(__file__).parents[1] / "scripts" / "roofline.py"
TOY = LlamaShape("toy", hidden=4, intermediate=8, layers=2, heads=2, kv_heads=2, vocab=10)
TOKENS = 3  # s; head_dim 2, so the attention scores are 2 heads × 3 × 3 = 18 values


def toy_ops(precision=FP16):
    return {op.name: op for op in block_operations(TOY, TOKENS, precision)}


def test_toy_block_by_hand():
    ops = toy_ops()
    # linear: 2·s·d_in·d_out OPs; weights d_in·d_out, input s·d_in, output s·d_out, 2 bytes each
    q = ops["q_proj"]
    assert (q.ops, q.weight_bytes, q.act_read_bytes, q.act_write_bytes, q.kv_write_bytes) == (96, 32, 24, 24, 0)
    assert (ops["k_proj"].act_write_bytes, ops["k_proj"].kv_write_bytes) == (0, 24)  # K goes to the cache
    assert ops["gate_proj"].ops == 2 * 3 * 4 * 8 == 192 and ops["down_proj"].weight_bytes == 8 * 4 * 2
    # QKᵀ and SV: 2·heads·s²·head_dim = 2·2·9·2 each; the 18 scores are written as FP16
    assert ops["qk_matmul"].ops == ops["sv_matmul"].ops == 72
    assert (ops["qk_matmul"].act_write_bytes, ops["sv_matmul"].act_read_bytes) == (36, 36)
    assert ops["qk_matmul"].kv_read_bytes == ops["sv_matmul"].kv_read_bytes == 24  # K, then V
    assert ops["softmax"].ops == 5 * 18 and ops["attn_norm"].ops == 7 * 3 * 4
    assert ops["mlp_act"].ops == 2 * 3 * 8 and ops["mlp_act"].act_write_bytes == 3 * 8 * 2
    assert (ops["attn_add"].ops, ops["attn_add"].act_read_bytes) == (12, 48)
    assert sum(op.ops for op in ops.values()) == 4 * 96 + 3 * 192 + 2 * 72 + 90 + 2 * 84 + 2 * 12 + 48 == 1434
    assert sum(op.act_write_bytes for op in ops.values()) == 408


def test_toy_prefill_totals_by_hand():
    cost = prefill_cost(TOY, TOKENS, HARDWARE["V100"], FP16)
    assert lm_head_operation(TOY, FP16).ops == 2 * 4 * 10  # the last position's logits only
    assert cost.ops == 2 * 1434 + 80
    assert cost.stored_activation_bytes == 2 * 408 + 10 * 2  # both blocks + the logits
    assert cost.block_activation_bytes == 408
    assert cost.kv_cache_bytes == 2 * 2 * 3 * 4 * 2  # layers · (K, V) · tokens · width · FP16
    # projections 2·16 + 2·16 + 3·32 per block, norms (2·2 + 1)·4, embedding and lm_head 2·10·4
    assert TOY.parameters == 2 * 160 + 20 + 80
    assert cost.weight_bytes == 420 * 2
    assert prefill_cost(TOY, TOKENS, HARDWARE["V100"], INT4).weight_bytes == 400 / 2 + 20 * 2  # norms stay FP16
    assert cost.footprint_bytes == cost.weight_bytes + cost.kv_cache_bytes + cost.block_activation_bytes
    block = toy_ops().values()
    head = lm_head_operation(TOY, FP16)
    assert cost.memory_traffic_bytes == 2 * sum(op.memory_bytes for op in block) + head.memory_bytes


def test_roofline_time_is_the_slower_of_compute_and_memory():
    q = toy_ops()["q_proj"]  # 96 OPs, 32 + 24 + 24 = 80 bytes
    assert q.memory_bytes == 80 and q.intensity == pytest.approx(1.2)
    assert q.seconds(peak_ops=96, bandwidth=40) == pytest.approx(2.0)  # memory-bound: 80 B / 40 B/s
    assert q.seconds(peak_ops=96, bandwidth=160) == pytest.approx(1.0)  # compute-bound: 96 / 96 OP/s
    slow = Hardware("hand", fp16_ops=96, int8_ops=48, bandwidth=1e9, source="test")
    cost = prefill_cost(TOY, TOKENS, slow, FP16)
    assert cost.seconds == pytest.approx(cost.ops / 96)  # tiny sizes: everything compute-bound
    # all-4-bit tensors compute at the INT8 roof (LLM-Viewer); weight-only 4-bit at the FP16 roof
    assert prefill_cost(TOY, TOKENS, slow, INT4).seconds == pytest.approx(cost.ops / 48)
    assert prefill_cost(TOY, TOKENS, slow, W4A16).seconds == pytest.approx(cost.ops / 96)


def test_bit_widths_scale_only_their_tensors():
    fp16, int4, w4a16 = toy_ops(FP16), toy_ops(INT4), toy_ops(W4A16)
    for name in ("q_proj", "k_proj", "gate_proj", "down_proj"):
        assert int4[name].weight_bytes == w4a16[name].weight_bytes == fp16[name].weight_bytes / 4
        assert w4a16[name].act_read_bytes == fp16[name].act_read_bytes  # W4A16: activations stay FP16
        assert int4[name].act_read_bytes == fp16[name].act_read_bytes / 4
        assert int4[name].ops == fp16[name].ops  # OPs do not depend on bit width
    assert int4["k_proj"].kv_write_bytes == fp16["k_proj"].kv_write_bytes / 4
    assert int4["attn_norm"].weight_bytes == fp16["attn_norm"].weight_bytes


def test_fewer_tokens_cost_less_everywhere():
    for precision in PRECISIONS.values():
        full = prefill_cost(VICUNA["7B"], 616, HARDWARE["V100"], precision)
        reduced = prefill_cost(VICUNA["7B"], 80, HARDWARE["V100"], precision)
        for field in ("ops", "seconds", "memory_traffic_bytes", "stored_activation_bytes", "kv_cache_bytes"):
            assert getattr(reduced, field) < getattr(full, field), (precision.name, field)
        assert reduced.footprint_bytes < full.footprint_bytes and reduced.weight_bytes == full.weight_bytes


def test_batch_multiplies_token_work_not_weights():
    one = prefill_cost(VICUNA["7B"], 80, HARDWARE["A100"], FP16)
    four = prefill_cost(VICUNA["7B"], 80, HARDWARE["A100"], FP16, batch=4)
    assert four.ops == pytest.approx(4 * one.ops) and four.kv_cache_bytes == 4 * one.kv_cache_bytes
    assert four.weight_bytes == one.weight_bytes
    with pytest.raises(ValueError):
        prefill_cost(VICUNA["7B"], 0, HARDWARE["A100"], FP16)


def test_vicuna_shapes_and_config_parsing():
    assert VICUNA["7B"].parameters == 6_738_415_616  # Llama-2-7B / Vicuna-7B v1.5
    assert VICUNA["13B"].parameters == 13_015_864_320
    text_config = {"hidden_size": 4096, "intermediate_size": 11008, "num_hidden_layers": 32}
    text_config |= {"num_attention_heads": 32, "vocab_size": 32000}  # no num_key_value_heads: MHA
    assert LlamaShape.from_config({"text_config": text_config}, name="Vicuna-7B") == VICUNA["7B"]


def test_a_llava_hf_style_config_leaves_fields_to_transformers_defaults(tmp_path):
    # as llava-hf/llava-1.5-7b-hf's config.json: text_config names only a few fields (7B shapes are LlamaConfig's defaults)
    config = {
        "architectures": ["LlavaForConditionalGeneration"], "model_type": "llava", "image_token_index": 32000,
        "text_config": {"_name_or_path": "lmsys/vicuna-7b-v1.5", "max_position_embeddings": 4096,
                        "model_type": "llama", "rms_norm_eps": 1e-05, "vocab_size": 32064},
        "vision_config": {"hidden_size": 1024, "image_size": 336, "intermediate_size": 4096,
                          "model_type": "clip_vision_model", "num_attention_heads": 16, "num_hidden_layers": 24,
                          "patch_size": 14, "projection_dim": 768},
    }  # fmt: skip
    checkpoint = tmp_path / "llava-1.5-7b-hf"
    checkpoint.mkdir()
    (checkpoint / "config.json").write_text(json.dumps(config))
    shape = LlamaShape.from_file(checkpoint)
    assert shape.name == "llava-1.5-7b-hf"
    assert (shape.hidden, shape.intermediate, shape.layers, shape.heads, shape.kv_heads) == (4096, 11008, 32, 32, 32)
    assert shape.vocab == 32064
    rows = table_2(backbones=[shape], quantizations=["FP16"])
    assert [row.backbone for row in rows] == ["llava-1.5-7b-hf"] * 2 and all(row.paper is None for row in rows)
    (checkpoint / "config.json").write_text("{not json")
    with pytest.raises(ValueError, match=r"config.json: not a readable config.json"):
        LlamaShape.from_file(checkpoint)


def test_stated_case_flops_are_two_ops_per_parameter_per_token():
    """576 + 40 tokens on 7B FP16: projections 2·6.48 G·616 = 7.98 T, attention 0.2 T; Table 2 says 9.3."""
    cost = prefill_cost(VICUNA["7B"], 576 + 40, HARDWARE["V100"], FP16)
    projections = 2 * VICUNA["7B"].layers * VICUNA["7B"].block_linear_parameters * 616
    assert 8.1e12 < cost.ops < 8.3e12 and cost.ops - projections == pytest.approx(0.2e12, rel=0.05)
    assert cost.ops / 1e12 == pytest.approx(PAPER_TABLE_2[("7B", "FP16", False)].flops_tb, rel=0.13)


def test_table_2_is_reproduced_at_the_sequence_lengths_it_used():
    """Table 2 matches 700 and 70 tokens (docs/roofline.md): time within 3%, the rest as documented."""
    rows = table_2("V100", visual_tokens=(660, 30), prompt_tokens=40)
    assert len(rows) == 8 and all(row.paper for row in rows)
    for row in rows:
        paper = row.paper
        assert row.prefill_ms == pytest.approx(paper.prefill_ms, rel=0.03), row
        assert row.total_memory_gb == pytest.approx(paper.total_memory_gb, rel=0.07), row
        assert row.activation_gb == pytest.approx(paper.activation_gb, rel=0.13), row
        if row.quantization == "FP16":
            assert row.flops_tb == pytest.approx(paper.flops_tb, rel=0.02), row
    # Table 2's INT4 "FLOPs" are its FP16 ones divided by 4 (bar the 7B reduced row, 0.28 = 0.91 / 3.25)
    assert PAPER_TABLE_2[("13B", "INT4", False)].flops_tb == pytest.approx(18.2 / 4, rel=0.02)


def test_table_2_rows_and_paper_column():
    rows = table_2("V100")
    assert [(r.backbone, r.quantization, r.visual_tokens) for r in rows[:4]] == [
        ("Vicuna-7B", "FP16", 576),
        ("Vicuna-7B", "FP16", 40),
        ("Vicuna-7B", "INT4", 576),
        ("Vicuna-7B", "INT4", 40),
    ]
    assert rows[1].method == "LLaVA-1.5 w/ PruMerge" and rows[1].paper == PAPER_TABLE_2[("7B", "FP16", True)]
    assert all(row.paper is None for row in table_2("H100"))
    # only comparable cases get the paper's numbers
    assert all(row.paper for row in table_2(visual_tokens=(660, 30)))
    assert all(row.paper is None for row in table_2(batch=16))
    assert all(row.paper is None for row in table_2(prompt_tokens=2000))
    assert all(row.paper is None for row in table_2(visual_tokens=(576, 144)))
    with pytest.raises(ValueError, match="the first count is the unreduced one"):
        table_2(visual_tokens=(40, 576))
    three = table_2("V100", visual_tokens=(576, 144, 32), quantizations=("W4A16",))
    assert len(three) == 6 and all(row.paper is None for row in three)


def load_cli():
    spec = importlib.util.spec_from_file_location("roofline_cli", SCRIPT)
    cli = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(cli)
    return cli


def test_cli_prints_table_2_and_json(capsys, monkeypatch):
    cli = load_cli()
    monkeypatch.setattr(sys, "argv", ["roofline.py", "--hardware", "V100"])
    cli.main()
    out = capsys.readouterr().out
    assert "| Method | LLM Backbone | Quantization |" in out and out.count("| LLaVA-1.5") == 8
    assert "(9.3, 0.88)" in out  # 7B FP16 FLOPs: ours 8.18 TB next to the paper's 9.3
    monkeypatch.setattr(sys, "argv", ["roofline.py", "--json", "--backbone", "13B", "--hardware", "H100"])
    cli.main()
    rows = json.loads(capsys.readouterr().out)
    assert len(rows) == 4 and rows[0]["backbone"] == "Vicuna-13B" and rows[0]["paper"] is None


def test_video_llava_token_counts():
    """8 frames × (16×16 patches + CLS) = 2056, the paper's 2048 without the CLS; a reduction keeps k + CLS a frame."""
    paper_count = VideoTokens(keep_cls=False)
    assert (VIDEO_LLAVA.frames, VIDEO_LLAVA.patches_per_frame) == (8, 16 * 16)
    assert VIDEO_LLAVA.count() == 8 * 257 == 2056 and paper_count.count() == 8 * 16 * 16 == 2048
    assert VIDEO_LLAVA.kept_per_frame(0.125) == 32 and VIDEO_LLAVA.kept_per_frame(0.25) == 64
    assert VIDEO_LLAVA.count(32) == 8 * 33 == 264 and VIDEO_LLAVA.count(0) == 8  # the CLS tokens stay
    assert paper_count.count(32) == 256 == 2048 * 0.125  # Sec. 4.3's 256 tokens
    assert VideoTokens(frames=4, patches_per_frame=100).count(10) == 44
    preset = PRESETS["video-llava-7b"]
    assert preset.visual_tokens == (2056, 264) and preset.backbones == ("7B",) and not preset.compares_to_table_2
    assert preset.checkpoint == "LanguageBind/Video-LLaVA-7B-hf"
    with pytest.raises(ValueError, match="kept per frame"):
        VIDEO_LLAVA.count(257)  # more than the grid holds
    with pytest.raises(ValueError, match="kept per frame"):
        VideoTokens(frames=0).count()


def test_video_llava_costs_its_llm_at_its_length_and_never_gets_table_2():
    video = table_2(preset="video-llava-7b", quantizations=("FP16", "INT4"))
    assert [(r.method, r.visual_tokens, r.frames) for r in video[:2]] == [
        ("Video-LLaVA", 2056, 8),
        ("Video-LLaVA w/ PruMerge", 264, 8),
    ]
    assert video[1].visual_fraction == pytest.approx(264 / 2056) and video[0].visual_fraction == 1.0
    # same LLM shapes: the LLaVA-1.5-7B case with the same prompt length costs exactly the same
    image = table_2(visual_tokens=(2056, 264), backbones=("7B",), quantizations=("FP16", "INT4"))
    ignored = {"method": None, "frames": None}
    assert [dataclasses.replace(r, **ignored) for r in video] == [dataclasses.replace(r, **ignored) for r in image]
    # independently, 2·weights·tokens for the projections plus QKᵀ and SV (4·layers·heads·s²·head_dim)
    shape, s = VICUNA["7B"], 2056 + 40
    by_hand = (
        2 * shape.layers * shape.block_linear_parameters * s + 4 * shape.layers * shape.heads * s * s * shape.head_dim
    )
    assert video[0].flops_tb * 1e12 == pytest.approx(by_hand, rel=0.01)
    # Table 2's numbers belong to LLaVA-1.5 only, even at the counts and hardware they were computed for
    assert all(row.paper is None for row in table_2("V100", visual_tokens=(576, 40), preset="video-llava-7b"))
    assert all(row.paper for row in table_2("V100", visual_tokens=(576, 40), backbones=("7B",)))


def test_cli_video_llava_preset(capsys, monkeypatch):
    # one subprocess (the script as users run it; its cost is importing the package, torch included), the rest in-process
    command = [sys.executable, str(SCRIPT), "--preset", "video-llava-7b", "--quantization", "FP16"]
    result = subprocess.run(command, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr
    out = result.stdout
    assert "8 frames × (256 patches + CLS) = 2056 visual tokens" in out and "(9.3" not in out
    assert "| Video-LLaVA | Vicuna-7B | FP16 | 2056+40 | 8×257 (100.0%) | 29.5 |" in out
    assert "| Video-LLaVA w/ PruMerge | Vicuna-7B | FP16 | 264+40 | 8×33 (12.8%) | 3.99 (0.14) |" in out

    cli = load_cli()
    argv = ["roofline.py", "--preset", "video-llava-7b", "--no-cls", "--kept-per-frame", "32", "64", "--json"]
    monkeypatch.setattr(sys, "argv", argv)
    cli.main()
    rows = json.loads(capsys.readouterr().out)
    assert [(r["visual_tokens"], r["visual_fraction"]) for r in rows[:3]] == [(2048, 1.0), (256, 0.125), (512, 0.25)]
    assert all(r["paper"] is None and r["frames"] == 8 and r["backbone"] == "Vicuna-7B" for r in rows)
    # parser errors: video options need the video preset; counts come either per frame or as totals
    wrong = (
        ["--frames", "4"],
        ["--preset", "video-llava-7b", "--visual-tokens", "2056", "300", "--kept-per-frame", "32"],
    )
    for args in wrong:
        monkeypatch.setattr(sys, "argv", ["roofline.py", *args])
        with pytest.raises(SystemExit) as exit_info:
            cli.main()
        assert exit_info.value.code == 2


# (height, width): the worst case, a square at 336 px (2 crops, half unpadded), landscape and portrait
# photos, panoramas both ways (3 crops, mostly unpadded), tiny and huge images
IMAGE_SIZES = ((672, 672), (336, 336), (480, 640), (640, 480), (1080, 1920), (100, 1000), (1000, 300), (7, 5), (4000, 3000))  # fmt: skip


def llava_next_processor():
    """transformers' LlavaNextProcessor configured as llava-hf/llava-v1.6-vicuna-7b-hf's, with a two-word tokenizer."""
    from tokenizers import Tokenizer, models
    from transformers import LlavaNextImageProcessor, LlavaNextProcessor, PreTrainedTokenizerFast

    vocabulary = Tokenizer(models.WordLevel({"<unk>": 0, "<image>": 1}, unk_token="<unk>"))
    tokenizer = PreTrainedTokenizerFast(
        tokenizer_object=vocabulary, unk_token="<unk>", additional_special_tokens=["<image>"]
    )
    images = LlavaNextImageProcessor(size={"shortest_edge": 336}, crop_size={"height": 336, "width": 336})
    assert images.image_grid_pinpoints == [list(pinpoint) for pinpoint in LLAVA_NEXT.pinpoints]
    return LlavaNextProcessor(
        images, tokenizer, patch_size=14, vision_feature_select_strategy="default", num_additional_image_tokens=1
    )


def test_llava_next_token_counts_are_transformers():
    """Our count = the ``<image>`` placeholders LlavaNextProcessor writes = the lengths pack_image_features returns."""
    import numpy as np
    import torch
    from transformers import LlavaNextConfig
    from transformers.models.llava_next.modeling_llava_next import (
        LlavaNextModel,
        get_anyres_image_grid_shape,
        image_size_to_num_patches,
    )

    processor = llava_next_processor()
    config = LlavaNextConfig()  # llava-v1.6's pinpoints, CLIP ViT-L/14 at 336 px, "default" features
    model = type("Model", (), {"config": config})()  # pack_image_features reads nothing else
    for height, width in IMAGE_SIZES:
        image = AnyResTokens(height, width)
        inputs = processor(images=np.zeros((height, width, 3), np.uint8), text="<image>", return_tensors="np")
        placeholders = int((inputs["input_ids"] == processor.image_token_id).sum())
        assert image.count() == placeholders, (height, width)
        assert 1 + image.crops == inputs["pixel_values"].shape[1] == image_size_to_num_patches((height, width), config.image_grid_pinpoints, 336)  # fmt: skip
        assert image.crop_grid == get_anyres_image_grid_shape((height, width), config.image_grid_pinpoints, 336)
        features = [torch.zeros(1 + image.crops, 576, 1)]
        sizes = torch.tensor([[height, width]])
        for newline in (torch.zeros(1), None):  # with and without the image_newline tokens
            _, lengths = LlavaNextModel.pack_image_features(model, features, sizes, "default", newline)
            assert AnyResTokens(height, width, newline=newline is not None).count() == lengths.item(), (height, width)
    first_four = [AnyResTokens(*size).count() for size in IMAGE_SIZES[:4]]
    assert first_four == [2928, 1176, 2340, 2352]  # portrait 640 × 480: 48 rows, so 48 newlines


def test_llava_next_presets_and_reduced_counts():
    """672 × 672: 576 + 48×48 + 48 newlines = 2928 (the papers' 2880 = 5 × 576 without them); reduced (1 + crops) × k."""
    assert (LLAVA_NEXT.height, LLAVA_NEXT.width, LLAVA_NEXT.crops, LLAVA_NEXT.feature_grid) == (672, 672, 4, (48, 48))
    assert LLAVA_NEXT.count() == 576 + 48 * 48 + 48 == 2928 and LLAVA_NEXT.tokens_per_view == 576
    no_newline = AnyResTokens(newline=False)
    assert no_newline.count() == 5 * 576 == 2880 == no_newline.count(576)
    assert LLAVA_NEXT.count(32) == 5 * 32 == 160 and LLAVA_NEXT.count(0) == 0  # no newlines once reduced
    # the crops count before unpadding: a 336-px square is 2 crops (336 × 672), half of it padding
    square = AnyResTokens(336, 336)
    assert (square.best_resolution, square.feature_grid, square.count(), square.count(32)) == ((336, 672), (24, 24), 1176, 96)  # fmt: skip
    panorama = AnyResTokens(100, 1000)  # 1 × 3 crops, 8 of their 24 rows left
    assert (panorama.crop_grid, panorama.feature_grid, panorama.count(), panorama.count(10)) == ((1, 3), (8, 72), 1160, 40)  # fmt: skip
    assert (LLAVA_NEXT.layout(2928), LLAVA_NEXT.layout(160), LLAVA_NEXT.layout(161)) == ("576+48×48+48", "5×32", "161")
    # other pinpoints: a single 336 × 672 resolution splits every image into two crops
    wide = AnyResTokens(300, 600, pinpoints=[[336, 672]])
    assert wide.pinpoints == ((336, 672),) and (wide.crops, wide.count()) == (2, 576 + 24 * 48 + 24)
    for preset, size in (("llava-next-7b", "7B"), ("llava-next-13b", "13B")):
        preset = PRESETS[preset]
        assert preset.visual_tokens == (2928, 160) and preset.backbones == (size,) and not preset.compares_to_table_2
        assert preset.checkpoint == f"llava-hf/llava-v1.6-vicuna-{size.lower()}-hf" and preset.anyres == LLAVA_NEXT
    with pytest.raises(ValueError, match="kept per crop"):
        LLAVA_NEXT.count(577)
    with pytest.raises(ValueError, match="image size"):
        AnyResTokens(0, 672)
    with pytest.raises(ValueError, match="multiples of 336"):
        AnyResTokens(pinpoints=((336, 500),))


def test_llava_next_costs_its_llm_at_its_length_and_never_gets_table_2():
    for name, size in (("llava-next-7b", "7B"), ("llava-next-13b", "13B")):
        rows = table_2(preset=name, quantizations=("FP16", "INT4"))
        assert [(r.method, r.visual_tokens, r.visual_layout) for r in rows[:2]] == [
            ("LLaVA-NeXT", 2928, "576+48×48+48"),
            ("LLaVA-NeXT w/ PruMerge", 160, "5×32"),
        ]
        assert rows[1].visual_fraction == pytest.approx(160 / 2928) and all(r.frames is None for r in rows)
        # same LLM shapes: the LLaVA-1.5 case with the same number of tokens costs exactly the same
        image = table_2(visual_tokens=(2928, 160), backbones=(size,), quantizations=("FP16", "INT4"))
        ignored = {"method": None, "visual_layout": None}
        assert [dataclasses.replace(r, **ignored) for r in rows] == [dataclasses.replace(r, **ignored) for r in image]
        ops = prefill_cost(VICUNA[size], 2928 + 40, HARDWARE["V100"], FP16).ops
        assert rows[0].flops_tb * 1e12 == ops == image[0].flops_tb * 1e12
    # Table 2's numbers belong to LLaVA-1.5 only, even at the counts and hardware they were computed for
    assert all(row.paper is None for row in table_2("V100", visual_tokens=(576, 40), preset="llava-next-7b"))
    assert all(row.paper is None for row in table_2("V100", visual_tokens=(660, 30), preset="llava-next-13b"))


def test_cli_llava_next_presets(capsys, monkeypatch):
    command = [sys.executable, str(SCRIPT), "--preset", "llava-next-7b", "--quantization", "FP16"]
    result = subprocess.run(command, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr
    out = result.stdout
    assert "unpadded to 48×48 + 48 newlines = 2928 visual tokens" in out and "(9.3" not in out
    assert "| LLaVA-NeXT | Vicuna-7B | FP16 | 2928+40 | 576+48×48+48 (100.0%) | 43.1 |" in out
    assert "| LLaVA-NeXT w/ PruMerge | Vicuna-7B | FP16 | 160+40 | 5×32 (5.5%) | 2.61 (0.06) |" in out

    cli = load_cli()
    argv = ["--preset", "llava-next-13b", "--image-size", "480", "640", "--kept-per-crop", "32", "144", "--json"]
    monkeypatch.setattr(sys, "argv", ["roofline.py", *argv])
    cli.main()
    rows = json.loads(capsys.readouterr().out)
    assert [(r["visual_tokens"], r["visual_layout"]) for r in rows[:3]] == [
        (576 + 36 * 48 + 36, "576+36×48+36"),
        (160, "5×32"),
        (720, "5×144"),
    ]
    assert all(r["paper"] is None and r["backbone"] == "Vicuna-13B" for r in rows)
    monkeypatch.setattr(sys, "argv", ["roofline.py", "--preset", "llava-next-7b", "--no-newline", "--json"])
    cli.main()
    assert [r["visual_tokens"] for r in json.loads(capsys.readouterr().out)[:2]] == [2880, 160]
    wrong = (  # image options need a llava-next preset; counts per crop or totals; pairs; k ≤ 576
        ["--image-size", "672", "672"],
        ["--preset", "video-llava-7b", "--kept-per-crop", "32"],
        ["--preset", "llava-next-7b", "--visual-tokens", "2928", "300", "--kept-per-crop", "32"],
        ["--preset", "llava-next-7b", "--grid-pinpoints", "336", "672", "672"],
        ["--preset", "llava-next-7b", "--kept-per-crop", "577"],
        ["--preset", "llava-next-7b", "--no-cls"],
    )
    for args in wrong:
        monkeypatch.setattr(sys, "argv", ["roofline.py", *args])
        with pytest.raises(SystemExit) as exit_info:
            cli.main()
        assert exit_info.value.code == 2, args
