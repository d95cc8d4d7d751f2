"""Video run folders → the paper's Table 3 layout (accuracy and score per video QA benchmark).

A video run folder is what ``scripts/eval/video.sh`` wrote for one setting
(``outputs/eval/video/<setting>``): per benchmark the lmms-eval answers, the model's
visual-token log (tokens per video and per frame) and the judge's ``judge_summary.json``
(:mod:`llava_prumerge.evaluation.judge`). Each row gives, per benchmark, the judge's accuracy (%)
and mean score (0-5), as Table 3, and the mean visual tokens per video and per frame (the paper's
"12.5% / 25% of 2048 tokens", Sec. 4.3). The paper's own Video-LLaVA rows are listed first for
reference. A benchmark answered but not judged shows its token counts and "not judged".
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .judge import SUMMARY_FILE
from .results import canonical_task, describe_settings, read_run_settings, token_logs_by_folder
from .video_tasks import PAPER_TABLE3, VIDEO_BENCHMARKS


@dataclass
class VideoCell:
    """One benchmark of one run."""

    accuracy: float | None = None
    """% of answers the judge accepted."""
    score: float | None = None
    judged: int | None = None
    judge_model: str | None = None
    tokens_per_video: float | None = None
    tokens_per_frame: float | None = None
    videos: int = 0


@dataclass
class VideoRun:
    label: str
    folder: Path
    cells: dict[str, VideoCell] = field(default_factory=dict)
    settings: list[dict[str, Any]] = field(default_factory=list)


def _summaries(folder: Path) -> dict[str, dict[str, Any]]:
    """task → the newest judge summary below ``folder`` for it."""
    found: dict[str, tuple[float, dict[str, Any]]] = {}
    for path in folder.rglob(SUMMARY_FILE):
        try:
            summary = json.loads(path.read_text())
            task = canonical_task(str(summary["task"]))
        except (json.JSONDecodeError, KeyError, TypeError) as error:
            raise ValueError(f"{path}: not a judge summary ({error})") from error
        stamp = path.stat().st_mtime
        if task not in found or stamp >= found[task][0]:
            found[task] = (stamp, summary)
    return {task: summary for task, (_, summary) in found.items()}


def load_video_run(folder: str | Path, label: str | None = None) -> VideoRun:
    """Judge summaries and per-frame token logs below ``folder``."""
    folder = Path(folder)
    if not folder.is_dir():
        raise FileNotFoundError(f"run folder {folder} does not exist")
    run = VideoRun(label=label or folder.name, folder=folder)
    frames: dict[str, dict[int, list[list[int]]]] = {}
    logs = token_logs_by_folder(folder, field="frame_tokens")
    for _, per_task in logs:
        frames.update(per_task)
    summaries = _summaries(folder)
    settings = read_run_settings(logs)
    for name, benchmark in VIDEO_BENCHMARKS.items():
        cell = VideoCell()
        videos = [video for docs in frames.get(benchmark.task, {}).values() for video in docs]
        if videos:
            cell.videos = len(videos)
            cell.tokens_per_video = sum(sum(v) for v in videos) / len(videos)
            cell.tokens_per_frame = sum(sum(v) for v in videos) / sum(len(v) for v in videos)
        summary = summaries.get(benchmark.task)
        if summary is not None:
            cell.accuracy = 100.0 * float(summary["accuracy"])
            cell.score = float(summary["score"])
            cell.judged = int(summary["samples"])
            cell.judge_model = summary.get("judge_model") or summary.get("requested_model")
        if videos or summary is not None:
            run.cells[name] = cell
            value = settings.get(benchmark.task)
            if value is not None and value not in run.settings:
                run.settings.append(value)
    if not run.cells:
        raise FileNotFoundError(
            f"{folder}: no video QA answers (visual-token logs with frame_tokens) or judge summaries below it"
        )
    return run


def video_rows(runs: list[VideoRun]) -> list[dict[str, Any]]:
    """Long-form rows (one per run × benchmark), the paper's rows first."""
    rows = []
    for method, values in PAPER_TABLE3.items():
        for name, (accuracy, score) in values.items():
            rows.append(
                {"run": f"{method} (paper)", "benchmark": VIDEO_BENCHMARKS[name].title, "accuracy": accuracy}
                | {"score": score, "judged": None, "judge_model": "gpt-3.5-turbo", "tokens_per_video": None}
                | {"tokens_per_frame": None, "videos": None, "settings": "[]"}
            )
    for run in runs:
        for name, cell in run.cells.items():
            rows.append(
                {
                    "run": run.label,
                    "benchmark": VIDEO_BENCHMARKS[name].title,
                    "accuracy": cell.accuracy,
                    "score": cell.score,
                    "judged": cell.judged,
                    "judge_model": cell.judge_model,
                    "tokens_per_video": cell.tokens_per_video,
                    "tokens_per_frame": cell.tokens_per_frame,
                    "videos": cell.videos,
                    "settings": json.dumps(run.settings),
                }
            )
    return rows


def _fmt(value: float | None, digits: int) -> str:
    return "–" if value is None else f"{value:.{digits}f}"


def video_markdown(runs: list[VideoRun]) -> str:
    """Table 3: per benchmark ``Acc | Score | tokens/video | tokens/frame``, one line per run."""
    titles = [b.title for b in VIDEO_BENCHMARKS.values()]
    by_key = {(r["run"], r["benchmark"]): r for r in video_rows(runs)}
    head = "| run | " + " | ".join(f"{t} Acc | Score | tok/video | tok/frame" for t in titles) + " |"
    lines = [head, "|---|" + "---:|" * (4 * len(titles))]
    labels = [f"{m} (paper)" for m in PAPER_TABLE3] + [r.label for r in runs]
    for label in labels:
        cells = []
        for title in titles:
            row = by_key.get((label, title))
            if row is None:
                cells += ["–"] * 4
                continue
            judged = row["accuracy"] is not None
            cells += [
                _fmt(row["accuracy"], 1) if judged else "not judged",
                _fmt(row["score"], 2 if row["judged"] else 1) if judged else "–",
                _fmt(row["tokens_per_video"], 1),
                _fmt(row["tokens_per_frame"], 1),
            ]
        lines.append(f"| {label} | " + " | ".join(cells) + " |")
    models = sorted({str(c.judge_model) for r in runs for c in r.cells.values() if c.judge_model})
    lines += [
        "",
        "Acc: % of answers the judge accepted; Score: its mean 0-5 rating (Video-ChatGPT's judge prompt). "
        "The paper's rows were judged by gpt-3.5-turbo; judged here by "
        + (", ".join(models) if models else "no judge yet")
        + ". Stock Video-LLaVA feeds 8 frames x 257 tokens = 2056 per video (the paper counts 2048).",
        "",
        "Settings (each run's run_settings.json):",
        "",
    ]
    for run in runs:
        described = "; ".join(describe_settings(s) for s in run.settings) if run.settings else "not recorded"
        lines.append(f"- {run.label}: {described}")
    return "\n".join(lines) + "\n"
