"""Model families with token reduction: one thin subclass of a transformers class per file.

``llava.py`` (LLaVA-1.5, :class:`LlavaPruMergeForConditionalGeneration`), ``video_llava.py`` (Video-LLaVA),
``vision.py`` (what they share) and ``sequence.py`` (re-laying
``input_ids``/``attention_mask``/``labels`` for a different visual-token count per image, shared by
every family). ``llava_next.py`` (LLaVA-NeXT / AnyRes). A new family is one more file here, a line
in :func:`model_class_for`, plus its tests.
"""


def model_class_for(model_type: str):
    """Our subclass for a checkpoint's ``model_type``: ``llava`` (LLaVA-1.5), ``llava_next``
    (LLaVA-NeXT) or ``video_llava`` (Video-LLaVA); ``ValueError`` for any other."""
    if model_type == "llava":
        from .llava import LlavaPruMergeForConditionalGeneration

        return LlavaPruMergeForConditionalGeneration
    if model_type == "llava_next":
        from .llava_next import LlavaNextPruMergeForConditionalGeneration

        return LlavaNextPruMergeForConditionalGeneration
    if model_type == "video_llava":
        from .video_llava import VideoLlavaPruMergeForConditionalGeneration

        return VideoLlavaPruMergeForConditionalGeneration
    raise ValueError(f"model_type {model_type!r} is not supported (llava, llava_next, video_llava)")
