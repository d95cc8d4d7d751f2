"""Tiny local copies of the video QA benchmarks (MSVD-QA, MSRVTT-QA, ActivityNet-QA).

Each benchmark is written in Video-ChatGPT's zero-shot QA layout, the one Video-LLaVA's
``videollava/eval/video/run_inference_video_qa.py`` (and ``run_inference_video_qa_act.py`` for
ActivityNet) reads::

    <root>/<benchmark>/test_q.json   [{"video_name": str, "question": str, "question_id": str}, ...]
    <root>/<benchmark>/test_a.json   [{"answer": str, "type": int, "question_id": str}, ...]
    <root>/<benchmark>/videos/<prefix><video_name><extension>

The keys and types are ActivityNet-QA's (``dataset/README.md`` of MILVLG/activitynet-qa, the
files Video-ChatGPT's ``quantitative_evaluation/README.md`` points to). Video-LLaVA pairs answers
with questions by list position (``gt_answers[index]``), not by ``question_id``, so both files
list the same questions in the same order. ActivityNet's ``video_name`` is the YouTube id while
its clip is ``v_<video_name>.mp4`` and its ``question_id`` is ``v_<video_name>_<n>``
(MILVLG's ``test_q.json``); the same ``question_id`` form is used for all three here.

The clips pan across or zoom into real photos shipped by scikit-image, 12 to 24 frames of 64x48
pixels, so that the 8 sampled frames differ; the questions are about the photo and the camera
motion. Enough for the loading, sampling and prompting code to run end to end on a CPU, far too
few for a meaningful score.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image

from ..video import VIDEO_EXTENSIONS, write_video
from .setting import TINY_DATA_IMAGES, demo_images

TINY_VIDEO_BENCHMARKS_VERSION = "video-1"
"""Bumped whenever the clips, questions or layout change, so stale copies get rewritten."""
FRAME_WIDTH, FRAME_HEIGHT = 64, 48
FPS = 8


@dataclass(frozen=True)
class VideoBenchmarkLayout:
    """How a benchmark names its clips: ``videos/<prefix><video_name><extension>``."""

    extension: str
    prefix: str = ""
    video_names: tuple[str, ...] = ()
    """The clips' ``video_name`` values, in the style of the real benchmark's names."""
    other_extensions: tuple[tuple[str, str], ...] = ()
    """``(video_name, extension)`` for clips stored in another container than ``extension``."""


TINY_VIDEO_BENCHMARKS = {
    # MSVD-QA: YouTube clips named <youtube id>_<start>_<end>, shipped as .avi.
    "MSVD-QA": VideoBenchmarkLayout(".avi", video_names=("tinyclip-01_5_15", "tinyclip_02_22_30", "tinyclip-03_0_9")),
    # MSRVTT-QA: video<N>.mp4.
    "MSRVTT-QA": VideoBenchmarkLayout(".mp4", video_names=("video7010", "video7020", "video7031", "video7118")),
    # ActivityNet-QA: v_<youtube id>.mp4 (a few are .mkv in the release), video_name without the v_.
    "ActivityNet-QA": VideoBenchmarkLayout(
        ".mp4",
        prefix="v_",
        video_names=("tinyclip-21", "tinyclip_22", "tinyclip-23"),
        other_extensions=(("tinyclip-23", ".mkv"),),
    ),
}
"""The three benchmarks of Video-LLaVA's zero-shot video QA, by folder name."""

VIDEO_PHOTOS = ("chelsea", "astronaut", "coffee", "rocket", "horse", "camera", "coins", "clock", "moon", "colorwheel")
"""scikit-image photos the clips are made from; each clip uses a different one."""
MOTIONS = {"pan": "panning", "zoom": "zooming in"}
"""Camera motions and the answer to "what is the camera doing?"."""
ANSWER_TYPES = {"motion": 0, "yes/no": 3, "object": 5}
"""ActivityNet-QA's ``type`` codes (MILVLG/activitynet-qa ``dataset/README.md``)."""


def _questions(photo: str, motion: str) -> list[tuple[str, str, int]]:
    """``(question, answer, type)`` about a clip of ``photo`` with camera ``motion``, in order."""
    colour, caption = TINY_DATA_IMAGES[photo]
    return [
        ("what is in the video?", caption, ANSWER_TYPES["object"]),
        ("what is the camera doing?", MOTIONS[motion], ANSWER_TYPES["motion"]),
        ("is the video in colour?", "yes" if colour else "no", ANSWER_TYPES["yes/no"]),
    ]


def clip_frames(photo: Image.Image, motion: str, num_frames: int, start: float) -> np.ndarray:
    """``[num_frames, 48, 64, 3]`` uint8: a pan (left to right) or a zoom (towards the centre) over ``photo``.

    ``start`` in ``[0, 1)`` shifts where the motion begins, so that clips of one photo differ.
    """
    width, height = photo.size
    aspect = FRAME_WIDTH / FRAME_HEIGHT
    # The largest window of the frame's aspect ratio that fits the photo.
    full_w, full_h = (height * aspect, height) if width / height > aspect else (width, width / aspect)
    frames = []
    for t in np.linspace(0.0, 1.0, num_frames):
        if motion == "pan":
            box_w, box_h = 0.6 * full_w, 0.6 * full_h
            left = (start * 0.3 + 0.7 * t) * (width - box_w)
            top = (height - box_h) / 2
        elif motion == "zoom":
            scale = 1.0 - (0.3 + 0.3 * start) * t
            box_w, box_h = scale * full_w, scale * full_h
            left, top = (width - box_w) / 2, (height - box_h) / 2
        else:
            raise ValueError(f"unknown motion {motion!r}; use one of {', '.join(MOTIONS)}")
        box = (left, top, left + box_w, top + box_h)
        frames.append(np.asarray(photo.resize((FRAME_WIDTH, FRAME_HEIGHT), Image.BILINEAR, box=box)))
    return np.stack(frames)


def _stamp(questions_per_video: int, seed: int) -> str:
    return f"{TINY_VIDEO_BENCHMARKS_VERSION} questions_per_video={questions_per_video} seed={seed}"


def tiny_video_benchmarks_current(root: str | Path, questions_per_video: int = 2, seed: int = 0) -> bool:
    """Whether ``root`` holds tiny video benchmarks written by this code with these arguments."""
    stamp = Path(root) / "VERSION"
    return stamp.is_file() and stamp.read_text().strip() == _stamp(questions_per_video, seed)


def write_tiny_video_benchmarks(root: str | Path, questions_per_video: int = 2, seed: int = 0) -> dict[str, Path]:
    """Write MSVD-QA, MSRVTT-QA and ActivityNet-QA tiny copies under ``root``; returns each benchmark's folder.

    ``seed`` picks which photo, camera motion, frame count (12 to 24) and motion start each clip
    gets; the same seed writes the same files. Each clip has ``questions_per_video`` questions
    (1 to 3). Use ``find_video(folder / "videos", video_name, (layout.prefix,))`` to get a clip.
    """
    bank_size = len(_questions(VIDEO_PHOTOS[0], "pan"))
    if not 1 <= questions_per_video <= bank_size:
        raise ValueError(f"questions_per_video must be between 1 and {bank_size}, got {questions_per_video}")
    root = Path(root)
    rng = np.random.default_rng(seed)
    photos = [str(name) for name in rng.permutation(VIDEO_PHOTOS)]
    images = dict(zip(VIDEO_PHOTOS, demo_images(VIDEO_PHOTOS)))
    folders = {}
    for benchmark, layout in TINY_VIDEO_BENCHMARKS.items():
        folder = root / benchmark
        other_extensions = dict(layout.other_extensions)
        questions, answers = [], []
        for video_name in layout.video_names:
            photo = photos.pop()
            motion = str(rng.choice(list(MOTIONS)))
            num_frames, start = int(rng.integers(12, 25)), float(rng.uniform(0.0, 1.0))
            stem = folder / "videos" / f"{layout.prefix}{video_name}"
            for extension in VIDEO_EXTENSIONS:  # a clip left over in another container would shadow this one
                stem.with_name(stem.name + extension).unlink(missing_ok=True)
            extension = other_extensions.get(video_name, layout.extension)
            write_video(
                stem.with_name(stem.name + extension), clip_frames(images[photo], motion, num_frames, start), FPS
            )
            for n, (question, answer, kind) in enumerate(_questions(photo, motion)[:questions_per_video]):
                question_id = f"v_{video_name}_{n}"
                questions.append({"video_name": video_name, "question": question, "question_id": question_id})
                answers.append({"answer": answer, "type": kind, "question_id": question_id})
        (folder / "test_q.json").write_text(json.dumps(questions, indent=1) + "\n")
        (folder / "test_a.json").write_text(json.dumps(answers, indent=1) + "\n")
        folders[benchmark] = folder
    (root / "VERSION").write_text(_stamp(questions_per_video, seed) + "\n")
    return folders
