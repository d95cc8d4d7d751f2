"""LLaVA-1.5's image preprocessing: pad to a square with the processor's mean colour.

LLaVA-1.5 trains and evaluates with ``image_aspect_ratio: pad`` (``expand2square`` in
``llava/mm_utils.py``): every image is padded, centred, to a square of its longer side with the
CLIP mean colour ``int(255 · m)`` per channel, and only then resized by the CLIP processor, which
then crops nothing. The llava-hf processor alone resizes the shorter side and centre-crops, so
the borders of a non-square image are lost and its kept tokens and answers differ from the
paper's protocol. Training, evaluation, the demo and the README example all go through
:func:`pad_to_square`.
"""

from __future__ import annotations

from collections.abc import Sequence

from PIL import Image


def expand_to_square(image: Image.Image, background: tuple[int, int, int]) -> Image.Image:
    """Pad ``image`` to a square, centred, with ``background`` (LLaVA's ``expand2square``)."""
    width, height = image.size
    if width == height:
        return image
    side = max(width, height)
    canvas = Image.new(image.mode, (side, side), background)
    canvas.paste(image, ((side - width) // 2, (side - height) // 2))
    return canvas


def pad_colour(image_processor) -> tuple[int, int, int]:
    """The padding colour: the processor's mean, ``int(255 · m)`` per channel, truncated as in
    LLaVA-1.5's call ``expand2square(image, tuple(int(x * 255) for x in image_processor.image_mean))``
    (grey 127 when the processor has no mean). The one place this colour is computed."""
    mean = getattr(image_processor, "image_mean", None) or (0.5, 0.5, 0.5)
    return tuple(int(255 * m) for m in mean)


def pad_to_square(images: Image.Image | Sequence[Image.Image], processor) -> Image.Image | list[Image.Image]:
    """LLaVA-1.5's ``image_aspect_ratio: pad`` for one image or a list, as RGB.

    ``processor`` is a ``LlavaProcessor`` or its image processor. Use it before the processor::

        inputs = processor(images=pad_to_square(images, processor), text=prompts, ...)
    """
    image_processor = getattr(processor, "image_processor", processor)
    background = pad_colour(image_processor)
    if isinstance(images, Image.Image):
        return expand_to_square(images.convert("RGB"), background)
    return [expand_to_square(image.convert("RGB"), background) for image in images]
