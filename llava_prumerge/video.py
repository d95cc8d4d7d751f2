"""Video files: Video-LLaVA's frame sampling rule, decoding with PyAV, and finding a benchmark's clips.

Video-LLaVA (and so PruMerge's video evaluation) feeds a video as ``num_frames = 8`` frames
spread evenly over the whole clip, first and last frame included. Its ``decord`` backend counts
the clip's frames and keeps ``np.linspace(0, duration - 1, num_frames, dtype=int)``
(``load_and_transform_video`` in Video-LLaVA's
``videollava/model/multimodal_encoder/languagebind/video/processing_video.py``). This module
applies the same rule with PyAV (decord is not a dependency): :func:`frame_indices` is the rule,
:func:`read_video` decodes the frames it names, :func:`find_video` resolves a benchmark's
``video_name`` to a file the way ``videollava/eval/video/run_inference_video_qa.py`` does, and
:func:`write_video` writes the clips of the tests and the tiny setting.
"""

from __future__ import annotations

from collections.abc import Sequence
from fractions import Fraction
from pathlib import Path

import av
import numpy as np

VIDEO_EXTENSIONS = (".mp4", ".avi", ".mkv", ".webm", ".mov")
"""Containers :func:`find_video` tries, in order (Video-LLaVA's QA inference tries ``.mp4 .avi .mov .mkv``)."""

DEFAULT_NUM_FRAMES = 8
"""Frames per video in Video-LLaVA (``num_frames=8``; eight ``<image>`` tokens per question)."""


def frame_indices(total_frames: int, num_frames: int = DEFAULT_NUM_FRAMES) -> list[int]:
    """The ``num_frames`` frame indices Video-LLaVA keeps from a clip of ``total_frames`` frames.

    ``np.linspace(0, total_frames - 1, num_frames, dtype=int)``, from ``load_and_transform_video``
    (``video_decode_backend == 'decord'``) in Video-LLaVA's
    ``videollava/model/multimodal_encoder/languagebind/video/processing_video.py``: evenly spaced,
    first and last frame included, truncated towards zero. A clip shorter than ``num_frames``
    repeats frames, as linspace does.
    """
    if total_frames < 1:
        raise ValueError(f"a video needs at least one frame, got total_frames={total_frames}")
    if num_frames < 1:
        raise ValueError(f"num_frames must be positive, got {num_frames}")
    return np.linspace(0, total_frames - 1, num_frames, dtype=int).tolist()


def _open(path: Path) -> tuple[av.container.InputContainer, av.video.stream.VideoStream]:
    """Open ``path`` and its first video stream; ValueError naming the file when it has none."""
    try:
        container = av.open(str(path))
    except av.FFmpegError as error:
        raise ValueError(f"{path}: not a readable video ({error})") from error
    if not container.streams.video:
        container.close()
        raise ValueError(f"{path}: has no video stream")
    stream = container.streams.video[0]
    stream.thread_type = "AUTO"
    return container, stream


def count_frames(path: str | Path) -> int:
    """The number of frames decoding ``path`` yields (container metadata is unreliable for avi/webm)."""
    path = Path(path)
    container, stream = _open(path)
    try:
        with container:
            return sum(1 for _ in container.decode(stream))
    except av.FFmpegError as error:
        raise ValueError(f"{path}: decoding failed ({error})") from error


def read_video(path: str | Path, num_frames: int = DEFAULT_NUM_FRAMES) -> np.ndarray:
    """The ``num_frames`` frames Video-LLaVA samples from ``path``, as RGB uint8 ``[num_frames, H, W, 3]``.

    Two passes, so that memory stays bounded by the frames kept: the first decodes the clip to
    count its frames (what decoding yields, not what the container's header claims), the second
    decodes again in order and keeps the frames at :func:`frame_indices`, stopping after the last.
    Frames whose size differs from the first kept frame are rescaled to it.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"no video file at {path}")
    total = count_frames(path)
    if total == 0:
        raise ValueError(f"{path}: no decodable video frames")
    indices = frame_indices(total, num_frames)
    wanted = set(indices)
    kept: dict[int, np.ndarray] = {}
    size: tuple[int, int] | None = None
    container, stream = _open(path)
    try:
        with container:
            for index, frame in enumerate(container.decode(stream)):
                if index in wanted:
                    size = size or (frame.width, frame.height)
                    kept[index] = frame.to_ndarray(format="rgb24", width=size[0], height=size[1])
                    if len(kept) == len(wanted):
                        break
    except av.FFmpegError as error:
        raise ValueError(f"{path}: decoding failed ({error})") from error
    if len(kept) < len(wanted):
        raise ValueError(f"{path}: counted {total} frames but the second decode yielded fewer")
    return np.stack([kept[index] for index in indices])


def find_video(folder: str | Path, name: str, prefixes: Sequence[str] = ("",)) -> Path:
    """The file ``folder/<prefix><name><ext>``: the first prefix, then the first extension, that exists.

    Extensions are tried in :data:`VIDEO_EXTENSIONS` order; a ``name`` that already ends in one
    is tried as it is first. ActivityNet-QA's clips are ``v_<video_name>.mp4`` (Video-LLaVA's
    ``run_inference_video_qa_act.py`` prepends ``v_``): pass ``prefixes=("v_",)`` or ``("", "v_")``.
    """
    folder = Path(folder)
    tried = []
    for prefix in prefixes:
        stem = f"{prefix}{name}"
        candidates = [stem] if Path(name).suffix.lower() in VIDEO_EXTENSIONS else []
        candidates += [stem + extension for extension in VIDEO_EXTENSIONS]
        for candidate in candidates:
            path = folder / candidate
            if path.is_file():
                return path
            tried.append(candidate)
    raise FileNotFoundError(f"no video for {name!r} in {folder}; tried {', '.join(tried)}")


def _encoder_available(name: str) -> bool:
    """Whether this PyAV build can encode with codec ``name``."""
    try:
        av.Codec(name, "w")
    except (av.FFmpegError, ValueError):
        return False
    return True


def video_encoder(extension: str) -> str:
    """The encoder :func:`write_video` uses for a container ``extension`` (``.mp4``, ``.avi``, ...)."""
    extension = extension.lower()
    if extension in (".mp4", ".mkv", ".mov"):
        preferred = ("libx264", "mpeg4")
    elif extension == ".avi":
        preferred = ("mpeg4",)
    elif extension == ".webm":
        preferred = ("libvpx-vp9", "libvpx")
    else:
        raise ValueError(f"cannot write {extension!r} videos; use one of {', '.join(VIDEO_EXTENSIONS)}")
    for codec in preferred:
        if _encoder_available(codec):
            return codec
    raise ValueError(f"this PyAV build has none of the encoders {', '.join(preferred)} for {extension} videos")


def write_video(path: str | Path, frames: np.ndarray | Sequence[np.ndarray], fps: int = 8) -> Path:
    """Write RGB uint8 ``frames`` ``[T, H, W, 3]`` to ``path``, encoded for its extension (:func:`video_encoder`).

    Frames are stored as yuv420p, which needs an even width and height: odd sizes raise
    ValueError rather than being padded or cropped silently. For the tests and the tiny setting.
    """
    path = Path(path)
    frames = np.asarray(frames)
    if frames.ndim != 4 or frames.shape[-1] != 3 or frames.dtype != np.uint8 or len(frames) == 0:
        raise ValueError(f"frames must be a non-empty uint8 [T, H, W, 3] array, got {frames.dtype} {frames.shape}")
    height, width = frames.shape[1:3]
    if height % 2 or width % 2:
        raise ValueError(f"yuv420p needs an even frame size, got {width}x{height}")
    codec = video_encoder(path.suffix)
    path.parent.mkdir(parents=True, exist_ok=True)
    # bitexact: no encoder version or timestamps in the file, so rewriting a clip gives the same bytes.
    with av.open(str(path), mode="w", options={"fflags": "+bitexact"}) as container:
        stream = container.add_stream(codec, rate=Fraction(fps))
        stream.width, stream.height, stream.pix_fmt = width, height, "yuv420p"
        stream.codec_context.flags |= av.codec.context.Flags.bitexact
        stream.thread_type = "NONE"  # threaded encoders need not be deterministic
        if codec == "mpeg4":
            stream.bit_rate = 4_000_000  # its 200 kb/s default turns small frames into visible blocks
        for array in frames:
            container.mux(stream.encode(av.VideoFrame.from_ndarray(array, format="rgb24")))
        container.mux(stream.encode())
    return path
