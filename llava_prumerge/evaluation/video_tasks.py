"""Table 3's video QA benchmarks (MSVD-QA, MSRVTT-QA, ActivityNet-QA) as local lmms-eval tasks.

Paper Sec. 4.3 / Table 3 evaluates Video-LLaVA-7B (+ PruMerge / PruMerge+) zero-shot on the three
benchmarks as Video-LLaVA did: the model answers each question, then gpt-3.5-turbo judges the
answer against the reference (accuracy and a 0-5 score; :mod:`llava_prumerge.evaluation.judge`).
lmms-eval 0.7.3 ships only ActivityNet-QA (from the Hub, with a judge that scores 0 without an
API key), so all three are tasks of ours over local copies in Video-ChatGPT's zero-shot QA format,
the files Video-LLaVA's ``videollava/eval/video/run_inference_video_qa.py`` reads:

    DIR/MSVD-QA/test_q.json     [{"video_name", "question", "question_id"}, ...]
    DIR/MSVD-QA/test_a.json     [{"answer", "type", "question_id"}, ...]   (same order)
    DIR/MSVD-QA/videos/<video_name>.avi

(``MSRVTT-QA``, ``ActivityNet-QA`` alike; Video-LLaVA's own folder names ``MSVD_Zero_Shot_QA``,
``MSRVTT_Zero_Shot_QA``, ``Activitynet_Zero_Shot_QA`` are accepted too, and the clips may sit in
``videos/``, ``videos/all/``, ``all_test/`` or the folder itself.) ActivityNet's clips are named
``v_<video_name>``. Answers pair with questions by position, as Video-LLaVA pairs them; their
``question_id``s must agree.

The lmms-eval runs only generate: no judge runs inside lmms-eval. Each sample's
``process_results`` logs ``{question_id, question, answer, pred, video_name}`` under the metric
``video_qa`` (lmms-eval 0.7.3 drops the doc itself from its samples file), whose aggregate is the
number of questions answered; the judge reads those records from the samples file. The protocol is Video-LLaVA's: the question as written (no added instruction), 8 frames by
:func:`llava_prumerge.video.frame_indices`, greedy decoding, up to 1024 new tokens.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from ..video import find_video


@dataclass(frozen=True)
class VideoBenchmark:
    """One column pair (accuracy, score) of Table 3."""

    name: str
    title: str
    task: str
    """Our lmms-eval task name."""
    folders: tuple[str, ...]
    """Accepted names of the local copy's folder, ours first."""
    prefix: str = ""
    """Prepended to ``video_name`` to name the clip (ActivityNet: ``v_``)."""


VIDEO_BENCHMARKS: dict[str, VideoBenchmark] = {
    b.name: b
    for b in (
        VideoBenchmark("msvd", "MSVD-QA", "msvd_qa_videollava", ("MSVD-QA", "MSVD_Zero_Shot_QA")),
        VideoBenchmark("msrvtt", "MSRVTT-QA", "msrvtt_qa_videollava", ("MSRVTT-QA", "MSRVTT_Zero_Shot_QA")),
        VideoBenchmark(
            "activitynet", "ActivityNet-QA", "activitynet_qa_videollava", ("ActivityNet-QA", "Activitynet_Zero_Shot_QA"), "v_"
        ),
    )
}  # fmt: skip
"""Table 3's benchmarks, in the paper's column order."""

VIDEO_FOLDERS = ("videos", "videos/all", "all_test", ".")
"""Where the clips may sit inside a benchmark folder (ours; Video-LLaVA's MSRVTT and ActivityNet layouts)."""

PAPER_TABLE3: dict[str, dict[str, tuple[float, float]]] = {
    "Video-LLaVA": {"msvd": (70.7, 3.9), "msrvtt": (59.2, 3.5), "activitynet": (45.3, 3.3)},
    "Video-LLaVA + PruMerge": {"msvd": (71.1, 3.9), "msrvtt": (58.4, 3.5), "activitynet": (48.3, 3.4)},
    "Video-LLaVA + PruMerge+": {"msvd": (71.1, 3.9), "msrvtt": (59.3, 3.6), "activitynet": (47.7, 3.4)},
}
"""The paper's Table 3 rows for Video-LLaVA-7B: (accuracy %, score 0-5), judged by gpt-3.5-turbo."""

GENERATION = {"until": ["</s>"], "max_new_tokens": 1024, "do_sample": False, "temperature": 0, "num_beams": 1}
"""Video-LLaVA's ``get_model_output``: greedy (temperature 0), 1024 new tokens, stop at ``</s>``."""

_HERE = "llava_prumerge.evaluation.video_tasks"


def benchmark_folder(benchmark: str, local_data: str | Path) -> Path:
    """The local copy of ``benchmark`` under ``local_data``; FileNotFoundError naming what was tried."""
    spec = _spec(benchmark)
    for name in spec.folders:
        folder = Path(local_data) / name
        if (folder / "test_q.json").is_file():
            return folder
    tried = ", ".join(str(Path(local_data) / name / "test_q.json") for name in spec.folders)
    raise FileNotFoundError(f"{spec.title}: no local copy under {local_data} (looked for {tried})")


def _spec(benchmark: str) -> VideoBenchmark:
    if benchmark not in VIDEO_BENCHMARKS:
        raise ValueError(f"unknown video benchmark {benchmark!r}; expected one of {', '.join(VIDEO_BENCHMARKS)}")
    return VIDEO_BENCHMARKS[benchmark]


def _read_list(path: Path) -> list[dict[str, Any]]:
    try:
        records = json.loads(path.read_text())
    except json.JSONDecodeError as error:
        raise ValueError(f"{path}: not valid JSON ({error})") from error
    if not isinstance(records, list) or not all(isinstance(r, dict) for r in records):
        raise ValueError(f"{path}: expected a JSON list of objects")
    return records


def _video(folder: Path, name: str, prefix: str) -> Path | None:
    for sub in VIDEO_FOLDERS:
        directory = folder / sub
        if directory.is_dir():
            try:
                return find_video(directory, name, (prefix,))
            except FileNotFoundError:
                continue
    return None


def build_docs(benchmark: str, local_data: str | Path, skip_missing: bool = False) -> tuple[list[dict], list[str]]:
    """The benchmark's docs (``question_id, question, answer, type, video_name, video``) and the
    ``question_id``s skipped for a missing clip.

    A missing clip is an error listing the first few unless ``skip_missing`` (then counted and
    returned: Video-LLaVA's script skips them silently, which changes the denominator).
    Malformed files are errors naming the file and the record.
    """
    spec = _spec(benchmark)
    folder = benchmark_folder(benchmark, local_data)
    questions = _read_list(folder / "test_q.json")
    answers = _read_list(folder / "test_a.json")
    if len(questions) != len(answers):
        raise ValueError(f"{folder}: test_q.json has {len(questions)} questions but test_a.json {len(answers)} answers")
    docs, missing = [], []
    for index, (question, answer) in enumerate(zip(questions, answers)):
        for path, record, keys in (
            ("test_q.json", question, ("video_name", "question", "question_id")),
            ("test_a.json", answer, ("answer",)),
        ):
            absent = [key for key in keys if key not in record]
            if absent:
                raise ValueError(f"{folder / path}: record {index} has no {', '.join(absent)}")
        qid = str(question["question_id"])
        if "question_id" in answer and str(answer["question_id"]) != qid:
            raise ValueError(
                f"{folder}: record {index}: test_q.json has question_id {qid} but test_a.json "
                f"{answer['question_id']} (answers pair with questions by position)"
            )
        video = _video(folder, str(question["video_name"]), spec.prefix)
        if video is None:
            missing.append(qid)
            continue
        docs.append(
            {
                "question_id": qid,
                "question": str(question["question"]),
                "answer": str(answer["answer"]),
                "type": answer.get("type"),
                "video_name": str(question["video_name"]),
                "video": str(video.resolve()),
            }
        )
    if missing and not skip_missing:
        shown = ", ".join(missing[:5]) + (" ..." if len(missing) > 5 else "")
        raise FileNotFoundError(
            f"{spec.title}: no clip for {len(missing)} of {len(questions)} questions ({shown}) under "
            f"{folder} ({', '.join(VIDEO_FOLDERS)}; prefix {spec.prefix!r}); SKIP_MISSING_VIDEOS=1 skips them"
        )
    if not docs:
        raise FileNotFoundError(f"{spec.title}: no question under {folder} has its clip")
    return docs, missing


def write_video_task(benchmark: str, local_data: str | Path, out_dir: str | Path, skip_missing: bool = False) -> str:
    """Write the task YAML (and its docs JSONL) for ``benchmark`` into ``out_dir``; return the task name.

    When clips are skipped, ``<task>_skipped.json`` beside the YAML lists their question ids.
    """
    spec = _spec(benchmark)
    out_dir = Path(out_dir).resolve()
    out_dir.mkdir(parents=True, exist_ok=True)
    docs, missing = build_docs(benchmark, local_data, skip_missing)
    docs_path = out_dir / f"{spec.task}_docs.jsonl"
    docs_path.write_text("".join(json.dumps(doc) + "\n" for doc in docs))
    skipped = out_dir / f"{spec.task}_skipped.json"
    if missing:
        skipped.write_text(json.dumps({"skipped": len(missing), "question_ids": missing}, indent=1) + "\n")
    else:
        skipped.unlink(missing_ok=True)
    body = {
        "task": spec.task,
        "dataset_path": "json",
        "dataset_kwargs": {"data_files": {"test": str(docs_path)}},
        "test_split": "test",
        "output_type": "generate_until",
        "generation_kwargs": GENERATION,
        "metric_list": [{"metric": "video_qa", "aggregation": "!function", "higher_is_better": True}],
        "metadata": {"version": 0.0, "benchmark": spec.title},
    }
    text = yaml.safe_dump(body, sort_keys=False).replace("'!function'", f"!function {_HERE}.answered")
    for key in ("doc_to_visual", "doc_to_text", "doc_to_target", "process_results"):
        text += f"{key}: !function {_HERE}.{key}\n"
    (out_dir / f"{spec.task}.yaml").write_text(text)
    return spec.task


def doc_to_visual(doc: dict[str, Any]) -> list[str]:
    """The clip's path: the model decodes it (8 frames, :func:`llava_prumerge.video.read_video`)."""
    return [doc["video"]]


def doc_to_text(doc: dict[str, Any], lmms_eval_specific_kwargs: dict | None = None) -> str:
    """The question as written (Video-LLaVA adds no instruction; lmms-eval's ActivityNet task
    capitalises it and appends "Answer the question using a single word or phrase.")."""
    return doc["question"]


def doc_to_target(doc: dict[str, Any]) -> str:
    return doc["answer"]


def process_results(doc: dict[str, Any], results: list[str]) -> dict[str, dict[str, Any]]:
    """The record the judge reads (Video-LLaVA's prediction format plus the clip's name)."""
    return {
        "video_qa": {
            "question_id": doc["question_id"],
            "question": doc["question"],
            "answer": doc["answer"],
            "pred": results[0],
            "video_name": doc["video_name"],
        }
    }


def answered(records: list[dict[str, Any]]) -> int:
    """The ``video_qa`` aggregate: how many questions were answered (the judge scores them)."""
    return len(records)
