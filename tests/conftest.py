"""Shared fixtures: the tiny LLaVA, its processor and real photos from scikit-image."""

from __future__ import annotations

import os

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("WANDB_MODE", "offline")

from llava_prumerge.tiny import build_tiny_processor, build_tiny_tokenizer, demo_images  # noqa: E402


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
