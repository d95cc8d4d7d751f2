"""Video QA evaluation (Table 3): local tasks, our lmms-eval model on videos, the judge, the table."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from pathlib import Path

import pytest
import torch
from test_judge import KEY, expected_review, running_server

from llava_prumerge.evaluation.judge import SUMMARY_FILE
from llava_prumerge.evaluation.video_results import load_video_run, video_markdown
from llava_prumerge.evaluation.video_tasks import VIDEO_BENCHMARKS, build_docs, write_video_task
from llava_prumerge.models.video_llava import VideoLlavaPruMergeForConditionalGeneration
from llava_prumerge.tiny.video_llava import TINY_VIDEO_FRAMES, write_tiny_video_llava
from llava_prumerge.tiny.videos import write_tiny_video_benchmarks
from llava_prumerge.video import read_video

ROOT = Path(__file__).parents[1]
VICUNA_V1 = (  # LLaVA's conv_vicuna_v1 (conv_templates["llava_v1"]), written out by hand
    "A chat between a curious user and an artificial intelligence assistant. The assistant gives helpful, "
    "detailed, and polite answers to the user's questions."
)


@pytest.fixture(scope="module")
def tiny_video(tmp_path_factory):
    root = tmp_path_factory.mktemp("video-eval")
    data = write_tiny_video_benchmarks(root / "data")
    model = write_tiny_video_llava(root / "model")
    return {"root": root, "data": root / "data", "folders": data, "model": model}


@pytest.fixture(scope="module")
def judge_server():
    with running_server() as chat:
        yield chat


@pytest.fixture(scope="module")
def video_run(tiny_video, judge_server):
    """``scripts/eval/video.sh`` on two benchmarks, judged by the local stand-in of the API."""
    output = tiny_video["root"] / "runs" / "prumerge"
    env = {
        **os.environ,
        "PYTHON": os.sys.executable,
        "HF_HUB_OFFLINE": "1",
        "HF_DATASETS_OFFLINE": "1",
        "HF_HOME": str(tiny_video["root"] / "hf-home"),
        "MODEL": str(tiny_video["model"]),
        "LOCAL_DATA": str(tiny_video["data"]),
        "OUTPUT": str(output),
        "REDUCTION": "prumerge",
        "VIDEO_BENCHMARKS": "msvd activitynet",
        "BATCH_SIZE": "4",
        "DEVICE": "cpu",
        "MAX_NEW_TOKENS": "6",
        "OPENAI_API_KEY": KEY,
        "OPENAI_BASE_URL": judge_server.url,
        "no_proxy": "127.0.0.1",
    }
    result = subprocess.run(
        ["bash", "scripts/eval/video.sh"], cwd=ROOT, env=env, capture_output=True, text=True, timeout=1200
    )
    assert result.returncode == 0, result.stdout[-4000:] + result.stderr[-4000:]
    return output, result.stdout


def _samples(folder: Path) -> list[dict]:
    (path,) = folder.rglob("*_samples_*.jsonl")
    return [json.loads(line) for line in path.read_text().splitlines()]


def test_video_script_answers_judges_and_tabulates(video_run, judge_server, tiny_video):
    output, stdout = video_run
    assert not judge_server.problems
    for name in ("msvd", "activitynet"):
        folder = output / name
        records = [s["video_qa"] for s in _samples(folder)]
        docs, _ = build_docs(name, tiny_video["data"])
        assert sorted(r["question_id"] for r in records) == sorted(d["question_id"] for d in docs)
        verdicts = [expected_review(r["answer"], r["pred"]) for r in records]  # the stand-in's own rule
        summary = json.loads((folder / "judge" / SUMMARY_FILE).read_text())
        assert summary["samples"] == len(records)
        assert summary["accuracy"] == pytest.approx(sum(v == "yes" for v, _ in verdicts) / len(records))
        assert summary["score"] == pytest.approx(sum(s for _, s in verdicts) / len(records))
    questions = {
        r["question"]
        for name in ("msvd", "activitynet")
        for r in json.loads((tiny_video["folders"][VIDEO_BENCHMARKS[name].folders[0]] / "test_q.json").read_text())
    }
    # one request per answered question, each carrying one of the benchmark's questions
    assert len(judge_server.requests) == sum(len(_samples(output / n)) for n in ("msvd", "activitynet"))
    assert all(any(q in r["messages"][1]["content"] for q in questions) for r in judge_server.requests)
    table = (output / "table3.md").read_text()
    assert "| Video-LLaVA + PruMerge (paper) | 71.1 | 3.9 |" in table
    assert "| prumerge | " in table and "MSRVTT-QA" in table
    assert "method=prumerge" in table


def test_logged_counts_are_the_models_on_eight_frames_by_the_video_llava_rule(video_run, tiny_video):
    output, _ = video_run
    model = VideoLlavaPruMergeForConditionalGeneration.from_pretrained(tiny_video["model"], token_reduction="prumerge")
    from transformers import AutoProcessor

    processor = AutoProcessor.from_pretrained(tiny_video["model"])
    docs = {i: doc for i, doc in enumerate(build_docs("msvd", tiny_video["data"])[0])}
    logged = [json.loads(line) for line in (output / "msvd" / "visual_tokens.jsonl").read_text().splitlines()]
    assert len(logged) == len(docs)
    for record in logged:
        frames = read_video(docs[record["doc_id"]]["video"], TINY_VIDEO_FRAMES)
        pixels = processor(text="<video>", videos=[frames], return_tensors="pt")["pixel_values_videos"]
        with torch.no_grad():
            features = model.get_video_features(pixel_values_videos=pixels)
        assert record["frame_tokens"] == features.frame_token_counts.tolist()
        assert record["visual_tokens"] == [sum(record["frame_tokens"][0])]
    run = load_video_run(output)
    per_video = [r["visual_tokens"][0] for r in logged]
    assert run.cells["msvd"].tokens_per_video == pytest.approx(sum(per_video) / len(per_video))
    assert run.cells["msvd"].tokens_per_frame == pytest.approx(sum(per_video) / (len(per_video) * TINY_VIDEO_FRAMES))
    assert "msrvtt" not in run.cells


def test_video_prompt_is_video_llavas_template(tiny_video):
    from llava_prumerge.evaluation.lmms_eval_model import LlavaPruMerge

    evaluator = LlavaPruMerge(pretrained=str(tiny_video["model"]), device="cpu", reduction="none")
    assert evaluator.is_video_model
    assert evaluator.build_prompt("what is in the video?", num_images=0, num_videos=1) == (
        f"{VICUNA_V1} USER: <video>\nwhat is in the video? ASSISTANT:"
    )
    # a video answered through generate_batch: the stock model's 8 x (N + 1) tokens with "none"
    frames = read_video(next(iter(tiny_video["folders"]["MSRVTT-QA"].glob("videos/*"))), 8)
    prompt = evaluator.build_prompt("what is in the video?", 0, 1)
    texts, counts = evaluator.generate_batch([prompt], [[frames]], max_new_tokens=3)
    assert counts == [([8 * 145], [[145] * 8])] and isinstance(texts[0], str)


def test_llava_model_refuses_a_video_with_a_clear_error(tmp_path):
    from llava_prumerge.evaluation.lmms_eval_model import LlavaPruMerge
    from llava_prumerge.tiny.setting import write_tiny_assets

    assets = write_tiny_assets(tmp_path / "assets")
    evaluator = LlavaPruMerge(pretrained=str(assets["llava"]), device="cpu")
    with pytest.raises(ValueError, match="task t doc 3: a video .* needs a Video-LLaVA checkpoint"):
        evaluator._load_visual("/data/clip.mp4", "task t doc 3")


def test_docs_accept_video_llavas_layout_and_name_problems(tiny_video, tmp_path):
    # Video-LLaVA's own folder name and clip folder (GPT_Zero_Shot_QA/MSRVTT_Zero_Shot_QA/videos/all)
    source = tiny_video["folders"]["MSRVTT-QA"]
    target = tmp_path / "MSRVTT_Zero_Shot_QA"
    (target / "videos").mkdir(parents=True)
    shutil.copytree(source / "videos", target / "videos" / "all")
    for name in ("test_q.json", "test_a.json"):
        shutil.copy(source / name, target / name)
    docs, missing = build_docs("msrvtt", tmp_path)
    assert not missing and all(Path(d["video"]).parent == target / "videos" / "all" for d in docs)
    questions = json.loads((target / "test_q.json").read_text())
    answers = json.loads((target / "test_a.json").read_text())
    assert [d["answer"] for d in docs] == [a["answer"] for a in answers]

    clip = Path(docs[0]["video"])
    clip.rename(clip.with_suffix(".bak"))
    with pytest.raises(FileNotFoundError, match=r"no clip for 2 of \d+ questions .*SKIP_MISSING_VIDEOS"):
        build_docs("msrvtt", tmp_path)
    task = write_video_task("msrvtt", tmp_path, tmp_path / "tasks", skip_missing=True)
    skipped = json.loads((tmp_path / "tasks" / f"{task}_skipped.json").read_text())
    assert skipped["skipped"] == 2 and skipped["question_ids"] == [q["question_id"] for q in questions[:2]]
    assert len((tmp_path / "tasks" / f"{task}_docs.jsonl").read_text().splitlines()) == len(questions) - 2

    answers[1]["question_id"] = "somebody-else"
    (target / "test_a.json").write_text(json.dumps(answers))
    with pytest.raises(ValueError, match="record 1: test_q.json has question_id .* but test_a.json somebody-else"):
        build_docs("msrvtt", tmp_path, skip_missing=True)
    with pytest.raises(FileNotFoundError, match="MSVD-QA: no local copy"):
        build_docs("msvd", tmp_path)


def test_video_table_from_judge_summaries_and_logs(tmp_path):
    folder = tmp_path / "run" / "msrvtt"
    (folder / "judge").mkdir(parents=True)
    (folder / "judge" / SUMMARY_FILE).write_text(
        json.dumps({"task": "msrvtt_qa_videollava", "accuracy": 0.625, "score": 3.25, "samples": 8, "judge_model": "m"})
    )
    records = [
        {
            "task": "msrvtt_qa_videollava",
            "doc_id": 0,
            "visual_tokens": [20],
            "frame_tokens": [[2, 3, 2, 3, 2, 3, 2, 3]],
        },
        {
            "task": "msrvtt_qa_videollava",
            "doc_id": 1,
            "visual_tokens": [44],
            "frame_tokens": [[5, 6, 5, 6, 5, 6, 5, 6]],
        },
    ]
    (folder / "visual_tokens.jsonl").write_text("".join(json.dumps(r) + "\n" for r in records))
    run = load_video_run(tmp_path / "run", "mine")
    cell = run.cells["msrvtt"]
    assert (cell.accuracy, cell.score, cell.tokens_per_video, cell.tokens_per_frame) == (62.5, 3.25, 32.0, 4.0)
    table = video_markdown([run])
    assert "| mine | – | – | – | – | 62.5 | 3.25 | 32.0 | 4.0 | – | – | – | – |" in table
    with pytest.raises(FileNotFoundError, match="no video QA answers"):
        load_video_run((tmp_path / "empty").mkdir() or tmp_path / "empty")


def test_video_script_without_local_data_says_what_to_set(tiny_video):
    env = {**os.environ, "PYTHON": os.sys.executable, "LOCAL_DATA": "", "OUTPUT": str(tiny_video["root"] / "none")}
    result = subprocess.run(["bash", "scripts/eval/msvd.sh"], cwd=ROOT, env=env, capture_output=True, text=True)
    assert result.returncode != 0
    assert "set LOCAL_DATA" in result.stderr
