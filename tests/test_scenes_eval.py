"""The scenes evaluation (scripts/eval/scenes.sh): several benchmarks in one lmms-eval call, mean
tokens over a folder holding several benchmarks, the kept-tokens/object-count correlation and the
summary JSON; hand-written result folders, no lmms-eval run (tests/test_scenes_testbed.py runs the
script end to end on the trained testbed)."""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import numpy as np
import pytest

from llava_prumerge.evaluation.results import load_run, object_count_correlation, runs_summary
from llava_prumerge.evaluation.tasks import task_names

ROOT = Path(__file__).parents[1]
ENV = {**os.environ, "HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1"}


def cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([os.sys.executable, *args], cwd=ROOT, env=ENV, capture_output=True, text=True, timeout=300)


def write_run(folder: Path, results: dict[str, dict], tokens: dict[str, dict[int, list[int]]]) -> Path:
    """An lmms-eval results file and one visual-token log, as one multi-benchmark call writes them."""
    folder.mkdir(parents=True, exist_ok=True)
    body = {"results": {t: {f"{k},none": v for k, v in m.items()} | {"alias": t} for t, m in results.items()},
            "config": {"model_args": "pretrained=x"}, "n-samples": {}}  # fmt: skip
    (folder / "20261201_120000_results.json").write_text(json.dumps(body))
    lines = [
        json.dumps({"task": task, "doc_id": doc_id, "visual_tokens": images})
        for task, docs in tokens.items()
        for doc_id, images in docs.items()
    ]
    (folder / "visual_tokens.jsonl").write_text("\n".join(lines) + "\n")
    return folder


# ----------------------------------------------------------------------------------------------
# eval/tasks.py with several benchmarks
# ----------------------------------------------------------------------------------------------
def run_tasks_cli(monkeypatch, capsys, *args: str) -> tuple[int, str, str]:
    """``eval/tasks.py ARGS`` in this process: (exit code, stdout, stderr). The YAMLs include lmms-eval's
    installed task files, found without importing lmms-eval (whose import alone takes ~15 s here)."""
    import importlib.util
    import runpy

    import llava_prumerge.evaluation.tasks as tasks_module

    installed = Path(importlib.util.find_spec("lmms_eval").submodule_search_locations[0]) / "tasks"
    monkeypatch.setattr(tasks_module, "lmms_eval_tasks_dir", lambda: installed)
    monkeypatch.setattr("sys.argv", ["eval/tasks.py", *args])
    capsys.readouterr()
    code = 0
    try:
        runpy.run_path(str(ROOT / "eval" / "tasks.py"), run_name="__main__")
    except SystemExit as stop:
        code = stop.code if isinstance(stop.code, int) else 1
        if isinstance(stop.code, str):
            print(stop.code, file=os.sys.stderr)
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def test_tasks_cli_joins_several_benchmarks(tmp_path, monkeypatch, capsys):
    data = tmp_path / "data"
    for repo in ("VQAv2", "ScienceQA", "POPE"):
        (data / repo).mkdir(parents=True)
    out = tmp_path / "tasks"
    code, stdout, stderr = run_tasks_cli(
        monkeypatch, capsys, "--benchmark", "vqav2,sqa,pope", "--out", str(out), "--local-data", str(data)
    )
    assert code == 0, stderr
    expected = task_names("vqav2", True) + task_names("sqa", True) + task_names("pope", True)
    assert stdout.strip() == ",".join(expected)
    assert stdout.strip() == "vqav2_val_local,vqav2_test_local,scienceqa_img_llava15_local,pope_llava15_local"
    written = {p.name for p in out.glob("*.yaml")}
    assert {"vqav2_val_local.yaml", "scienceqa_img_llava15_local.yaml", "pope_llava15_local.yaml"} <= written
    assert "mme_local.yaml" not in written  # no local copy of MME
    # a single benchmark is printed as before; without local data the Hub tasks
    code, stdout, stderr = run_tasks_cli(monkeypatch, capsys, "--benchmark", "pope", "--out", str(tmp_path / "hub"))
    assert (code, stdout.strip()) == (0, "pope_llava15"), stderr
    # every benchmark without a local copy is named
    code, _, stderr = run_tasks_cli(
        monkeypatch, capsys, "--benchmark", "sqa,mme,textvqa", "--out", str(out), "--local-data", str(data)
    )
    assert code != 0
    assert "mme: no local copy of MME" in stderr and "textvqa: no local copy of textvqa" in stderr
    code, _, stderr = run_tasks_cli(monkeypatch, capsys, "--benchmark", "sqa,nope", "--out", str(out))
    assert code != 0 and "invalid choice nope" in stderr
    code, _, stderr = run_tasks_cli(
        monkeypatch, capsys, "--benchmark", "sqa,msvd", "--out", str(out), "--local-data", str(data)
    )
    assert code != 0 and "one at a time" in stderr


# ----------------------------------------------------------------------------------------------
# mean-tokens and the summary over a folder holding several benchmarks
# ----------------------------------------------------------------------------------------------
@pytest.fixture
def two_benchmarks(tmp_path):
    return write_run(
        tmp_path / "prumerge",
        {
            "mme_local": {"mme_perception_score": 1200.0},
            "pope_adv_llava15_local": {"pope_f1_score": 0.8},
            "pope_pop_llava15_local": {"pope_f1_score": 0.7},
            "pope_random_llava15_local": {"pope_f1_score": 0.9},
        },
        {
            "mme_local": {0: [40], 1: [44]},
            "pope_adv_llava15_local": {0: [30], 1: [34]},
            "pope_pop_llava15_local": {0: [20]},
            "pope_random_llava15_local": {0: [36]},
            "vqav2_test_local": {0: [1000]},  # not a score task: counts for no benchmark
        },
    )


def test_mean_tokens_over_a_folder_with_two_benchmarks(two_benchmarks):
    means = {}
    for benchmark in ("mme", "pope", "all", "mme,pope"):
        result = cli("eval/tables.py", "mean-tokens", str(two_benchmarks), "--benchmark", benchmark)
        assert result.returncode == 0, result.stderr
        means[benchmark] = int(result.stdout.strip())
    # (40+44)/2; (30+34+20+36)/4; all six samples pooled: 204/6
    assert means == {"mme": 42, "pope": 30, "all": 34, "mme,pope": 34}
    missing = cli("eval/tables.py", "mean-tokens", str(two_benchmarks), "--benchmark", "sqa")
    assert missing.returncode != 0 and "no visual-token records for sqa" in missing.stderr
    unknown = cli("eval/tables.py", "mean-tokens", str(two_benchmarks), "--benchmark", "mme,nope")
    assert unknown.returncode != 0 and "unknown benchmark(s) nope" in unknown.stderr
    table = cli("eval/tables.py", "table", str(two_benchmarks))
    assert table.returncode == 0, table.stderr
    assert table.stdout.splitlines()[0] == "| run | POPE | MME |"
    assert "| prumerge | 80.0 (30.0) | 1200.0 (42.0) |" in table.stdout


def test_summary_has_every_settings_scores_and_tokens(two_benchmarks, tmp_path):
    full = write_run(tmp_path / "full", {"mme": {"mme_perception_score": 1300.0}}, {"mme": {0: [576], 1: [576]}})
    summary = runs_summary([load_run(full), load_run(two_benchmarks)])
    assert summary["full"] == {
        "folder": str(full),
        "benchmarks": {"mme": {"score": 1300.0, "visual_tokens_mean": 576.0, "samples": 2}},
        "visual_tokens_mean": 576.0,
        "samples": 2,
    }
    assert summary["prumerge"]["benchmarks"]["pope"] == {"score": pytest.approx(80.0), "visual_tokens_mean": 30.0,
                                                         "samples": 4}  # fmt: skip
    assert summary["prumerge"]["visual_tokens_mean"] == 34.0 and summary["prumerge"]["samples"] == 6
    path = tmp_path / "out" / "summary.json"
    result = cli("eval/tables.py", "summary", f"Full={full}", f"PruMerge={two_benchmarks}", "--json", str(path))
    assert result.returncode == 0, result.stderr
    written = json.loads(path.read_text())
    assert list(written) == ["Full", "PruMerge"]
    assert written["Full"]["benchmarks"]["mme"]["score"] > written["PruMerge"]["benchmarks"]["mme"]["score"]


# ----------------------------------------------------------------------------------------------
# kept tokens against the number of objects in the scene
# ----------------------------------------------------------------------------------------------
@pytest.fixture
def scene_run(tmp_path):
    run = write_run(
        tmp_path / "prumerge",
        {"mme_local": {"mme_perception_score": 1.0}},
        {
            "mme_local": {0: [40], 1: [52], 2: [33], 3: [61]},
            "pope_adv_llava15_local": {0: [10, 20], 1: [25]},  # two images: 30 tokens for the sample
            "vqav2_test_local": {0: [999]},  # not a score task and not in the objects file: left out
        },
    )
    objects = {
        "mme": {"0": 2, "1": 3, "2": 1, "3": 4, "4": 9},  # doc 4 was not evaluated: unused
        "pope_adv_llava15": {"0": 1, "1": 2},
        "textvqa_val_llava15": {"0": 7},  # a benchmark this run did not evaluate: unused
    }
    path = tmp_path / "scene_objects.json"
    path.write_text(json.dumps(objects))
    return run, path, objects


def test_object_count_correlation_matches_a_hand_computation(scene_run, tmp_path):
    run, path, _ = scene_run
    result = object_count_correlation(run, path)
    objects = [2, 3, 1, 4, 1, 2]  # mme docs 0-3, then POPE's docs 0-1
    tokens = [40, 52, 33, 61, 30, 25]
    assert result["samples"] == 6
    assert result["pearson_r"] == pytest.approx(np.corrcoef(objects, tokens)[0, 1])
    assert result["tasks"] == {"mme": 4, "pope_adv_llava15": 2}
    assert result["by_object_count"] == [
        {"objects": 1, "samples": 2, "mean_tokens": 31.5, "min_tokens": 30, "max_tokens": 33},
        {"objects": 2, "samples": 2, "mean_tokens": 32.5, "min_tokens": 25, "max_tokens": 40},
        {"objects": 3, "samples": 1, "mean_tokens": 52.0, "min_tokens": 52, "max_tokens": 52},
        {"objects": 4, "samples": 1, "mean_tokens": 61.0, "min_tokens": 61, "max_tokens": 61},
    ]
    out = tmp_path / "objects.json"
    cli_result = cli("eval/tables.py", "objects", str(run), "--objects", str(path), "--json", str(out))
    assert cli_result.returncode == 0, cli_result.stderr
    assert "| 1 | 2 | 31.5 | 30 | 33 |" in cli_result.stdout
    assert f"Pearson r (kept tokens, objects): {np.corrcoef(objects, tokens)[0, 1]:.3f}" in cli_result.stdout
    assert json.loads(out.read_text())["pearson_r"] == pytest.approx(result["pearson_r"])


def test_object_counts_missing_for_a_task_or_doc_are_named(scene_run, tmp_path):
    run, path, objects = scene_run
    without_pope = tmp_path / "without_pope.json"
    without_pope.write_text(json.dumps({k: v for k, v in objects.items() if k != "pope_adv_llava15"}))
    with pytest.raises(ValueError, match=r"no object counts for task\(s\) pope_adv_llava15"):
        object_count_correlation(run, without_pope)
    without_doc = tmp_path / "without_doc.json"
    without_doc.write_text(json.dumps({**objects, "mme": {"0": 2, "1": 3, "2": 1}}))
    with pytest.raises(ValueError, match=r"task mme has no object count for doc_id\(s\) 3"):
        object_count_correlation(run, without_doc)
    with pytest.raises(FileNotFoundError, match="no_such.json does not exist"):
        object_count_correlation(run, tmp_path / "no_such.json")
    result = cli("eval/tables.py", "objects", str(run), "--objects", str(without_doc))
    assert result.returncode != 0
    assert (
        "eval/tables.py objects:" in result.stderr and "task mme has no object count for doc_id(s) 3" in result.stderr
    )


# ----------------------------------------------------------------------------------------------
# the regression floors (tests/test_scenes_testbed.py runs them on the trained testbed)
# ----------------------------------------------------------------------------------------------
def test_regression_failures_name_every_missed_or_missing_floor(tmp_path):
    from llava_prumerge.evaluation.targets import Floor, regression_failures

    summary = {"full": {"benchmarks": {"vqav2": {"score": 61.0}, "pope": {"score": 79.5}}},
               "prumerge": {"benchmarks": {"vqav2": {"score": 38.9}, "pope": {"score": None}}}}  # fmt: skip
    (tmp_path / "summary.json").write_text(json.dumps(summary))
    floors = (Floor("full", "vqav2", 61.0), Floor("full", "pope", 70.0), Floor("prumerge", "vqav2", 39.0),
              Floor("prumerge", "pope", 68.0), Floor("lora_prumerge", "vqav2", 45.0))  # fmt: skip
    assert regression_failures(tmp_path, floors) == [
        "prumerge / vqav2: 38.9 < floor 39",
        f"prumerge / pope: no score in {tmp_path / 'summary.json'}",
        f"lora_prumerge / vqav2: no score in {tmp_path / 'summary.json'}",
    ]
    assert regression_failures(tmp_path, floors[:2]) == []  # a score equal to its floor holds
    with pytest.raises(FileNotFoundError, match="summary.json is missing"):
        regression_failures(tmp_path / "nowhere", floors)
    result = cli("eval/tables.py", "regression", str(tmp_path), "--strict")  # the shipped floors
    assert result.returncode == 1 and "missed: full / vqav2: 61.0 < floor" not in result.stdout
    assert "missed: prumerge / vqav2: 38.9 < floor 39" in result.stdout
    assert "missed: lora_prumerge / vqav2: no score" in result.stdout
