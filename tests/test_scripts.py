"""The README's main command runs and prints what it promises."""

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
