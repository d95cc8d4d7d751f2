"""The trained tiny testbed as an accuracy regression test (issue 16).

``SMALL=1 bash scripts/scenes.sh`` trains the testbed as the README's default does (seed 0, our
own training entry point) and evaluates every setting through lmms-eval on smaller test sets of
four benchmarks, one peer. Shorter training was tried and not taken: with two epochs of stage 1
(and 400 tower steps) training-free PruMerge collapsed (VQAv2 about 12 against 48 with full
tokens), so only the LoRA and PruMerge+ rows could show a broken merge, by about 2.5 standard
errors. Its scores must reach the floors of
``llava_prumerge.evaluation.targets.REGRESSION_FLOORS``. The same evaluation of the same models with
a deliberately broken merge (each image receives the merged tokens of its batch neighbour) must
miss them, on the merging settings only. This one end-to-end test also covers what
``scripts/eval/scenes.sh`` promises: one lmms-eval call per setting, equal budgets, the tables,
the kept-token/object correlation and the summary.
"""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import pytest

from llava_prumerge.config import spatial_grid_for
from llava_prumerge.evaluation.results import load_run
from llava_prumerge.evaluation.targets import REGRESSION_FLOORS, regression_failures

ROOT = Path(__file__).parents[1]
BENCHMARKS = "vqav2 pope mme sqa"
SETTINGS = ["full", "prumerge", "prumerge_plus", "aits", "sequential", "spatial", "visionzip", "lora_prumerge"]
MERGING = {"prumerge", "prumerge_plus", "lora_prumerge"}
"""Settings whose tokens go through the token supplement (AITS keeps its tokens unmerged)."""
BROKEN_MERGE = '''
"""Loaded by Python at start-up (PYTHONPATH): breaks the token supplement of llava_prumerge."""
import llava_prumerge.reduction as _reduction

_merge = _reduction._merge


def _rolled(*args, **kwargs):
    return _merge(*args, **kwargs).roll(1, dims=0)  # image b gets image b-1's merged tokens


_reduction._merge = _rolled
'''


def _env(tmp: Path, **extra: str) -> dict[str, str]:
    return {**os.environ, "PYTHON": os.sys.executable, "HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1",
            "TRANSFORMERS_OFFLINE": "1", "HF_HOME": str(tmp / "hf"), "HF_DATASETS_CACHE": str(tmp / "hfd"),
            "BENCHMARKS": BENCHMARKS, **extra}  # fmt: skip


def _run(command: list[str], env: dict[str, str], timeout: int) -> subprocess.CompletedProcess:
    result = subprocess.run(command, cwd=ROOT, env=env, capture_output=True, text=True, timeout=timeout)
    assert result.returncode == 0, result.stdout[-4000:] + result.stderr[-4000:]
    return result


@pytest.fixture(scope="module")
def testbed(tmp_path_factory) -> dict[str, Path]:
    """The testbed trained and evaluated once (about 11 minutes on 2 cores)."""
    tmp = tmp_path_factory.mktemp("scenes-testbed")
    paths = {"scenes": tmp / "scenes", "output": tmp / "eval", "tmp": tmp}
    env = _env(tmp, SMALL="1", SCENES=str(paths["scenes"]), OUTPUT=str(paths["output"]), PEERS="visionzip")
    paths["log"] = _run(["bash", "scripts/scenes.sh"], env, timeout=3600).stdout
    return paths


@pytest.mark.slow
def test_the_trained_testbed_meets_its_floors_and_a_broken_merge_misses_them(testbed):
    output, scenes = testbed["output"], testbed["scenes"]
    assert regression_failures(output) == [], testbed["log"][-3000:]
    assert {f.setting for f in REGRESSION_FLOORS} >= {"full", "lora_prumerge"}

    broken = testbed["tmp"] / "broken"
    (broken / "site").mkdir(parents=True)
    (broken / "site" / "sitecustomize.py").write_text(BROKEN_MERGE)
    env = _env(testbed["tmp"], PYTHONPATH=str(broken / "site"), OUTPUT=str(broken / "eval"), PEERS="visionzip",
               MODEL=str(scenes / "llava-scenes"), LORA_ADAPTER=str(scenes / "lora-prumerge"),
               LOCAL_DATA=str(scenes / "benchmarks"))  # fmt: skip
    _run(["bash", "scripts/eval/scenes.sh"], env, timeout=1800)
    failures = regression_failures(broken / "eval")
    assert failures, "the broken merge passed the regression floors"
    assert {failure.split(" / ")[0] for failure in failures} <= MERGING, failures
    # the settings the broken merge does not touch score exactly as before: same models, same answers
    working = json.loads((output / "summary.json").read_text())
    rerun = json.loads((broken / "eval" / "summary.json").read_text())
    for setting in sorted(set(SETTINGS) - MERGING):
        assert rerun[setting]["benchmarks"] == working[setting]["benchmarks"], setting


@pytest.mark.slow
def test_the_testbed_run_writes_every_setting_table_and_target(testbed):
    output, scenes = testbed["output"], testbed["scenes"]
    for setting in SETTINGS:  # one lmms-eval call (one results file) per setting, over all benchmarks
        files = [f for f in (output / setting).rglob("*_results.json") if f.name[:8].isdigit()]
        assert len(files) == 1, setting
    summary = json.loads((output / "summary.json").read_text())
    assert list(summary) == SETTINGS
    assert all(set(summary[s]["benchmarks"]) == set(BENCHMARKS.split()) for s in SETTINGS)
    budget = round(summary["prumerge"]["visual_tokens_mean"])
    for setting in ("sequential", "visionzip"):
        assert set(load_run(output / setting).visual_tokens["mme"].values()) == {budget}
    rows, cols = spatial_grid_for(budget)
    assert set(load_run(output / "spatial").visual_tokens["mme"].values()) == {rows * cols}
    assert summary["full"]["visual_tokens_mean"] == 64 > summary["prumerge"]["visual_tokens_mean"]
    for name in ("main", "table4", "table5", "table6", "peers"):
        assert (output / f"{name}.md").is_file() and (output / f"{name}.csv").is_file(), name
    correlation = json.loads((output / "objects_prumerge.json").read_text())
    assert set(correlation["tasks"]) >= {"mme", "vqav2_val"}
    assert correlation["pearson_r"] > 0  # kept tokens rise with the items in the scene
    targets = json.loads((output / "targets.json").read_text())
    assert any(t["name"].startswith("mean score: lora_prumerge") for t in targets)
    assert (output / "kept_patches.png").is_file()
    # trained once: a second run reuses every stage
    env = _env(testbed["tmp"], SMALL="1", SCENES=str(scenes), OUTPUT=str(output), PEERS="visionzip", TRAIN_ONLY="1")
    log = _run(["bash", "scripts/scenes.sh"], env, timeout=600).stdout
    assert log.count("is current: not retrained") == 3, log
