"""Analysis tools: the benchmark's tiny preset end to end, the pictures, the loop reference."""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from PIL import Image
from tolerances import assert_sums_close

from llava_prumerge import TokenReductionConfig, reduce_visual_tokens
from llava_prumerge.analysis.reference import released_loop_prumerge
from llava_prumerge.analysis.visualize import ATTENTION_COLOUR, SPATIAL_COLOUR, kept_patch_overlay, patch_box
from llava_prumerge.images import expand_to_square, pad_colour
from llava_prumerge.reduction import cls_attention
from llava_prumerge.tiny.setting import build_tiny_model, build_tiny_processor, demo_images

ROOT = Path(__file__).parents[1]
ENV = {**os.environ, "HF_HUB_OFFLINE": "1", "MPLBACKEND": "Agg"}


def run_script(*args: str) -> str:
    result = subprocess.run([sys.executable, *args], cwd=ROOT, capture_output=True, text=True, env=ENV, timeout=600)
    assert result.returncode == 0, result.stderr[-3000:]
    return result.stdout


def test_released_loop_reference_equals_the_batched_reduction():
    generator = torch.Generator().manual_seed(1)
    features = torch.randn(3, 64, 16, generator=generator)
    queries, keys = torch.randn(3, 65, 16, generator=generator) * 3, torch.randn(3, 65, 16, generator=generator) * 3
    scores = cls_attention(queries, keys)
    adaptive = reduce_visual_tokens(features, queries, keys, TokenReductionConfig(knn=8))
    magnitude = 2 * float(features.abs().max())  # sums of up to 64 patches with weights summing to <= 1
    looped = released_loop_prumerge(features, keys, scores, knn=8)
    for b in range(3):
        assert_sums_close(adaptive.tokens[b, : int(adaptive.lengths[b])], looped[b], 64, magnitude)
    fixed = reduce_visual_tokens(features, queries, keys, TokenReductionConfig(knn=8, budget=10))
    for b, tokens in enumerate(released_loop_prumerge(features, keys, scores, knn=8, keep=9)):
        assert_sums_close(fixed.tokens[b], tokens, 64, magnitude)


def test_benchmark_tiny_preset_end_to_end(tmp_path):
    out = run_script(
        "scripts/benchmark.py", "--preset", "tiny", "--batch-sizes", "1", "2", "--repeats", "1",
        "--loop-batch", "4", "--output-dir", str(tmp_path), "--record", str(tmp_path / "docs" / "benchmarks.md"),
    )  # fmt: skip
    results = json.loads((tmp_path / "results.json").read_text())
    rows = {(r["method"], r["batch_size"]): r for r in results["rows"]}
    assert set(rows) == {(m, b) for m in ("none", "prumerge", "prumerge_plus") for b in (1, 2)}
    for (method, _), row in rows.items():
        for key in ("vision_s", "prefill_s", "matmul_s", "ttft_s", "prefill_flops"):
            assert row[key] > 0, (method, key)
        assert row["matmul_s"] < row["prefill_s"], method  # a part of the prefill's work
        assert row["kv_cache_bytes"] > 0
        if Path("/proc/self/status").exists():  # CPU: the process's peak resident set (torch alone is >100 MB)
            assert 100 * 2**20 < row["peak_memory_bytes"] < 16 * 2**30
        if method == "none":
            assert row["visual_tokens"] == 144 and row["reduction_s"] is None
        else:
            assert 1 < row["visual_tokens"] < 144 and 0 < row["reduction_share"]
    for batch in (1, 2):
        none, merged = rows[("none", batch)], rows[("prumerge", batch)]
        assert merged["sequence_length"] < none["sequence_length"]
        assert merged["kv_cache_bytes"] < none["kv_cache_bytes"] and merged["prefill_flops"] < none["prefill_flops"]
    loop = results["loop"]
    assert loop["batch_size"] == 4 and loop["max_abs_difference"] < 1e-4 and loop["speedup"] > 0
    assert "prefill speedup" in (tmp_path / "results.md").read_text() and "per-token loop" in out
    with Image.open(tmp_path / "ttft_memory.png") as figure:
        assert figure.size == (1000, 380)
    recorded = (tmp_path / "docs" / "benchmarks.md").read_text()
    assert recorded.startswith("# Measured benchmarks") and "--preset tiny --batch-sizes 1 2" in recorded
    assert (tmp_path / "results.md").read_text() in recorded and recorded.count("\n## ") == 1


def test_benchmark_video_tiny_preset_end_to_end(tmp_path, monkeypatch):
    spec = importlib.util.spec_from_file_location("benchmark_script", ROOT / "scripts" / "benchmark.py")
    script = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(script)

    def run(*options: str, output: Path) -> list[dict]:  # in-process: a subprocess would re-import torch
        common = ["--preset", "video-tiny", "--repeats", "1", "--prompt-tokens", "16", "--new-tokens", "2"]
        monkeypatch.setattr(sys, "argv", ["benchmark.py", *common, "--loop-batch", "0", *options, "--output-dir", str(output)])  # fmt: skip
        script.main()
        return json.loads((output / "results.json").read_text())["rows"]

    rows = {(r["method"], r["batch_size"]): r for r in run("--batch-sizes", "1", "2", output=tmp_path / "adaptive")}
    assert set(rows) == {(m, b) for m in ("none", "prumerge", "prumerge_plus") for b in (1, 2)}
    stock = 8 * (144 + 1)  # 8 frames of a 12 x 12 grid, each frame's CLS kept
    for (method, batch), row in rows.items():
        assert row["extra"]["frames"] == 8 and row["vision_s"] > 0 and row["prefill_s"] > 0
        if method == "none":
            assert row["visual_tokens"] == stock and row["extra"]["visual_tokens_per_frame"] == 145
            assert row["sequence_length"] == 16 - 1 + stock and row["reduction_s"] is None
        else:
            assert 8 < row["visual_tokens"] < stock and 0 < row["reduction_share"]
            assert row["sequence_length"] < rows[("none", batch)]["sequence_length"]
            assert rows[("none", batch)]["prefill_flops"] / row["prefill_flops"] > 1
    assert "| per frame |" in (tmp_path / "adaptive" / "results.md").read_text()

    budget = ("--batch-sizes", "2", "--methods", "none", "prumerge", "--visual-tokens", "10")
    rows = {r["method"]: r for r in run(*budget, output=tmp_path / "budget")}
    merged = rows["prumerge@10"]
    assert merged["visual_tokens"] == 8 * (10 + 1) and merged["extra"]["visual_tokens_per_frame"] == 11
    assert merged["sequence_length"] == 16 - 1 + 8 * 11  # every video the same length: no padding
    assert rows["none"]["prefill_flops"] / merged["prefill_flops"] > 1


def test_overlay_frames_exactly_the_kept_patches(photos):
    overlay = kept_patch_overlay(photos[0], attention_indices=[0, 5], spatial_indices=[7], grid=4, cell=10)
    assert overlay.size == (40, 40)
    for index, colour in ((0, ATTENTION_COLOUR), (5, ATTENTION_COLOUR), (7, SPATIAL_COLOUR)):
        left, top, right, bottom = patch_box(index, 4, 10)
        assert overlay.getpixel((left, top)) == colour and overlay.getpixel((right, bottom)) == colour
    for index in set(range(16)) - {0, 5, 7}:
        left, top, _, _ = patch_box(index, 4, 10)
        assert overlay.getpixel((left, top)) not in (ATTENTION_COLOUR, SPATIAL_COLOUR)


def test_image_figure_draws_the_patches_the_reducer_keeps(tmp_path):
    run_script("scripts/visualize.py", "image", "--photo", "coffee", "--output", str(tmp_path / "coffee.png"))
    with Image.open(tmp_path / "coffee.png") as figure:
        assert figure.size == (1350, 500)
    assert (tmp_path / "coffee_attention.png").is_file()
    processor = build_tiny_processor()
    padded = expand_to_square(demo_images(("coffee",))[0], pad_colour(processor.image_processor))  # pad, not crop
    pixels = processor.image_processor([padded], return_tensors="pt")["pixel_values"]
    for method in ("prumerge", "prumerge_plus"):
        model = build_tiny_model(method)
        with torch.no_grad():
            features = model.get_image_features(pixel_values=pixels)
        kept = [i for i in features.kept_indices[0].tolist() if i >= 0]
        attentive = int(features.attentive_counts[0])
        with Image.open(tmp_path / f"coffee_{method}.png") as overlay:
            overlay = overlay.convert("RGB")
            assert overlay.size == (12 * 14, 12 * 14)
            for position, index in enumerate(kept):
                left, top, _, _ = patch_box(index, 12, 14)
                expected = ATTENTION_COLOUR if position < attentive else SPATIAL_COLOUR
                assert overlay.getpixel((left + 1, top + 1)) == expected, (method, index)
            for index in set(range(144)) - set(kept):
                left, top, _, _ = patch_box(index, 12, 14)
                assert overlay.getpixel((left + 7, top + 7)) not in (ATTENTION_COLOUR, SPATIAL_COLOUR)


def test_histograms_from_records_and_from_a_dataset(tmp_path):
    records = tmp_path / "samples.jsonl"
    records.write_text("\n".join(json.dumps({"doc_id": i, "visual_tokens": 10 + i % 7}) for i in range(30)))
    out = run_script("scripts/visualize.py", "histogram", "--counts", str(records), "--output", str(tmp_path / "a.png"))
    assert "30 images, mean 12.8 tokens" in out
    # an evaluation run folder: the plugin's per-process logs, per-image lists (one sample has two images)
    run = tmp_path / "run" / "mme"
    run.mkdir(parents=True)
    (run / "visual_tokens.jsonl").write_text(
        json.dumps({"task": "mme_local", "doc_id": 0, "visual_tokens": [10]}) + "\n"
        + json.dumps({"task": "mme_local", "doc_id": 1, "visual_tokens": [20, 30]}) + "\n"
    )  # fmt: skip
    (run / "visual_tokens_rank1.jsonl").write_text(
        json.dumps({"task": "pope_adv_llava15", "doc_id": 0, "visual_tokens": [60]})
    )
    out = run_script(
        "scripts/visualize.py", "histogram", "--counts", str(tmp_path / "run"), "--output", str(tmp_path / "c.png")
    )
    assert "4 images, mean 30.0 tokens" in out
    out = run_script(
        "scripts/visualize.py", "histogram", "--counts", str(tmp_path / "run"), "--tasks", "mme",
        "--output", str(tmp_path / "d.png"),
    )  # fmt: skip
    assert "3 images, mean 20.0 tokens" in out
    from llava_prumerge.tiny.setting import write_tiny_dataset

    data = write_tiny_dataset(tmp_path / "data")
    out = run_script(
        "scripts/visualize.py", "histogram", "--data-path", str(data), "--image-folder", str(data.parent / "images"),
        "--output", str(tmp_path / "b.png"),
    )  # fmt: skip
    assert "18 images" in out
    for name in ("a.png", "b.png", "c.png", "d.png"):
        with Image.open(tmp_path / name) as figure:
            assert figure.size == (600, 320)


def test_histogram_counts_reject_bad_records(tmp_path):
    spec = importlib.util.spec_from_file_location("visualize_script", ROOT / "scripts" / "visualize.py")
    script = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(script)
    bad = tmp_path / "bad.jsonl"
    bad.write_text(json.dumps({"visual_tokens": [3]}) + "\n" + json.dumps({"visual_tokens": "many"}) + "\n")
    with pytest.raises(ValueError, match=r"bad.jsonl: record 2: 'visual_tokens' must be a count"):
        script.read_counts(str(bad))
    empty = tmp_path / "run"
    empty.mkdir()
    (empty / "visual_tokens.jsonl").write_text(json.dumps({"task": "mme", "doc_id": 0, "visual_tokens": [3]}))
    with pytest.raises(ValueError, match=r"no visual_tokens\*.jsonl records for pope \(tasks there: mme\)"):
        script.read_counts(str(empty), ["pope"])
    single = tmp_path / "one.json"
    single.write_text(json.dumps({"visual_tokens": [3, 4]}))  # one record on its own, two images
    assert script.read_counts(str(single)) == [3, 4]
    (empty / "visual_tokens.jsonl").write_text('{"task": "mme", "doc_id": 0, "visual_tokens": 3}')
    with pytest.raises(ValueError, match=r"visual_tokens.jsonl:1: malformed visual-token record"):
        script.read_counts(str(empty))


def test_benchmark_rejects_bad_options():
    for options, message in (
        (["--repeats", "0"], "--repeats must be at least 1"),
        (["--new-tokens", "1"], "--new-tokens must be at least 2"),
        (["--weights", "llava-hf/llava-1.5-7b-hf"], "--weights needs a true-shape preset"),
    ):
        result = subprocess.run(
            [sys.executable, "scripts/benchmark.py", "--preset", "tiny", *options],
            cwd=ROOT, capture_output=True, text=True, env=ENV, timeout=300,
        )  # fmt: skip
        assert result.returncode == 2 and message in result.stderr, (options, result.stderr[-500:])


def test_histogram_cli_errors_name_the_problem(tmp_path):
    text_only = tmp_path / "text_only.json"
    text_only.write_text(json.dumps([{"id": "t1", "conversations": [
        {"from": "human", "value": "hi"}, {"from": "gpt", "value": "hello"}]}]))  # fmt: skip
    for options, message in (
        (["--data-path", str(text_only)], "text_only.json: no sample has an image"),
        (["--data-path", str(text_only), "--tasks", "mme"], "--tasks selects tasks of an evaluation"),
        (["--data-path", str(text_only), "--counts", str(tmp_path)], "exactly one of --counts"),
    ):
        result = subprocess.run(
            [sys.executable, "scripts/visualize.py", "histogram", *options, "--output", str(tmp_path / "h.png")],
            cwd=ROOT, capture_output=True, text=True, env=ENV, timeout=300,
        )  # fmt: skip
        assert result.returncode != 0 and message in result.stderr, (options, result.stderr[-800:])
        assert not (tmp_path / "h.png").exists()
