"""llava-prumerge: PruMerge and PruMerge+ adaptive visual-token reduction for LLaVA-1.5, LLaVA-NeXT and Video-LLaVA.

Public API::

    from llava_prumerge import LlavaPruMergeForConditionalGeneration, TokenReductionConfig
    from llava_prumerge import LlavaNextPruMergeForConditionalGeneration, VideoLlavaPruMergeForConditionalGeneration

The model and tensor names are imported on first use (PEP 562), so that tools that need none of
them (the judge, the roofline, the tables) start without loading torch and transformers.
"""

from importlib import import_module

from .config import METHODS, TokenReductionConfig

__version__ = "0.1.0"

_LAZY = {
    "LlavaPruMergeForConditionalGeneration": ".models.llava",
    "ReducedImageFeatures": ".models.llava",
    "VideoLlavaPruMergeForConditionalGeneration": ".models.video_llava",
    "LlavaNextPruMergeForConditionalGeneration": ".models.llava_next",
    "ReducedTokens": ".reduction",
    "cls_attention": ".reduction",
    "outlier_count": ".reduction",
    "reduce_visual_tokens": ".reduction",
    "pad_to_square": ".images",
}

__all__ = ["METHODS", "TokenReductionConfig", *_LAZY]


def __getattr__(name: str):
    if name in _LAZY:
        value = getattr(import_module(_LAZY[name], __name__), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_LAZY))
