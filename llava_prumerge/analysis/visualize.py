"""Pictures of what PruMerge keeps (paper Fig. 1b and 3): kept patches, CLS attention, histograms.

- :func:`kept_patch_overlay`: the image as CLIP sees it (shortest side resized, centre crop), the
  pruned patches dimmed, attention-selected patches framed in red, PruMerge+ spatial samples in blue.
- :func:`anyres_overlay`: the same for every crop of a LLaVA-NeXT image (the crops as the tower
  sees them, :func:`crop_views`): the base view beside the grid crops at their AnyRes positions.
- :func:`plot_cls_attention`: every patch's CLS attention on a log scale with the IQR fence
  (Fig. 3a).
- :func:`plot_kept_token_histogram`: kept tokens per image over a dataset or an evaluation run.
"""

from __future__ import annotations

from pathlib import Path

import torch
from PIL import Image, ImageDraw

ATTENTION_COLOUR = (230, 25, 25)
SPATIAL_COLOUR = (30, 90, 230)
DIM = 0.35


def clip_view(image: Image.Image, size: int) -> Image.Image:
    """Resize the shortest side to ``size`` and centre-crop ``size × size`` (CLIP's preprocessing)."""
    image = image.convert("RGB")
    scale = size / min(image.size)
    resized = image.resize((max(size, round(image.width * scale)), max(size, round(image.height * scale))))
    left, top = (resized.width - size) // 2, (resized.height - size) // 2
    return resized.crop((left, top, left + size, top + size))


def patch_box(index: int, grid: int, cell: int) -> tuple[int, int, int, int]:
    """Pixel box ``(left, top, right, bottom)`` (inclusive) of patch ``index`` in raster order."""
    row, col = divmod(index, grid)
    return col * cell, row * cell, (col + 1) * cell - 1, (row + 1) * cell - 1


def kept_patch_overlay(
    image: Image.Image,
    attention_indices: list[int],
    spatial_indices: list[int] = (),
    grid: int = 24,
    cell: int = 14,
    border: int = 2,
) -> Image.Image:
    """A ``grid·cell`` square picture with the pruned patches dimmed and kept ones framed.

    Frames are drawn inside each kept patch's cell, ``border`` pixels wide, in
    :data:`ATTENTION_COLOUR` (selected by attention) or :data:`SPATIAL_COLOUR` (PruMerge+ samples).
    """
    size = grid * cell
    base = clip_view(image, size)
    dimmed = Image.eval(base, lambda value: int(value * DIM))
    kept = set(attention_indices) | set(spatial_indices)
    canvas = dimmed.copy()
    for index in kept:
        box = patch_box(index, grid, cell)
        canvas.paste(base.crop((box[0], box[1], box[2] + 1, box[3] + 1)), box[:2])
    draw = ImageDraw.Draw(canvas)
    for indices, colour in ((spatial_indices, SPATIAL_COLOUR), (attention_indices, ATTENTION_COLOUR)):
        for index in indices:
            draw.rectangle(patch_box(index, grid, cell), outline=colour, width=border)
    return canvas


def crop_views(pixel_values: torch.Tensor, mean: list[float], std: list[float]) -> list[Image.Image]:
    """The crops ``[P, 3, H, W]`` of one image as the tower sees them, back in RGB: the processor's
    normalisation (``mean``, ``std`` per channel, on ``[0, 1]`` values) undone."""
    values = pixel_values.detach().float().cpu()
    values = values * torch.tensor(std)[:, None, None] + torch.tensor(mean)[:, None, None]
    values = (values.clamp(0, 1) * 255).round().to(torch.uint8).permute(0, 2, 3, 1)
    return [Image.fromarray(crop.numpy()) for crop in values]


def anyres_crop_origin(crop: int, grid_shape: tuple[int, int], size: int, gap: int) -> tuple[int, int]:
    """Top-left pixel ``(left, top)`` of crop ``crop`` (0: the base view, then the grid crops in
    raster order) in an :func:`anyres_overlay` picture of ``size``-px crops."""
    if crop == 0:
        return 0, 0
    row, col = divmod(crop - 1, grid_shape[1])
    return size + 2 * gap + col * (size + gap), row * (size + gap)


def anyres_overlay(
    crops: list[Image.Image],
    grid_shape: tuple[int, int],
    attention_indices: list[list[int]],
    spatial_indices: list[list[int]] | None = None,
    grid: int = 24,
    cell: int = 14,
    border: int = 2,
    gap: int = 6,
) -> Image.Image:
    """The kept patches of every crop of one LLaVA-NeXT image, each crop drawn by
    :func:`kept_patch_overlay` (``grid·cell`` px square).

    ``crops``: the base view then the ``rows × cols`` grid crops in raster order (the order of the
    processor's ``pixel_values`` and the model's ``kept_indices``); ``attention_indices`` and
    ``spatial_indices``: one list per crop. The base view sits top-left; ``2·gap`` px to its right
    the grid crops sit at their AnyRes positions, ``gap`` px apart (:func:`anyres_crop_origin`), so
    together they show the resized and padded image that was cut into the crops.
    """
    rows, cols = grid_shape
    if len(crops) != 1 + rows * cols or len(attention_indices) != len(crops):
        raise ValueError(f"need the base view and {rows}×{cols} grid crops, with kept indices for each")
    spatial_indices = spatial_indices or [[] for _ in crops]
    size = grid * cell
    width = anyres_crop_origin(len(crops) - 1, grid_shape, size, gap)[0] + size
    canvas = Image.new("RGB", (width, max(size, rows * size + (rows - 1) * gap)), (255, 255, 255))
    for index, (crop, attention, spatial) in enumerate(zip(crops, attention_indices, spatial_indices)):
        overlay = kept_patch_overlay(crop, attention, spatial, grid=grid, cell=cell, border=border)
        canvas.paste(overlay, anyres_crop_origin(index, grid_shape, size, gap))
    return canvas


def plot_cls_attention(scores: torch.Tensor, fence: float, path: str | Path, title: str = "") -> Path:
    """Fig. 3a: CLS attention of each patch (log scale) and the IQR fence, outliers highlighted."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    values = scores.detach().float().cpu()
    outliers = values > fence
    figure, axis = plt.subplots(figsize=(6, 3.2), dpi=100)
    positions = torch.arange(len(values))
    axis.scatter(positions[~outliers], values[~outliers], s=4, color="0.5", label="below the fence")
    axis.scatter(positions[outliers], values[outliers], s=8, color="#e61919", label=f"outliers ({int(outliers.sum())})")
    axis.axhline(fence, color="k", linestyle="--", linewidth=1, label="IQR fence Q3 + 1.5·IQR")
    axis.set_yscale("log")
    axis.set_xlabel("patch index (raster order)")
    axis.set_ylabel("CLS attention")
    axis.set_title(title or "CLS attention of the patch tokens")
    axis.legend(loc="lower right", fontsize=7)
    figure.tight_layout()
    figure.savefig(path)
    plt.close(figure)
    return Path(path)


def plot_kept_token_histogram(counts: list[int], path: str | Path, title: str = "", total: int | None = None) -> Path:
    """Histogram of kept visual tokens per image, with the mean marked."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, axis = plt.subplots(figsize=(6, 3.2), dpi=100)
    bins = min(40, max(5, len(set(counts))))
    axis.hist(counts, bins=bins, color="#1e5ae6")
    mean = sum(counts) / len(counts)
    suffix = f" of {total}" if total else ""
    axis.axvline(mean, color="k", linestyle="--", linewidth=1, label=f"mean {mean:.1f}{suffix}")
    axis.set_xlabel("visual tokens per image")
    axis.set_ylabel("images")
    axis.set_title(title or f"kept visual tokens ({len(counts)} images)")
    axis.legend(fontsize=8)
    figure.tight_layout()
    figure.savefig(path)
    plt.close(figure)
    return Path(path)
