"""Model families with token reduction: one thin subclass of a transformers class per file.

``llava.py`` (LLaVA-1.5, :class:`LlavaPruMergeForConditionalGeneration`), ``video_llava.py`` (Video-LLaVA),
``vision.py`` (what they share) and ``sequence.py`` (re-laying
``input_ids``/``attention_mask``/``labels`` for a different visual-token count per image, shared by
every family). A new family (LLaVA-NeXT) is one more file here plus its tests.
"""
