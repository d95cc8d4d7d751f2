"""Video decoding with Video-LLaVA's frame rule, and the tiny video QA benchmarks."""

from __future__ import annotations

import json

import av
import numpy as np
import pytest

from llava_prumerge.tiny.videos import (
    TINY_VIDEO_BENCHMARKS,
    tiny_video_benchmarks_current,
    write_tiny_video_benchmarks,
)
from llava_prumerge.video import (
    VIDEO_EXTENSIONS,
    count_frames,
    find_video,
    frame_indices,
    read_video,
    video_encoder,
    write_video,
)

GREY_STEP, GREY_START = 12, 10
"""Frame ``k`` of a test clip is flat grey ``GREY_START + GREY_STEP * k``: its mean colour identifies ``k``."""


def grey_clip(num_frames: int, height: int = 48, width: int = 64) -> np.ndarray:
    levels = GREY_START + GREY_STEP * np.arange(num_frames)
    return np.broadcast_to(levels[:, None, None, None], (num_frames, height, width, 3)).astype(np.uint8)


def decoded_frame_numbers(frames: np.ndarray) -> list[int]:
    """Which grey frame each decoded frame is: the nearest level to its mean (lossy codecs move it by ~2)."""
    return np.rint((frames.mean(axis=(1, 2, 3)) - GREY_START) / GREY_STEP).astype(int).tolist()


def writable_extensions() -> list[str]:
    extensions = []
    for extension in VIDEO_EXTENSIONS:
        try:
            video_encoder(extension)
        except ValueError:
            continue
        extensions.append(extension)
    return extensions


# np.linspace(0, total - 1, num, dtype=int), worked out by hand: i · (total - 1) / (num - 1), truncated.
@pytest.mark.parametrize(
    ("total", "num", "expected"),
    [
        (300, 8, [0, 42, 85, 128, 170, 213, 256, 299]),  # 299/7 = 42.71...: Video-LLaVA's 8 frames
        (100, 8, [0, 14, 28, 42, 56, 70, 84, 99]),  # 99/7 = 14.14...
        (8, 8, [0, 1, 2, 3, 4, 5, 6, 7]),
        (5, 8, [0, 0, 1, 1, 2, 2, 3, 4]),  # shorter than num_frames: 4/7 = 0.57..., frames repeat
        (1, 8, [0] * 8),
        (10, 3, [0, 4, 9]),
        (10, 1, [0]),
    ],
)
def test_frame_indices_follow_video_llava_linspace(total, num, expected):
    assert frame_indices(total, num) == expected


def test_frame_indices_default_is_eight_frames_and_rejects_empty_clips():
    assert frame_indices(300) == frame_indices(300, 8)
    with pytest.raises(ValueError, match="at least one frame"):
        frame_indices(0)
    with pytest.raises(ValueError, match="num_frames"):
        frame_indices(10, 0)


@pytest.mark.parametrize("extension", writable_extensions())
@pytest.mark.parametrize(("total", "num"), [(20, 8), (5, 8), (20, 3)])
def test_read_video_returns_the_frames_at_the_sampled_indices(tmp_path, extension, total, num):
    path = write_video(tmp_path / f"clip{extension}", grey_clip(total))
    assert count_frames(path) == total
    frames = read_video(path, num)
    assert frames.shape == (num, 48, 64, 3) and frames.dtype == np.uint8
    assert decoded_frame_numbers(frames) == frame_indices(total, num)


def test_mp4_and_avi_are_writable():
    """The two containers of MSRVTT-QA / ActivityNet-QA and MSVD-QA must work on every PyAV build."""
    assert {".mp4", ".avi"} <= set(writable_extensions())


def test_write_video_rejects_odd_sizes_and_non_uint8(tmp_path):
    with pytest.raises(ValueError, match="even frame size"):
        write_video(tmp_path / "odd.mp4", grey_clip(2, height=47))
    with pytest.raises(ValueError, match="uint8"):
        write_video(tmp_path / "float.mp4", grey_clip(2).astype(np.float32))
    with pytest.raises(ValueError, match="cannot write"):
        write_video(tmp_path / "clip.gif", grey_clip(2))


def test_read_video_errors_name_the_file(tmp_path):
    missing = tmp_path / "missing.mp4"
    with pytest.raises(FileNotFoundError, match="missing.mp4"):
        read_video(missing)
    text = tmp_path / "notes.mp4"
    text.write_text("this is not a video\n" * 20)
    with pytest.raises(ValueError, match="notes.mp4"):
        read_video(text)
    audio = tmp_path / "tone.wav"
    with av.open(str(audio), mode="w") as container:
        stream = container.add_stream("pcm_s16le", rate=8000, layout="mono")
        samples = (1000 * np.sin(np.arange(800) / 5)).astype(np.int16)[None]
        frame = av.AudioFrame.from_ndarray(samples, format="s16", layout="mono")
        frame.sample_rate = 8000
        container.mux(stream.encode(frame))
        container.mux(stream.encode())
    with pytest.raises(ValueError, match="tone.wav: has no video stream"):
        read_video(audio)
    empty = tmp_path / "empty.avi"
    with av.open(str(empty), mode="w") as container:  # a video stream with no frames in it
        stream = container.add_stream("mpeg4", rate=8)
        stream.width, stream.height, stream.pix_fmt = 64, 48, "yuv420p"
        container.start_encoding()
    with pytest.raises(ValueError, match="empty.avi: no decodable video frames"):
        read_video(empty)


def test_find_video_tries_prefixes_then_extensions_in_order(tmp_path):
    for name in ("v_abc.mp4", "xyz.avi", "both.mkv", "both.mp4", "clip.v2.webm"):
        (tmp_path / name).touch()
    assert find_video(tmp_path, "xyz") == tmp_path / "xyz.avi"
    assert find_video(tmp_path, "xyz.avi") == tmp_path / "xyz.avi"
    assert find_video(tmp_path, "both") == tmp_path / "both.mp4"  # .mp4 comes before .mkv
    assert find_video(tmp_path, "clip.v2") == tmp_path / "clip.v2.webm"  # a dot that is no extension
    assert find_video(tmp_path, "abc", prefixes=("v_",)) == tmp_path / "v_abc.mp4"
    assert find_video(tmp_path, "xyz", prefixes=("v_", "")) == tmp_path / "xyz.avi"
    with pytest.raises(FileNotFoundError) as error:
        find_video(tmp_path, "abc")
    assert "'abc'" in str(error.value) and "abc.mp4" in str(error.value) and "abc.mov" in str(error.value)
    with pytest.raises(FileNotFoundError, match="v_nope.webm"):
        find_video(tmp_path, "nope", prefixes=("", "v_"))


@pytest.fixture(scope="module")
def tiny_video_root(tmp_path_factory):
    root = tmp_path_factory.mktemp("tiny-videos")
    write_tiny_video_benchmarks(root)
    return root


def load(folder, name):
    return json.loads((folder / name).read_text())


def test_tiny_video_benchmarks_schema(tiny_video_root):
    assert set(TINY_VIDEO_BENCHMARKS) == {"MSVD-QA", "MSRVTT-QA", "ActivityNet-QA"}
    for benchmark, layout in TINY_VIDEO_BENCHMARKS.items():
        folder = tiny_video_root / benchmark
        questions, answers = load(folder, "test_q.json"), load(folder, "test_a.json")
        assert 3 <= len({q["video_name"] for q in questions}) <= 4
        assert len(questions) == 2 * len({q["video_name"] for q in questions})  # questions_per_video=2
        for question, answer in zip(questions, answers, strict=True):
            assert set(question) == {"video_name", "question", "question_id"}
            assert set(answer) == {"answer", "type", "question_id"}
            # Video-LLaVA pairs them by position, so the ids must agree row by row.
            assert question["question_id"] == answer["question_id"]
            assert isinstance(answer["type"], int) and answer["answer"]
        ids = [q["question_id"] for q in questions]
        assert len(set(ids)) == len(ids)
        if layout.prefix:
            assert not any(q["video_name"].startswith(layout.prefix) for q in questions)


def test_tiny_video_benchmarks_videos_resolve_and_decode(tiny_video_root):
    containers = set()
    for benchmark, layout in TINY_VIDEO_BENCHMARKS.items():
        folder = tiny_video_root / benchmark
        for video_name in dict.fromkeys(q["video_name"] for q in load(folder, "test_q.json")):
            path = find_video(folder / "videos", video_name, prefixes=(layout.prefix,))
            assert path.name.startswith(layout.prefix + video_name)
            containers.add((benchmark, path.suffix))
            frames = read_video(path)
            assert frames.shape == (8, 48, 64, 3)
            assert 12 <= count_frames(path) <= 24
            assert np.abs(frames[0].astype(int) - frames[-1]).mean() > 5  # the camera moves
    assert containers == {
        ("MSVD-QA", ".avi"),
        ("MSRVTT-QA", ".mp4"),
        ("ActivityNet-QA", ".mp4"),
        ("ActivityNet-QA", ".mkv"),
    }


def test_tiny_video_benchmarks_are_deterministic_and_stamped(tiny_video_root, tmp_path):
    assert tiny_video_benchmarks_current(tiny_video_root)
    assert not tiny_video_benchmarks_current(tiny_video_root, seed=1)
    assert not tiny_video_benchmarks_current(tmp_path)
    folders = write_tiny_video_benchmarks(tmp_path / "again")
    assert set(folders) == set(TINY_VIDEO_BENCHMARKS)
    for benchmark, folder in folders.items():
        for name in ("test_q.json", "test_a.json"):
            assert (folder / name).read_bytes() == (tiny_video_root / benchmark / name).read_bytes()
    other = write_tiny_video_benchmarks(tmp_path / "other", questions_per_video=3, seed=1)
    assert tiny_video_benchmarks_current(tmp_path / "other", questions_per_video=3, seed=1)
    assert load(other["MSVD-QA"], "test_a.json") != load(folders["MSVD-QA"], "test_a.json")
    with pytest.raises(ValueError, match="questions_per_video"):
        write_tiny_video_benchmarks(tmp_path / "bad", questions_per_video=4)
