"""llava-prumerge: PruMerge and PruMerge+ adaptive visual-token reduction for LLaVA-1.5.

Public API::

    from llava_prumerge import LlavaPruMergeForConditionalGeneration, TokenReductionConfig
"""

from .config import METHODS, TokenReductionConfig
from .images import pad_to_square
from .models.llava import LlavaPruMergeForConditionalGeneration, ReducedImageFeatures
from .reduction import ReducedTokens, cls_attention, outlier_count, reduce_visual_tokens

__version__ = "0.1.0"

__all__ = [
    "METHODS",
    "LlavaPruMergeForConditionalGeneration",
    "ReducedImageFeatures",
    "ReducedTokens",
    "TokenReductionConfig",
    "cls_attention",
    "outlier_count",
    "pad_to_square",
    "reduce_visual_tokens",
]
