"""The peers through every path PruMerge has: the model (against the stock tower's own tensors),
training, lmms-eval, the pictures, and scripts/eval/peers.sh end to end."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest
import torch

from llava_prumerge import peers
from llava_prumerge.config import PEER_METHODS, TokenReductionConfig, resolve_reduction
from llava_prumerge.conversation import generation_prompt
from llava_prumerge.images import pad_to_square
from llava_prumerge.tiny.benchmarks import write_tiny_benchmarks
from llava_prumerge.tiny.setting import build_tiny_model, build_tiny_processor, demo_images, write_tiny_assets

ROOT = Path(__file__).parents[1]
BUDGET = 16


@pytest.fixture(scope="module")
def tiny():
    processor = build_tiny_processor()
    model = build_tiny_model(tokenizer=processor.tokenizer)
    model.model.vision_tower.config._attn_implementation = "eager"  # the stock tower returns attentions
    photos = [pad_to_square(p, processor) for p in demo_images()[:3]]
    inputs = processor(text=[generation_prompt("What is it?")] * 3, images=photos, return_tensors="pt", padding=True)
    return model, processor, inputs


def _stock_tensors(model, pixels):
    """What the peers' released code reads, from the stock tower: hidden_states[-2] (with CLS),
    attentions[-2] (block 22's attention probabilities), block 22's k_proj output (a hook)."""
    tower = model.model.vision_tower
    captured = {}
    block = tower.vision_model.encoder.layers[-2] if hasattr(tower, "vision_model") else tower.encoder.layers[-2]
    handle = block.self_attn.k_proj.register_forward_hook(lambda m, i, o: captured.setdefault("keys", o))
    try:
        out = tower(pixels, output_hidden_states=True, output_attentions=True)
    finally:
        handle.remove()
    return out.hidden_states[-2], out.attentions[-2], captured["keys"]


def test_fastervlm_and_visionzip_read_block_22_as_the_stock_tower_computes_it(tiny):
    model, _, inputs = tiny
    pixels = inputs["pixel_values"]
    with torch.no_grad():
        hidden, attention, keys = _stock_tensors(model, pixels)
        cls_row = attention[:, :, 0, 1:].float()  # [B, H, N]
        model.set_token_reduction(resolve_reduction("fastervlm", BUDGET))
        ours = model.get_image_features(pixel_values=pixels)
        expected = cls_row.mean(dim=1).topk(BUDGET, dim=1).indices.sort(dim=1).values
        assert torch.equal(ours.kept_indices, expected)
        torch.testing.assert_close(ours.cls_attention, cls_row.mean(dim=1), rtol=1e-5, atol=1e-7)

        model.set_token_reduction(resolve_reduction("visionzip", BUDGET))
        ours = model.get_image_features(pixel_values=pixels)
        dominant, contextual = peers.visionzip_split(BUDGET)
        heads = model.config.vision_config.num_attention_heads
        tokens, kept, _ = peers.visionzip_reduce(hidden, cls_row.sum(dim=1), keys, heads, dominant, contextual)
        assert torch.equal(ours.kept_indices, kept)
        torch.testing.assert_close(ours.last_hidden_state, tokens, rtol=1e-5, atol=1e-6)
        assert ours.visual_token_counts.tolist() == [BUDGET] * 3


def test_divprune_selects_on_the_projected_features(tiny):
    model, _, inputs = tiny
    pixels = inputs["pixel_values"]
    with torch.no_grad():
        hidden, _, _ = _stock_tensors(model, pixels)
        projected = model.model.multi_modal_projector(hidden[:, 1:])
        model.set_token_reduction(resolve_reduction("divprune", BUDGET))
        ours = model.get_image_features(pixel_values=pixels)
    kept = peers.divprune_select(projected, BUDGET)
    assert torch.equal(ours.kept_indices, kept)
    expected = projected.gather(1, kept[..., None].expand(-1, -1, projected.shape[-1]))
    torch.testing.assert_close(torch.stack(list(ours.pooler_output)), expected, rtol=1e-5, atol=1e-6)
    ratio = TokenReductionConfig(method="divprune", keep_ratio=0.098)  # DivPrune's own setting
    model.set_token_reduction(ratio)
    with torch.no_grad():
        counts = model.get_image_features(pixel_values=pixels).visual_token_counts
    assert counts.tolist() == [round(0.098 * 144)] * 3


@pytest.mark.parametrize("method", PEER_METHODS)
def test_each_peer_is_batch_invariant_trains_and_generates(tiny, method):
    model, _, inputs = tiny
    model.set_token_reduction(resolve_reduction(method, BUDGET))
    pixels = inputs["pixel_values"]
    with torch.no_grad():
        together = model.get_image_features(pixel_values=pixels)
        alone = [model.get_image_features(pixel_values=pixels[i : i + 1]) for i in range(3)]
    for i, single in enumerate(alone):
        assert torch.equal(together.kept_indices[i], single.kept_indices[0])
        torch.testing.assert_close(together.pooler_output[i], single.pooler_output[0], rtol=1e-5, atol=1e-6)
    assert together.visual_token_counts.tolist() == [BUDGET] * 3
    # training: a loss with gradients into the projector (divprune selects after it)
    model.train()
    try:
        out = model(**inputs, labels=inputs["input_ids"])
        out.loss.backward()
        grad = model.model.multi_modal_projector.linear_1.weight.grad
        assert grad is not None and grad.abs().sum() > 0
    finally:
        model.zero_grad(set_to_none=True)
        model.eval()
    generated = model.generate(**inputs, max_new_tokens=2, do_sample=False, return_dict_in_generate=True)
    assert generated.visual_token_counts.tolist() == [BUDGET] * 3


def test_peers_need_a_budget_and_name_their_fields():
    with pytest.raises(ValueError, match="fastervlm.*needs a budget"):
        TokenReductionConfig(method="fastervlm")
    with pytest.raises(ValueError, match="budget=64 disagrees with dominant=50"):
        TokenReductionConfig(method="visionzip", budget=64, dominant=50, contextual=10)
    with pytest.raises(ValueError, match="keep_ratio is only used by divprune"):
        TokenReductionConfig(method="random", budget=8, keep_ratio=0.5)
    assert TokenReductionConfig(method="visionzip", budget=64).visionzip_split == (54, 10)
    assert resolve_reduction("pooling", 128).output_count == 128


def test_lmms_eval_model_and_pictures_take_the_peers(tmp_path):
    from llava_prumerge.evaluation.lmms_eval_model import LlavaPruMerge

    assets = write_tiny_assets(tmp_path / "assets")
    evaluator = LlavaPruMerge(pretrained=str(assets["llava"]), device="cpu", reduction="visionzip", budget=12)
    assert evaluator.token_reduction.visionzip_split == (10, 2)
    photo = demo_images(("rocket",))[0]
    _, counts = evaluator.generate_batch([evaluator.build_prompt("What?", 1)], [[photo]], max_new_tokens=2)
    assert counts == [([12], [])]
    figure = tmp_path / "peers.png"
    command = [os.sys.executable, "scripts/visualize.py", "image", "--photo", "chelsea", "--output", str(figure),
               "--methods", "prumerge", "fastervlm", "visionzip", "divprune", "pooling", "--budget", "16"]  # fmt: skip
    result = subprocess.run(command, cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr[-3000:]
    assert figure.is_file() and (tmp_path / "peers_visionzip.png").is_file()


@pytest.mark.slow
def test_peers_script_end_to_end_on_tiny_benchmarks(tmp_path):
    assets = write_tiny_assets(tmp_path / "assets")
    data = write_tiny_benchmarks(tmp_path / "benchmarks")
    output = tmp_path / "peers"
    env = {
        **os.environ,
        "PYTHON": os.sys.executable,
        "HF_HUB_OFFLINE": "1",
        "HF_DATASETS_OFFLINE": "1",
        "HF_HOME": str(tmp_path / "hf"),
        "MODEL": str(assets["llava"]),
        "LOCAL_DATA": str(data),
        "OUTPUT": str(output),
        "BENCHMARKS": "pope",
        "METHODS": "visionzip divprune",
        "BUDGETS": "16",
        "ADAPTIVE": "",  # PruMerge's adaptive runs are the other scripts' tests; three runs keep CI short
        "BATCH_SIZE": "4",
        "DEVICE": "cpu",
        "MAX_NEW_TOKENS": "4",
    }
    result = subprocess.run(
        ["bash", "scripts/eval/peers.sh"], cwd=ROOT, env=env, capture_output=True, text=True, timeout=1800
    )
    assert result.returncode == 0, result.stdout[-4000:] + result.stderr[-4000:]
    table = (output / "peers.md").read_text()
    for label in ("none", "visionzip_b16", "divprune_b16"):
        assert f"| {label} | " in table
    assert "Δ vs none" in table and "| VisionZip | 64 |" in table  # the published reference rows
    assert "(16.0)" in table  # equal budgets: exactly 16 tokens per image for the peers


def test_benchmark_times_each_peer_beside_prumerge(tmp_path, monkeypatch):
    import importlib.util
    import json
    import sys

    spec = importlib.util.spec_from_file_location("benchmark_script", ROOT / "scripts" / "benchmark.py")
    script = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(script)
    methods = ["none", "prumerge", *PEER_METHODS]
    argv = ["benchmark.py", "--preset", "tiny", "--repeats", "1", "--prompt-tokens", "16", "--new-tokens", "2",
            "--loop-batch", "0", "--batch-sizes", "2", "--methods", *methods, "--visual-tokens", "16",
            "--output-dir", str(tmp_path)]  # fmt: skip
    monkeypatch.setattr(sys, "argv", argv)
    script.main()  # in-process: a subprocess would re-import torch
    rows = {r["method"]: r for r in json.loads((tmp_path / "results.json").read_text())["rows"]}
    assert set(rows) == {"none"} | {f"{m}@16" for m in methods[1:]}
    for method in methods[1:]:
        row = rows[f"{method}@16"]
        assert row["visual_tokens"] == 16 and 0 < row["reduction_share"] < 1
        assert row["sequence_length"] == 16 - 1 + 16
    # the CLIP-L/336 overhead rows carry every peer's own cost (a narrow stand-in tower keeps this fast)
    from llava_prumerge.analysis import benchmark

    for key, value in {
        "hidden_size": 64,
        "intermediate_size": 128,
        "num_hidden_layers": 3,
        "num_attention_heads": 4,
    }.items():
        monkeypatch.setitem(benchmark.CLIP_L_336, key, value)
    (row,) = benchmark.clip_overhead([2], repeats=1)
    for method in PEER_METHODS:
        assert row[f"{method}_reduction_s"] > 0 and row[f"{method}_vs_none"] > 0
