"""The trained tiny testbed's targets, read from one ``scripts/eval/scenes.sh`` output folder.

What the testbed has to show (issue 16), each as a measured value against a threshold:

- the full-token model is trained: at least ``floor`` (85 by default) on the yes/no sets (POPE F1;
  MME as its perception score over the maximum, i.e. the mean of accuracy and accuracy+) and the
  multiple-choice sets (ScienceQA-IMG, MMBench), and at least twice chance on the open ones
  (VQAv2, TextVQA);
- adaptive counts follow the scene: Pearson's r between PruMerge's kept tokens and the number of
  items in the scene is positive;
- the paper's orderings at equal budget (mean over the benchmarks, MME scaled to %):
  PruMerge ≥ Spatial ≥ Sequential (Table 4), AITS+TS ≥ AITS (Table 5), LoRA PruMerge ≥
  training-free PruMerge (Table 6). A margin below zero is a miss, and reported as one.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from ..tiny.scenes import COLOURS, MAX_SHAPES, MME_CATEGORIES, SHAPES, TEXTS

YES_NO = ("pope", "mme")
MULTIPLE_CHOICE = ("sqa", "mmbench")
CHANCE = {
    # VQAv2 scene questions: counting (0..6), colour, shape and yes/no, in equal shares
    "vqav2": 100 * (1 / (MAX_SHAPES + 1) + 1 / len(COLOURS) + 1 / len(SHAPES) + 1 / 2) / 4,
    "textvqa": 100 / len(TEXTS),
}
"""Accuracy of a uniform guess among the right kind of answer (%)."""


@dataclass
class Target:
    name: str
    measured: float | None
    threshold: float
    met: bool


def percent(benchmark: str, score: float | None) -> float | None:
    """A benchmark's score in % (MME: perception score over its maximum, 200 per category)."""
    if score is None:
        return None
    return 100 * score / (200 * len(MME_CATEGORIES)) if benchmark == "mme" else score


def mean_score(setting: dict[str, Any], benchmarks: list[str]) -> float | None:
    values = [percent(b, setting["benchmarks"].get(b, {}).get("score")) for b in benchmarks]
    return None if any(v is None for v in values) else sum(values) / len(values)


def evaluate_targets(output: str | Path, floor: float = 85.0) -> list[Target]:
    """Every target above for the run folder ``output`` (``summary.json``, ``objects_prumerge.json``)."""
    output = Path(output)
    summary_path = output / "summary.json"
    if not summary_path.is_file():
        raise FileNotFoundError(f"{summary_path} is missing: run scripts/eval/scenes.sh first")
    summary = json.loads(summary_path.read_text())
    for needed in ("full", "prumerge", "sequential", "spatial", "aits"):
        if needed not in summary:
            raise ValueError(f"{summary_path}: no {needed!r} setting (has {sorted(summary)})")
    targets = []
    full = summary["full"]["benchmarks"]
    for benchmark in YES_NO + MULTIPLE_CHOICE:
        value = percent(benchmark, full.get(benchmark, {}).get("score"))
        targets.append(Target(f"full tokens: {benchmark} (%)", value, floor, value is not None and value >= floor))
    for benchmark, chance in CHANCE.items():
        value = full.get(benchmark, {}).get("score")
        targets.append(
            Target(
                f"full tokens: {benchmark} (%), 2x chance", value, 2 * chance, value is not None and value >= 2 * chance
            )
        )
    objects_path = output / "objects_prumerge.json"
    if objects_path.is_file():
        r = json.loads(objects_path.read_text()).get("pearson_r")
        targets.append(Target("PruMerge kept tokens vs items in scene: Pearson r", r, 0.0, r is not None and r > 0))
    benchmarks = sorted(set(full) & set(summary["prumerge"]["benchmarks"]))
    orderings = [("prumerge", "spatial"), ("spatial", "sequential"), ("prumerge", "aits")]
    if "lora_prumerge" in summary:
        orderings.append(("lora_prumerge", "prumerge"))
    for better, worse in orderings:
        margin = None
        if better in summary and worse in summary:
            high, low = mean_score(summary[better], benchmarks), mean_score(summary[worse], benchmarks)
            margin = None if high is None or low is None else high - low
        name = f"mean score: {better} - {worse} (points)"
        targets.append(Target(name, margin, 0.0, margin is not None and margin >= 0))
    return targets


def targets_markdown(targets: list[Target]) -> str:
    lines = ["| target | measured | threshold | met |", "|---|---:|---:|---|"]
    for t in targets:
        measured = "—" if t.measured is None else f"{t.measured:.3f}" if abs(t.measured) < 1 else f"{t.measured:.1f}"
        lines.append(f"| {t.name} | {measured} | {t.threshold:g} | {'yes' if t.met else '**no**'} |")
    return "\n".join(lines)


def targets_json(targets: list[Target]) -> str:
    return json.dumps([asdict(t) for t in targets], indent=1) + "\n"


# ---- the accuracy regression check (tests/test_scenes_testbed.py) --------------------------------


@dataclass(frozen=True)
class Floor:
    """A setting's score on a benchmark must reach ``minimum`` (the units of ``summary.json``)."""

    setting: str
    benchmark: str
    minimum: float


REGRESSION_FLOORS: tuple[Floor, ...] = (
    Floor("full", "vqav2", 50.0),
    Floor("full", "pope", 68.0),
    Floor("full", "mme", 250.0),
    Floor("prumerge", "vqav2", 39.0),
    Floor("prumerge", "pope", 68.0),
    Floor("prumerge_plus", "vqav2", 44.0),
    Floor("prumerge_plus", "pope", 68.0),
    Floor("aits", "vqav2", 40.0),
    Floor("sequential", "vqav2", 30.0),
    Floor("spatial", "vqav2", 39.0),
    Floor("visionzip", "vqav2", 45.0),
    Floor("lora_prumerge", "vqav2", 45.0),
    Floor("lora_prumerge", "pope", 68.0),
)
"""The floors of the CI regression test: ``SMALL=1 bash scripts/scenes.sh`` (seed 0; 300 VQAv2
questions, 40 per POPE split, 15 MME scenes per category).

Measured on 2 CPU cores (the same models, working / with the merge broken, each image given its
batch neighbour's merged tokens): VQAv2 full 59.7; PruMerge 48.3 / 29.0; PruMerge+ 54.7 / 33.0;
LoRA PruMerge 58.3 / 32.0; AITS 48.7, Spatial 48.0, Sequential 39.7, VisionZip 54.3 (untouched
by the merge). A VQAv2 proportion near 50% on 300 questions has a standard error of 2.9 points.
The merging settings' floors sit halfway between working and broken, at least 3.2 standard
errors from each; the others 3 standard errors below the measured value. POPE F1 (120
questions, about 4 points of error) and MME only guard against a model that no longer looks:
answering "yes" to everything scores 66.7 F1 and 200 on MME (measured: full 79.8 F1 and 317;
with the broken merge PruMerge's POPE falls from 76.6 to 67.0, close to that floor, so VQAv2 is
what catches it).
"""


def regression_failures(output: str | Path, floors: tuple[Floor, ...] = REGRESSION_FLOORS) -> list[str]:
    """Every floor the run folder ``output`` (its ``summary.json``) misses, named; ``[]`` when all hold.

    A setting or benchmark absent from the run is a failure too, so a run that skipped work cannot pass.
    """
    summary_path = Path(output) / "summary.json"
    if not summary_path.is_file():
        raise FileNotFoundError(f"{summary_path} is missing: run scripts/eval/scenes.sh first")
    summary = json.loads(summary_path.read_text())
    failures = []
    for floor in floors:
        score = summary.get(floor.setting, {}).get("benchmarks", {}).get(floor.benchmark, {}).get("score")
        if score is None:
            failures.append(f"{floor.setting} / {floor.benchmark}: no score in {summary_path}")
        elif score < floor.minimum:
            failures.append(f"{floor.setting} / {floor.benchmark}: {score:.1f} < floor {floor.minimum:g}")
    return failures
