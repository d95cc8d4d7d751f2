"""Shared fixtures: the tiny LLaVA, its processor and real photos from scikit-image."""

from __future__ import annotations

import os

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("WANDB_MODE", "offline")

from llava_prumerge.tiny.setting import build_tiny_processor, build_tiny_tokenizer, demo_images  # noqa: E402


@pytest.fixture(scope="session")
def tokenizer():
    return build_tiny_tokenizer()


@pytest.fixture(scope="session")
def processor(tokenizer):
    return build_tiny_processor(tokenizer)


@pytest.fixture(scope="session")
def photos():
    return demo_images()


def short_prompt(question: str = "What is this?", images: int = 1) -> str:
    """A short vicuna_v1-style prompt (the system line is left out to keep tests fast)."""
    return "USER: " + "<image>\n" * images + f"{question} ASSISTANT:"


@pytest.fixture(scope="session")
def llava_hf_checkpoint(tmp_path_factory):
    """A llava-hf-format LLaVA-1.5 checkpoint with the real tokenizer and a narrow random model (built once).

    Needs ``../shared/fixtures/llama2-tokenizer.model``; fails (never skips) when it is missing.
    """
    from llava_hf_fixture import SENTENCEPIECE_MODEL, build_llava_hf_fixture

    if not SENTENCEPIECE_MODEL.is_file():
        pytest.fail(f"missing {SENTENCEPIECE_MODEL}: the real-tokenizer tests need shared/fixtures/ beside the repo")
    return build_llava_hf_fixture(tmp_path_factory.mktemp("llava-hf"))
