"""The random-weight demo (README, after the two commands) runs and prints what it promises."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).parents[1]


def run(*args: str) -> str:
    result = subprocess.run([sys.executable, *args], cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    return result.stdout


def test_demo_prints_kept_tokens_and_an_answer_per_photo():
    out = run("scripts/demo.py", "--images", "astronaut", "coffee", "text", "--max-new-tokens", "4")
    rows = re.findall(r"^(\w+)\s+(\d+) / 144\s+\(", out, flags=re.M)
    assert [name for name, _ in rows] == ["astronaut", "coffee", "text"]
    assert all(1 < int(count) < 144 for _, count in rows)
    assert "mean kept tokens" in out


def test_demo_budget_is_exact():
    out = run("scripts/demo.py", "--method", "prumerge_plus", "--budget", "20", "--images", "rocket", "camera")
    assert len(re.findall(r"^\w+\s+20 / 144", out, flags=re.M)) == 2


def test_demo_pads_to_square_as_the_evaluation_does():
    """The demo feeds LLaVA-1.5's padded image (what the lmms-eval model feeds), not the processor's
    centre crop: its kept-token counts are those of the padded photos."""
    from llava_prumerge import pad_to_square
    from llava_prumerge.evaluation.lmms_eval_model import LlavaPruMerge
    from llava_prumerge.tiny.setting import build_tiny_model, build_tiny_processor, demo_images

    names = ("text", "coffee", "chelsea")  # 448 x 172, 600 x 400, 451 x 300: padding changes what is kept
    out = run("scripts/demo.py", "--images", *names, "--max-new-tokens", "2")
    printed = [int(count) for _, count in re.findall(r"^(\w+)\s+(\d+) / 144\s+\(", out, flags=re.M)]
    processor = build_tiny_processor()
    model = build_tiny_model("prumerge", tokenizer=processor.tokenizer)
    evaluator = type("Evaluator", (), {"image_aspect_ratio": "pad", "processor": processor})()
    photos = demo_images(names)
    for photo in photos:  # the evaluation's preparation is the public helper
        assert LlavaPruMerge._prepare_image(evaluator, photo).tobytes() == pad_to_square(photo, processor).tobytes()

    def kept(images):
        pixels = processor.image_processor(images, return_tensors="pt").pixel_values
        return model.get_image_features(pixel_values=pixels).visual_token_counts.tolist()

    assert printed == kept(pad_to_square(photos, processor))
    assert printed != kept(photos)  # the centre crop keeps other counts
