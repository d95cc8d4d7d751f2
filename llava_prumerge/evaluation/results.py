"""lmms-eval output folders → the paper's tables (Table 1 layout), with visual-token statistics.

A *run folder* is what one setting produced (e.g. ``outputs/eval/prumerge``): any number of
lmms-eval ``*_results.json`` files below it (one per benchmark script) and the model's
``visual_tokens*.jsonl`` logs (:class:`llava_prumerge.evaluation.lmms_eval_model.LlavaPruMerge`). For each
task the newest results file and the newest log that contain it are used; ``_local`` task names
(tiny or user-provided local copies) are reported under the benchmark's task name.

Each benchmark's number is computed as Table 1 reports it (:data:`llava_prumerge.evaluation.tasks.BENCHMARKS`):
accuracies in %, POPE's F1 averaged over its three splits, MME's perception score; next to it the
mean number of visual tokens per sample on that benchmark (Sec. 4.4.1).
"""

from __future__ import annotations

import csv
import io
import json
import math
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .tasks import BENCHMARKS

LOCAL_SUFFIX = "_local"
RUN_SETTINGS_FILE = "run_settings.json"
"""Written by the lmms-eval model beside its visual-token log: the full resolved reduction and the
model behind the results (:class:`llava_prumerge.evaluation.lmms_eval_model.LlavaPruMerge`)."""
RESULTS_FILE = re.compile(r"^\d{8}_\d{6}_results\.json$")
"""lmms-eval's results file name (``<YYYYmmdd_HHMMSS>_results.json``); tasks' own files differ."""


def results_files(folder: Path) -> list[Path]:
    """lmms-eval results files below ``folder``, oldest first."""
    paths = [p for p in folder.rglob("*_results.json") if RESULTS_FILE.match(p.name)]
    return sorted(paths, key=lambda p: (p.stat().st_mtime, p.name))


def canonical_task(name: str) -> str:
    return name[: -len(LOCAL_SUFFIX)] if name.endswith(LOCAL_SUFFIX) else name


@dataclass
class RunResults:
    """Scores and visual tokens of one run folder."""

    label: str
    folder: Path
    metrics: dict[str, dict[str, Any]] = field(default_factory=dict)
    """task → {metric: value} (lmms-eval's ``"<metric>,none"`` keys, filter suffix dropped)."""
    samples: dict[str, int] = field(default_factory=dict)
    """task → number of evaluated samples."""
    visual_tokens: dict[str, dict[int, int]] = field(default_factory=dict)
    """task → {doc_id: visual tokens fed to the LLM for that sample (all its images)}."""
    model_args: dict[str, str] = field(default_factory=dict)
    """task → the ``--model_args`` string that produced it."""
    settings: dict[str, dict[str, Any]] = field(default_factory=dict)
    """task → the model's ``run_settings.json`` (resolved reduction, checkpoint, adapter, base)."""

    def settings_for(self, tasks: tuple[str, ...] | list[str]) -> list[dict[str, Any]]:
        """The distinct settings behind ``tasks`` (more than one: the benchmark mixes runs)."""
        distinct: list[dict[str, Any]] = []
        for task in tasks:
            value = self.settings.get(task)
            if value is not None and value not in distinct:
                distinct.append(value)
        return distinct

    def token_stats(self, tasks: tuple[str, ...] | list[str]) -> dict[str, float] | None:
        counts = [c for t in tasks for c in self.visual_tokens.get(t, {}).values()]
        if not counts:
            return None
        return {"mean": sum(counts) / len(counts), "min": min(counts), "max": max(counts), "samples": len(counts)}


def _strip_metrics(values: dict[str, Any]) -> dict[str, Any]:
    metrics = {}
    for key, value in values.items():
        if "," not in key or "_stderr" in key:
            continue
        name, filter_name = key.split(",", 1)
        if filter_name == "none":
            metrics[name] = value
    return metrics


def token_logs_by_folder(
    folder: str | Path, field: str = "visual_tokens"
) -> list[tuple[Path, dict[str, dict[int, list[int]]]]]:
    """The plugin's ``visual_tokens*.jsonl`` logs below ``folder``, one entry per log folder,
    oldest first: ``(folder, task → {doc_id: visual tokens of each of the sample's images})``.

    One benchmark run writes its logs into one folder (one file per process with NUM_GPUS > 1): the
    files of a folder are merged. A malformed line is an error naming the file and line.
    ``field="frame_tokens"`` reads the tokens of each frame of each video instead (a list of
    lists per sample; records without videos are skipped).
    """
    logs: dict[Path, list[Path]] = {}
    for path in Path(folder).rglob("visual_tokens*.jsonl"):
        logs.setdefault(path.parent, []).append(path)
    folders = []
    for directory in sorted(logs, key=lambda d: max(p.stat().st_mtime for p in logs[d])):
        per_task: dict[str, dict[int, list[int]]] = {}
        for path in sorted(logs[directory]):
            for number, line in enumerate(path.read_text().splitlines(), start=1):
                if not line.strip():
                    continue
                try:
                    record = json.loads(line)
                    task, doc_id = canonical_task(record["task"]), int(record["doc_id"])
                    if field == "frame_tokens":
                        if "frame_tokens" not in record:
                            continue
                        images = [[int(count) for count in video] for video in record["frame_tokens"]]
                    else:
                        images = [int(count) for count in record[field]]
                except (json.JSONDecodeError, KeyError, TypeError, ValueError) as error:
                    raise ValueError(f"{path}:{number}: malformed visual-token record ({error})") from error
                per_task.setdefault(task, {})[doc_id] = images
        folders.append((directory, per_task))
    return folders


def read_token_logs(folder: str | Path) -> dict[str, dict[int, list[int]]]:
    """task → {doc_id: visual tokens of each of the sample's images} below ``folder``; a newer log
    folder's tasks replace an older one's (:func:`token_logs_by_folder`)."""
    tokens: dict[str, dict[int, list[int]]] = {}
    for _, per_task in token_logs_by_folder(folder):
        tokens.update(per_task)
    return tokens


def read_run_settings(
    logs: list[tuple[Path, dict[str, dict[int, list[int]]]]],
) -> dict[str, dict[str, Any]]:
    """task → the ``run_settings.json`` beside the visual-token logs that hold the task, for the
    log folders of :func:`token_logs_by_folder` (a newer folder's tasks replace an older one's)."""
    found: dict[str, dict[str, Any]] = {}
    for directory, per_task in logs:
        path = directory / RUN_SETTINGS_FILE
        if not path.is_file():
            continue
        try:
            settings = json.loads(path.read_text())
        except json.JSONDecodeError as error:
            raise ValueError(f"{path}: not valid JSON ({error})") from error
        found.update(dict.fromkeys(per_task, settings))
    return found


def describe_settings(settings: dict[str, Any]) -> str:
    """One line: the reduction's fields and the model it ran on."""
    reduction = ", ".join(f"{k}={v}" for k, v in settings.get("token_reduction", {}).items() if v is not None)
    model = settings.get("adapter") or settings.get("pretrained")
    base = settings.get("base_model") or {}
    base_name = base.get("model_name_or_path") or base.get("language_model")
    return f"{reduction}; model {model}" + (f" (base {base_name})" if base_name else "")


def load_run(folder: str | Path, label: str | None = None) -> RunResults:
    """Read every results file and visual-token log below ``folder`` (newest wins per task)."""
    folder = Path(folder)
    if not folder.is_dir():
        raise FileNotFoundError(f"run folder {folder} does not exist")
    run = RunResults(label=label or folder.name, folder=folder)
    result_files = results_files(folder)
    if not result_files:
        raise FileNotFoundError(f"{folder}: no lmms-eval *_results.json below it (did the evaluation fail?)")
    for path in result_files:
        try:
            data = json.loads(path.read_text())
            results = data["results"]
        except (json.JSONDecodeError, KeyError) as error:
            raise ValueError(f"{path}: not an lmms-eval results file ({error})") from error
        model_args = str(data.get("config", {}).get("model_args", ""))
        for task, values in results.items():
            name = canonical_task(task)
            run.metrics[name] = _strip_metrics(values)
            run.model_args[name] = model_args
            if task in data.get("n-samples", {}):
                run.samples[name] = int(data["n-samples"][task].get("effective", 0))
    logs = token_logs_by_folder(folder)
    for _, per_task in logs:
        for task, docs in per_task.items():
            run.visual_tokens[task] = {doc_id: sum(images) for doc_id, images in docs.items()}
    run.settings = read_run_settings(logs)
    return run


@dataclass
class Cell:
    """One benchmark of one run: the reported number and the visual tokens behind it."""

    score: float | None
    tokens: dict[str, float] | None


def benchmark_cells(run: RunResults) -> dict[str, Cell]:
    """Table 1's number for each benchmark the run has (missing tasks → no entry)."""
    cells = {}
    for name, benchmark in BENCHMARKS.items():
        values = [run.metrics.get(t, {}).get(benchmark.metric) for t in benchmark.score_tasks]
        if all(v is None for v in values):
            continue
        numeric = [v for v in values if isinstance(v, (int, float)) and not isinstance(v, bool)]
        score = None
        if len(numeric) == len(values) and all(math.isfinite(v) for v in numeric):
            score = sum(numeric) / len(numeric) * benchmark.scale
        cells[name] = Cell(score=score, tokens=run.token_stats(benchmark.score_tasks))
    return cells


def _fmt(value: float | None, digits: int = 1, signed: bool = False) -> str:
    if value is None:
        return "–"
    return f"{value:+.{digits}f}" if signed else f"{value:.{digits}f}"


def build_table(runs: list[RunResults], baseline: str | None = None) -> tuple[list[str], list[dict[str, Any]]]:
    """Long-form rows (one per run × benchmark) with deltas against ``baseline`` (a run label)."""
    labels = [r.label for r in runs]
    if len(set(labels)) != len(labels):
        raise ValueError(f"run labels must be unique, got {labels}")
    if baseline is not None and baseline not in labels:
        raise ValueError(f"baseline {baseline!r} is not one of the runs {labels}")
    all_cells = {r.label: benchmark_cells(r) for r in runs}
    present = [b for b in BENCHMARKS if any(b in cells for cells in all_cells.values())]
    rows = []
    for run in runs:
        for name in present:
            cell = all_cells[run.label].get(name)
            base = all_cells[baseline].get(name) if baseline else None
            tokens = cell.tokens if cell else None
            row = {
                "run": run.label,
                "benchmark": BENCHMARKS[name].title,
                "metric": BENCHMARKS[name].metric,
                "score": cell.score if cell else None,
                "visual_tokens_mean": tokens["mean"] if tokens else None,
                "visual_tokens_min": tokens["min"] if tokens else None,
                "visual_tokens_max": tokens["max"] if tokens else None,
                "samples": tokens["samples"] if tokens else None,
                "delta_score": None,
                "delta_visual_tokens": None,
                "settings": json.dumps(run.settings_for(BENCHMARKS[name].score_tasks)),
            }
            if base is not None and cell is not None:
                if cell.score is not None and base.score is not None:
                    row["delta_score"] = cell.score - base.score
                if tokens and base.tokens:
                    row["delta_visual_tokens"] = tokens["mean"] - base.tokens["mean"]
            rows.append(row)
    return [BENCHMARKS[b].title for b in present], rows


def to_markdown(titles: list[str], rows: list[dict[str, Any]], baseline: str | None = None) -> str:
    """Table 1 layout: one line per run, ``score (mean visual tokens)`` per benchmark."""
    runs = list(dict.fromkeys(r["run"] for r in rows))
    by_key = {(r["run"], r["benchmark"]): r for r in rows}
    lines = ["| run | " + " | ".join(titles) + " |", "|---|" + "---:|" * len(titles)]
    for run in runs:
        cells = []
        for title in titles:
            row = by_key.get((run, title))
            empty = row is None or (row["score"] is None and row["visual_tokens_mean"] is None)
            cells.append("–" if empty else f"{_fmt(row['score'])} ({_fmt(row['visual_tokens_mean'])})")
        lines.append(f"| {run} | " + " | ".join(cells) + " |")
    if baseline is not None:
        lines += ["", f"Δ vs {baseline}: score (visual tokens)", "", lines[0], lines[1]]
        for run in runs:
            if run == baseline:
                continue
            cells = []
            for title in titles:
                row = by_key.get((run, title))
                empty = row is None or (row["delta_score"] is None and row["delta_visual_tokens"] is None)
                cells.append(
                    "–"
                    if empty
                    else f"{_fmt(row['delta_score'], signed=True)} ({_fmt(row['delta_visual_tokens'], signed=True)})"
                )
            lines.append(f"| {run} | " + " | ".join(cells) + " |")
    notes = [
        f"- {BENCHMARKS[b].title}: {BENCHMARKS[b].note}"
        for b in BENCHMARKS
        if BENCHMARKS[b].title in titles and BENCHMARKS[b].note
    ]
    lines += ["", "Cells: score (mean visual tokens per sample)."] + notes
    lines += ["", "Settings (each run's run_settings.json):", ""]
    for run in runs:
        distinct = []
        for row in rows:
            if row["run"] == run:
                for settings in json.loads(row.get("settings") or "[]"):
                    if settings not in distinct:
                        distinct.append(settings)
        described = "; ".join(describe_settings(s) for s in distinct) if distinct else "not recorded"
        mixed = " **(benchmarks ran with different settings)**" if len(distinct) > 1 else ""
        lines.append(f"- {run}: {described}{mixed}")
    return "\n".join(lines) + "\n"


def to_csv(rows: list[dict[str, Any]]) -> str:
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=list(rows[0]) if rows else ["run"], lineterminator="\n")
    writer.writeheader()
    writer.writerows(rows)
    return buffer.getvalue()


def log_to_wandb(
    rows: list[dict[str, Any]], project: str, name: str | None = None, directory: str | None = None
) -> None:
    """Log the long-form table to Weights & Biases (``WANDB_MODE=offline`` works)."""
    import wandb

    run = wandb.init(
        project=project,
        name=name,
        dir=directory,
        job_type="eval-table",
        config={"runs": sorted({r["run"] for r in rows})},
    )
    columns = list(rows[0]) if rows else ["run"]
    run.log({"paper_table": wandb.Table(columns=columns, data=[[r[c] for c in columns] for r in rows])})
    run.finish()


def check_run(folder: str | Path, tasks: list[str], since: float) -> dict[str, Any]:
    """Fail unless a results file written after ``since`` (epoch seconds) has every task.

    lmms-eval exits 0 even when evaluation failed (it logs the error and writes no results), so
    the scripts call this after each run. Returns the summary written to ``<folder>/summary.json``:
    the new results' metrics and the visual-token mean/min/max per task.
    """
    folder = Path(folder)
    fresh = [p for p in results_files(folder) if p.stat().st_mtime >= since]
    if not fresh:
        raise RuntimeError(f"{folder}: lmms-eval wrote no results file; the evaluation failed (see its log above)")
    found: dict[str, Any] = {}
    for path in fresh:
        found.update(json.loads(path.read_text()).get("results", {}))
    missing = [t for t in tasks if t not in found]
    if missing:
        raise RuntimeError(f"{folder}: no results for {', '.join(missing)}; the evaluation failed for them")
    run = load_run(folder)
    summary = {}
    for task in found:
        name = canonical_task(task)
        summary[task] = {
            "metrics": run.metrics.get(name, {}),
            "visual_tokens": run.token_stats([name]),
            "settings": run.settings.get(name),
        }
    (folder / "summary.json").write_text(json.dumps(summary, indent=2) + "\n")
    return summary


SCORE_TASKS: tuple[str, ...] = tuple(dict.fromkeys(t for b in BENCHMARKS.values() for t in b.score_tasks))
"""Every task a benchmark's reported number is computed from (the samples the tables count)."""


def run_benchmarks(run: RunResults) -> list[str]:
    """The benchmarks (Table 1's order) whose score tasks have results or visual tokens in ``run``."""
    return [
        name
        for name, benchmark in BENCHMARKS.items()
        if any(t in run.metrics or t in run.visual_tokens for t in benchmark.score_tasks)
    ]


def mean_visual_tokens(run: RunResults, benchmarks: list[str] | None = None) -> dict[str, float] | None:
    """Visual-token statistics pooled over every sample of ``benchmarks``' score tasks (all of the
    run's benchmarks when ``None``): each sample counts once, whichever benchmark it belongs to."""
    names = run_benchmarks(run) if benchmarks is None else benchmarks
    unknown = [b for b in names if b not in BENCHMARKS]
    if unknown:
        raise ValueError(f"unknown benchmark(s) {', '.join(unknown)}; expected {', '.join(BENCHMARKS)}")
    return run.token_stats([t for b in names for t in BENCHMARKS[b].score_tasks])


def runs_summary(runs: list[RunResults]) -> dict[str, Any]:
    """label → {folder, per-benchmark score / mean visual tokens / samples, pooled mean visual tokens}:
    one JSON-ready record of several settings (e.g. ``OUTPUT/summary.json`` of ``scripts/eval/scenes.sh``)."""
    labels = [r.label for r in runs]
    if len(set(labels)) != len(labels):
        raise ValueError(f"run labels must be unique, got {labels}")
    summary: dict[str, Any] = {}
    for run in runs:
        benchmarks = {}
        for name, cell in benchmark_cells(run).items():
            benchmarks[name] = {
                "score": cell.score,
                "visual_tokens_mean": cell.tokens["mean"] if cell.tokens else None,
                "samples": cell.tokens["samples"] if cell.tokens else None,
            }
        pooled = mean_visual_tokens(run)
        summary[run.label] = {
            "folder": str(run.folder),
            "benchmarks": benchmarks,
            "visual_tokens_mean": pooled["mean"] if pooled else None,
            "samples": pooled["samples"] if pooled else None,
        }
    return summary


def _pearson(xs: list[float], ys: list[float]) -> float | None:
    """Pearson's r of two equally long lists; ``None`` with fewer than two points or no variance."""
    if len(xs) < 2:
        return None
    mean_x, mean_y = sum(xs) / len(xs), sum(ys) / len(ys)
    sxy = sum((x - mean_x) * (y - mean_y) for x, y in zip(xs, ys))
    sxx = sum((x - mean_x) ** 2 for x in xs)
    syy = sum((y - mean_y) ** 2 for y in ys)
    if sxx == 0 or syy == 0:
        return None
    return sxy / math.sqrt(sxx * syy)


def read_scene_objects(objects_path: str | Path) -> dict[str, dict[str, float]]:
    """``{task: {doc_id: objects in that sample's scene}}`` (``scene_objects.json`` of the scene
    benchmarks); an error naming the file when it is missing or malformed."""
    path = Path(objects_path)
    if not path.is_file():
        raise FileNotFoundError(
            f"objects file {path} does not exist (expected {{task: {{doc_id: object count}}}}, "
            "the scene_objects.json written beside the scene benchmarks)"
        )
    try:
        data = json.loads(path.read_text())
    except json.JSONDecodeError as error:
        raise ValueError(f"{path}: not valid JSON ({error})") from error
    if not isinstance(data, dict) or not all(isinstance(docs, dict) for docs in data.values()):
        raise ValueError(f"{path}: expected {{task: {{doc_id: object count}}}}")
    objects: dict[str, dict[str, float]] = {}
    for task, docs in data.items():
        for doc_id, count in docs.items():
            if isinstance(count, bool) or not isinstance(count, (int, float)):
                raise ValueError(f"{path}: {task} doc {doc_id}: object count {count!r} is not a number")
        objects[canonical_task(task)] = {str(doc_id): count for doc_id, count in docs.items()}
    return objects


def object_count_correlation(run_folder: str | Path, objects_path: str | Path) -> dict[str, Any]:
    """How a run's kept visual tokens follow the number of objects in each sample's scene.

    Tokens per sample are the sum over its images from the visual-token logs below ``run_folder``
    (:func:`read_token_logs`); the samples are those of every logged task that is a benchmark's
    score task (:data:`SCORE_TASKS`) or is named in the objects file. Each of them must have an
    object count (an error names the missing task or doc ids). Returns ``samples``, ``pearson_r``
    (Pearson's correlation between kept tokens and object count; ``None`` without variance),
    ``tasks`` (task → samples) and ``by_object_count`` (one entry per object count, ascending:
    ``objects``, ``samples``, ``mean_tokens``, ``min_tokens``, ``max_tokens``).
    """
    objects = read_scene_objects(objects_path)
    tokens = read_token_logs(run_folder)
    if not tokens:
        raise FileNotFoundError(f"{run_folder}: no visual-token logs (visual_tokens*.jsonl) below it")
    tasks = [t for t in tokens if t in SCORE_TASKS or t in objects]
    if not tasks:
        raise ValueError(
            f"{run_folder}: none of the logged tasks ({', '.join(sorted(tokens))}) is a benchmark task "
            f"or in {objects_path}"
        )
    absent = [t for t in tasks if t not in objects]
    if absent:
        raise ValueError(
            f"{objects_path}: no object counts for task(s) {', '.join(absent)} of {run_folder} "
            f"(it has {', '.join(sorted(objects)) or 'none'})"
        )
    counts: list[float] = []
    kept: list[float] = []
    per_task: dict[str, int] = {}
    for task in tasks:
        missing = [d for d in sorted(tokens[task]) if str(d) not in objects[task]]
        if missing:
            shown = ", ".join(str(d) for d in missing[:10]) + (
                f" (+{len(missing) - 10} more)" if len(missing) > 10 else ""
            )
            raise ValueError(f"{objects_path}: task {task} has no object count for doc_id(s) {shown}")
        for doc_id, images in sorted(tokens[task].items()):
            counts.append(objects[task][str(doc_id)])
            kept.append(sum(images))
        per_task[task] = len(tokens[task])
    by_count: dict[float, list[float]] = {}
    for count, value in zip(counts, kept):
        by_count.setdefault(count, []).append(value)
    return {
        "run": str(run_folder),
        "objects_file": str(objects_path),
        "samples": len(kept),
        "pearson_r": _pearson(counts, kept),
        "tasks": per_task,
        "by_object_count": [
            {
                "objects": count,
                "samples": len(values),
                "mean_tokens": sum(values) / len(values),
                "min_tokens": min(values),
                "max_tokens": max(values),
            }
            for count, values in sorted(by_count.items())
        ],
    }
