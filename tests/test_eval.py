"""Evaluation (issue: lmms-eval plugin, benchmark scripts, tables): the real CLI on tiny local data."""

from __future__ import annotations

import csv
import io
import json
import os
import subprocess
import time
from pathlib import Path

import pytest
import torch
from PIL import Image

from llava_prumerge.config import TokenReductionConfig, spatial_grid_for
from llava_prumerge.evaluation.results import build_table, check_run, load_run, log_to_wandb, to_csv, to_markdown
from llava_prumerge.evaluation.tasks import BENCHMARKS, GROUPS, local_dataset_cache_dir, task_names, write_task_yamls
from llava_prumerge.images import pad_to_square
from llava_prumerge.tiny.benchmarks import write_tiny_benchmarks
from llava_prumerge.tiny.setting import write_tiny_assets

ROOT = Path(__file__).parents[1]
ENV = {
    **os.environ,
    "WANDB_MODE": "offline",
    "HF_HUB_OFFLINE": "1",
    "HF_DATASETS_OFFLINE": "1",
    "TRANSFORMERS_OFFLINE": "1",
    "PYTHON": os.sys.executable,
}
TIMEOUT = 1200


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    root = tmp_path_factory.mktemp("eval")
    assets = write_tiny_assets(root / "assets")
    data = write_tiny_benchmarks(root / "benchmarks")
    env = {**ENV, "HF_HOME": str(root / "hf-home"), "HF_DATASETS_CACHE": str(root / "hf-datasets")}
    return {"root": root, "model": assets["llava"], "data": data, "env": env}


def run_script(tiny, script: str, output: Path, **settings: str | None) -> subprocess.CompletedProcess:
    env = {
        **tiny["env"],
        "MODEL": str(tiny["model"]),
        "LOCAL_DATA": str(tiny["data"]),
        "OUTPUT": str(output),
        "BATCH_SIZE": "4",
        "DEVICE": "cpu",
        "MAX_NEW_TOKENS": "6",
        **settings,
    }
    env = {key: value for key, value in env.items() if value is not None}  # None: leave the script's default
    return subprocess.run(
        ["bash", f"scripts/eval/{script}"], cwd=ROOT, env=env, capture_output=True, text=True, timeout=TIMEOUT
    )


def samples(folder: Path) -> dict[tuple[str, int], dict]:
    """(task, doc_id) → the sample record of lmms-eval's ``--log_samples`` files below ``folder``."""
    found = {}
    for path in folder.rglob("*_samples_*.jsonl"):
        task = path.stem.split("_samples_", 1)[1]
        for line in path.read_text().splitlines():
            record = json.loads(line)
            found[(task.removesuffix("_local"), record["doc_id"])] = record
    return found


@pytest.fixture(scope="module")
def all_benchmarks(tiny):
    """``scripts/eval/all.sh`` at batch size 4: every benchmark script through lmms-eval's CLI."""
    output = tiny["root"] / "runs" / "prumerge"
    result = run_script(tiny, "all.sh", output)
    assert result.returncode == 0, result.stdout[-4000:] + result.stderr[-4000:]
    return output, result.stdout


# ----------------------------------------------------------------------------------------------
# The plugin's arguments
# ----------------------------------------------------------------------------------------------
def test_unknown_model_arguments_are_rejected(tiny):
    from llava_prumerge.evaluation.lmms_eval_model import LlavaPruMerge

    with pytest.raises(ValueError, match=r"unknown model argument\(s\) \['temprature'\]"):
        LlavaPruMerge(pretrained=str(tiny["model"]), temprature=0)
    with pytest.raises(ValueError, match="reduction='prumerg'"):
        LlavaPruMerge(pretrained=str(tiny["model"]), reduction="prumerg", device="cpu")


def test_batch_size_in_model_args_wins_over_the_flag(tiny):
    from llava_prumerge.evaluation.lmms_eval_model import LlavaPruMerge

    model = LlavaPruMerge.create_from_arg_string(
        f"pretrained={tiny['model']},batch_size=3,device=cpu", {"batch_size": 1, "device": None}
    )
    assert model.batch_size == 3 and model.device == torch.device("cpu")


def test_adapter_reduction_is_used_unless_overridden(tiny, tmp_path):
    from peft import LoraConfig, get_peft_model
    from transformers import AutoProcessor

    from llava_prumerge import LlavaPruMergeForConditionalGeneration, TokenReductionConfig
    from llava_prumerge.evaluation.lmms_eval_model import LlavaPruMerge
    from llava_prumerge.training.checkpoints import BaseModelSpec, write_reload_info

    base = LlavaPruMergeForConditionalGeneration.from_pretrained(tiny["model"])
    lora = get_peft_model(base, LoraConfig(r=4, target_modules=["q_proj"], init_lora_weights=False))
    lora.save_pretrained(tmp_path / "adapter")
    AutoProcessor.from_pretrained(tiny["model"]).save_pretrained(tmp_path / "adapter")
    saved = TokenReductionConfig(method="prumerge_plus")
    write_reload_info(tmp_path / "adapter", BaseModelSpec(model_name_or_path=str(tiny["model"])), saved)

    evaluated = LlavaPruMerge(adapter=str(tmp_path / "adapter"), device="cpu")
    assert evaluated.token_reduction == saved
    assert not any("lora_" in name for name, _ in evaluated.model.named_parameters())  # merged for inference
    overridden = LlavaPruMerge(adapter=str(tmp_path / "adapter"), reduction="aits", device="cpu")
    assert overridden.token_reduction.method == "aits"
    budgeted = LlavaPruMerge(adapter=str(tmp_path / "adapter"), budget=20, device="cpu")
    assert budgeted.token_reduction == TokenReductionConfig(method="prumerge_plus", budget=20)


def test_reduction_argument_forms():
    from llava_prumerge.evaluation.lmms_eval_model import resolve_reduction

    assert resolve_reduction(None, None) is None  # an adapter's own reduction, else PruMerge
    assert resolve_reduction("prumerge_plus", None).method == "prumerge_plus"
    assert resolve_reduction("prumerge_budget64", None).budget == 64  # configs/reduction/<name>.yaml
    assert resolve_reduction(str(ROOT / "llava_prumerge/configs/reduction/spatial_5x8.yaml"), None).grid == (5, 8)
    assert resolve_reduction("sequential", 33).budget == 33
    assert resolve_reduction("spatial", 40).grid == (5, 8)
    with pytest.raises(ValueError, match="needs a budget"):
        resolve_reduction("sequential", None)


@pytest.mark.parametrize(("budget", "grid"), [(40, (5, 8)), (16, (4, 4)), (35, (5, 7)), (37, (6, 6)), (1, (1, 1))])
def test_spatial_grid_for_a_budget(budget, grid):
    assert spatial_grid_for(budget) == grid  # Table 4 uses 5x8 at 40 tokens and 4x4 at 16


@pytest.mark.parametrize(
    "answer, parsed",
    [
        ("Yes", "yes"),
        ("yes", "yes"),
        ("Yes, there is a dog in the image.", "yes"),  # lmms-eval's exact match counts this as neither
        ("No", "no"),
        ("No, there is no dog.", "no"),
        ("There is not a dog.", "no"),
        ("I see a dog. There is no cat.", "yes"),  # only the first sentence is read
        ("Nope", "yes"),  # LLaVA's rule: anything without No/not/no is a yes
    ],
)
def test_pope_answers_are_parsed_as_llava_eval_pope(answer, parsed):
    from llava_prumerge.evaluation.rules import llava_pope_answer, pope_process_results

    assert llava_pope_answer(answer) == parsed
    doc = {"question_id": 7, "answer": "no"}
    assert pope_process_results(doc, [answer])["pope_f1_score"]["score"] == float(parsed == "no")


@pytest.mark.parametrize(
    "prediction, letter",
    [("B", "B"), ("B. a plant", "B"), ("The answer is C.", "C"), ("b", None), ("E", None), ("B.", None), ("", None)],
)
def test_sqa_letters_are_read_as_llava_eval_science_qa(prediction, letter):
    from llava_prumerge.evaluation.rules import llava_sqa_letter, sqa_process_results

    assert llava_sqa_letter(prediction, 4) == letter
    doc = {"choices": ["w", "x", "y", "z"], "answer": 1}  # B
    assert sqa_process_results(doc, [prediction])["exact_match"] == float(letter == "B")


def test_textvqa_question_is_not_recased():
    from llava_prumerge.evaluation.rules import textvqa_doc_to_text

    doc = {"question": "what does the NASA sign say?", "ocr_tokens": ["NASA", "exit"]}
    kwargs = {"pre_prompt": "", "post_prompt": "\nAnswer the question using a single word or phrase.", "ocr": True}
    assert textvqa_doc_to_text(doc, kwargs) == (
        "what does the NASA sign say?\nReference OCR token: NASA, exit\nAnswer the question using a single word or phrase."
    )


def test_task_yamls_only_change_the_data_source(tiny, tmp_path):
    import yaml

    write_task_yamls(tmp_path, tiny["data"])
    local = yaml.safe_load((tmp_path / "mme_local.yaml").read_text())
    assert set(local) == {"include", "task", "dataset_path", "dataset_kwargs"}
    assert local["include"].endswith("lmms_eval/tasks/mme/mme.yaml") and Path(local["include"]).is_file()
    assert local["dataset_path"] == str((tiny["data"] / "MME").resolve())
    # the copy's own datasets cache (same-named copies would share one: tests/test_scenes.py)
    assert local["dataset_kwargs"] == {"cache_dir": str(local_dataset_cache_dir(tiny["data"] / "MME"))}
    loader = type("TaskLoader", (yaml.SafeLoader,), {})
    loader.add_constructor("!function", lambda load, node: ("function", load.construct_scalar(node)))
    textvqa = yaml.load((tmp_path / "textvqa_val_llava15.yaml").read_text(), Loader=loader)
    assert textvqa["lmms_eval_specific_kwargs"]["default"]["ocr"] is True  # LLaVA-1.5's OCR-token prompt
    assert textvqa["doc_to_text"] == ("function", "llava_prumerge.evaluation.rules.textvqa_doc_to_text")
    assert "dataset_path" not in textvqa  # the Hub task
    for task in GROUPS["pope_llava15"]:
        pope = yaml.load((tmp_path / f"{task}.yaml").read_text(), Loader=loader)
        assert pope["process_results"] == ("function", "llava_prumerge.evaluation.rules.pope_process_results")
    sqa = yaml.load((tmp_path / "scienceqa_img_llava15_local.yaml").read_text(), Loader=loader)
    assert sqa["process_results"] == ("function", "llava_prumerge.evaluation.rules.sqa_process_results")
    group = yaml.safe_load((tmp_path / "pope_llava15_local.yaml").read_text())
    assert group["task"] == [t + "_local" for t in GROUPS["pope_llava15"]]
    assert task_names("pope", local=True) == ["pope_llava15_local"]


# ----------------------------------------------------------------------------------------------
# The real CLI, every benchmark script
# ----------------------------------------------------------------------------------------------
def test_every_benchmark_script_writes_its_metrics(tiny, all_benchmarks):
    output, stdout = all_benchmarks
    run = load_run(output)
    for name, benchmark in BENCHMARKS.items():
        assert (output / name / "summary.json").is_file(), name
        for task in benchmark.score_tasks:
            assert benchmark.metric in run.metrics[task], (name, task, run.metrics[task])
    assert 0 <= run.metrics["pope_llava15"]["pope_f1_score"] <= 1
    assert "mme_cognition_score" in run.metrics["mme"]
    # the server submissions: VQAv2 test-dev (EvalAI) and MMBench test
    assert list((output / "vqav2" / "submissions").glob("vqav2-test-submission-*.json"))
    assert (output / "mmbench" / "submissions" / "mmbench_en_test_results.xlsx").is_file()
    submission = json.loads(next((output / "vqav2" / "submissions").glob("vqav2-test-submission-*.json")).read_text())
    assert sorted(entry["question_id"] for entry in submission) == [2000, 2001, 2002, 2003]
    table = (output / "table.md").read_text()
    assert table.splitlines()[0] == "| run | VQAv2 | SQA-IMG | TextVQA | POPE | MME | MMBench | GQA |"
    assert "| prumerge |" in table
    # the histogram of kept tokens per image over the run's logs (every benchmark, one image a sample)
    images = sum(len(docs) for docs in run.visual_tokens.values())
    assert f"kept_tokens.png: {images} images" in stdout and images > 40
    with Image.open(output / "kept_tokens.png") as figure:
        assert figure.size == (600, 320)
    # every benchmark folder records the full resolved reduction and the model behind its results
    for name in BENCHMARKS:
        settings = json.loads((output / name / "run_settings.json").read_text())
        assert settings["token_reduction"] == TokenReductionConfig().to_dict()
        assert settings["pretrained"] == str(tiny["model"]) and settings["adapter"] is None
    assert "- prumerge: method=prumerge, knn=32, iqr_scale=1.5, scope=image, merge=sum" in table
    # the prompts are lmms-eval's own, with LLaVA-1.5's OCR tokens for TextVQA
    records = samples(output)
    assert "\nReference OCR token: Text, Image, Processing\n" in records[("textvqa_val_llava15", 0)]["input"]
    assert records[("scienceqa_img_llava15", 0)]["input"].endswith(
        "Answer with the option's letter from the given choices directly."
    )


def test_batch_size_one_gives_the_same_answers_and_scores(tiny, all_benchmarks):
    output, _ = all_benchmarks
    single = tiny["root"] / "runs" / "batch1"
    tasks = ",".join(t for name in BENCHMARKS for t in task_names(name, local=True))
    include = write_task_yamls(single / "tasks", tiny["data"])
    command = [
        os.sys.executable, "-m", "lmms_eval", "--model", "llava_prumerge",
        "--model_args", f"pretrained={tiny['model']},device=cpu,max_new_tokens=6,visual_token_log={single}/visual_tokens.jsonl",
        "--tasks", tasks, "--batch_size", "1", "--include_path", str(include), "--output_path", str(single), "--log_samples",
    ]  # fmt: skip
    result = subprocess.run(command, cwd=ROOT, env=tiny["env"], capture_output=True, text=True, timeout=TIMEOUT)
    check_run(single, tasks.split(","), since=0)  # raises if lmms-eval failed
    batched, one_by_one = samples(output), samples(single)
    assert batched.keys() == one_by_one.keys() and len(batched) > 40, result.stdout[-2000:]
    for key, record in batched.items():
        assert record["filtered_resps"] == one_by_one[key]["filtered_resps"], key
    assert load_run(output).metrics == load_run(single).metrics
    assert load_run(output).visual_tokens == load_run(single).visual_tokens


def test_recorded_visual_tokens_are_what_the_model_keeps(tiny, all_benchmarks):
    from datasets import load_dataset
    from transformers import AutoProcessor

    from llava_prumerge import LlavaPruMergeForConditionalGeneration

    output, stdout = all_benchmarks
    run = load_run(output)
    model = LlavaPruMergeForConditionalGeneration.from_pretrained(tiny["model"]).eval()
    processor = AutoProcessor.from_pretrained(tiny["model"])
    expected_all = []
    for split, task in (
        ("adversarial", "pope_adv_llava15"),
        ("popular", "pope_pop_llava15"),
        ("random", "pope_random_llava15"),
    ):
        docs = load_dataset(str(tiny["data"] / "POPE"), "Full", split=split)
        images = pad_to_square([doc["image"] for doc in docs], processor)
        with torch.no_grad():
            lengths = model.reduce_image_tokens(
                processor.image_processor(images, return_tensors="pt").pixel_values
            ).lengths
        assert run.visual_tokens[task] == {i: int(n) for i, n in enumerate(lengths)}
        expected_all += lengths.tolist()
    assert len(set(expected_all)) > 1  # adaptive: the count follows the image
    summary = json.loads((output / "pope" / "summary.json").read_text())
    adv = [n for n in run.visual_tokens["pope_adv_llava15"].values()]
    assert summary["pope_adv_llava15_local"]["visual_tokens"] == {
        "mean": sum(adv) / len(adv), "min": min(adv), "max": max(adv), "samples": len(adv)
    }  # fmt: skip
    assert f"visual tokens mean {sum(adv) / len(adv):.1f}" in stdout


def test_two_processes_give_the_answers_and_token_logs_of_one(tiny, all_benchmarks):
    """``NUM_GPUS=2`` (accelerate, two CPU processes, the scripts' default batch size 1) against the
    one-process batch-4 run: the same answer per sample and the same merged visual-token logs."""
    output, _ = all_benchmarks
    parallel = tiny["root"] / "runs" / "two-processes"
    result = run_script(tiny, "pope.sh", parallel, NUM_GPUS="2", BATCH_SIZE=None)
    assert result.returncode == 0, result.stdout[-4000:] + result.stderr[-4000:]
    settings = json.loads((parallel / "pope" / "run_settings.json").read_text())
    assert (settings["batch_size"], settings["processes"]) == (1, 2)  # the paper's batch size by default
    assert sorted(p.name for p in (parallel / "pope").glob("visual_tokens*.jsonl")) == [
        "visual_tokens.rank0.jsonl",
        "visual_tokens.rank1.jsonl",
    ]
    one, two = samples(output / "pope"), samples(parallel / "pope")
    assert set(one) == set(two) and len(one) == 12
    for key in one:
        assert two[key]["filtered_resps"] == one[key]["filtered_resps"], key
    pope_tasks = [t for t in load_run(output).visual_tokens if t.startswith("pope_")]
    assert {t: load_run(parallel).visual_tokens[t] for t in pope_tasks} == {
        t: load_run(output).visual_tokens[t] for t in pope_tasks
    }


def test_a_failing_evaluation_fails_the_script(tiny, tmp_path):
    result = run_script(tiny, "mme.sh", tmp_path / "run", MODEL=str(tmp_path / "no-such-model"))
    assert result.returncode != 0
    assert "lmms-eval wrote no results file" in result.stderr


def test_ablation_runs_the_baselines_at_prumerges_budget(tiny):
    output = tiny["root"] / "runs" / "ablation"
    result = run_script(tiny, "ablation.sh", output, BENCHMARKS="mme")
    assert result.returncode == 0, result.stdout[-4000:] + result.stderr[-4000:]
    prumerge = load_run(output / "prumerge").visual_tokens["mme"].values()
    budget = round(sum(prumerge) / len(prumerge))
    assert set(load_run(output / "sequential").visual_tokens["mme"].values()) == {budget}
    rows, cols = spatial_grid_for(budget)
    assert set(load_run(output / "spatial").visual_tokens["mme"].values()) == {rows * cols}
    aits = load_run(output / "aits").visual_tokens["mme"]
    merged = load_run(output / "prumerge").visual_tokens["mme"]
    assert {doc: n + 1 for doc, n in aits.items()} == merged  # same selection; PruMerge adds the summary token
    table4 = (output / "table4.md").read_text()
    assert "| PruMerge |" in table4 and "| Sequential |" in table4 and "| Spatial |" in table4
    assert "| AITS+TS |" in (output / "table5.md").read_text()


# ----------------------------------------------------------------------------------------------
# Tables from result folders (hand-computed expectations)
# ----------------------------------------------------------------------------------------------
def write_fixture_run(
    folder: Path, results: dict, tokens: dict[str, list[int]], stamp: str = "20261101_120000"
) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    body = {"results": {t: {f"{k},none": v for k, v in m.items()} | {"alias": t} for t, m in results.items()},
            "config": {"model_args": "pretrained=x"}, "n-samples": {}}  # fmt: skip
    (folder / f"{stamp}_results.json").write_text(json.dumps(body))
    with (folder / "visual_tokens.jsonl").open("w") as handle:
        for task, counts in tokens.items():
            for doc_id, count in enumerate(counts):
                handle.write(json.dumps({"task": task, "doc_id": doc_id, "visual_tokens": [count]}) + "\n")


def test_table_matches_a_hand_computed_table(tmp_path):
    write_fixture_run(
        tmp_path / "base",
        {
            "pope_adv_llava15_local": {"pope_f1_score": 0.80, "pope_accuracy": 0.5},
            "pope_pop_llava15_local": {"pope_f1_score": 0.90},
            "pope_random_llava15_local": {"pope_f1_score": 0.85},
            "mme_local": {"mme_perception_score": 1500.5, "mme_cognition_score": 300.0},
            "scienceqa_img_llava15_local": {"exact_match": 0.5},
        },
        {
            "pope_adv_llava15_local": [576, 576],
            "pope_pop_llava15_local": [576],
            "pope_random_llava15_local": [576],
            "mme_local": [576] * 4,
        },
    )
    write_fixture_run(
        tmp_path / "pm",
        {
            "pope_adv_llava15": {"pope_f1_score": 0.70},
            "pope_pop_llava15": {"pope_f1_score": 0.80},
            "pope_random_llava15": {"pope_f1_score": 0.75},
            "mme": {"mme_perception_score": 1350.25},
        },
        {"pope_adv_llava15": [30, 40], "pope_pop_llava15": [35], "pope_random_llava15": [35], "mme": [40, 41, 39, 44]},
    )
    # an older results file in the same run is superseded by the newer one above
    older = tmp_path / "pm" / "old"
    write_fixture_run(older, {"mme": {"mme_perception_score": 1.0}}, {"mme": [1]}, stamp="20261001_120000")
    os.utime(older / "20261001_120000_results.json", (time.time() - 3600, time.time() - 3600))
    os.utime(older / "visual_tokens.jsonl", (time.time() - 3600, time.time() - 3600))

    runs = [load_run(tmp_path / "base", "LLaVA-1.5"), load_run(tmp_path / "pm", "PruMerge")]
    titles, rows = build_table(runs, baseline="LLaVA-1.5")
    assert titles == ["SQA-IMG", "POPE", "MME"]
    markdown = to_markdown(titles, rows, baseline="LLaVA-1.5")
    lines = markdown.splitlines()
    assert lines[0] == "| run | SQA-IMG | POPE | MME |"
    assert lines[2] == "| LLaVA-1.5 | 50.0 (–) | 85.0 (576.0) | 1500.5 (576.0) |"
    assert lines[3] == "| PruMerge | – | 75.0 (35.0) | 1350.2 (41.0) |"  # (70+80+75)/3; (40+41+39+44)/4
    assert "| PruMerge | – | -10.0 (-541.0) | -150.2 (-535.0) |" in lines
    table = list(csv.DictReader(io.StringIO(to_csv(rows))))
    pope = next(r for r in table if r["run"] == "PruMerge" and r["benchmark"] == "POPE")
    assert float(pope["score"]) == pytest.approx(75.0)
    assert (float(pope["visual_tokens_min"]), float(pope["visual_tokens_max"])) == (30, 40)
    assert float(pope["delta_score"]) == pytest.approx(-10.0)
    with pytest.raises(ValueError, match="baseline 'nope'"):
        build_table(runs, baseline="nope")


def test_table_names_the_settings_behind_each_run(tmp_path):
    """Each run's resolved reduction and model (``run_settings.json``) reach the table; a run whose
    benchmarks ran with different reductions is flagged."""
    from llava_prumerge.evaluation.results import RUN_SETTINGS_FILE

    pm = {"token_reduction": {"method": "prumerge", "knn": 32, "budget": None}, "pretrained": "llava-hf/x"}
    write_fixture_run(tmp_path / "pm" / "mme", {"mme": {"mme_perception_score": 1.0}}, {"mme": [40]})
    (tmp_path / "pm" / "mme" / RUN_SETTINGS_FILE).write_text(json.dumps(pm))
    lora = {"token_reduction": {"method": "prumerge_plus", "budget": 64}, "adapter": "/runs/lora", "pretrained": None,
            "base_model": {"model_name_or_path": "llava-hf/x"}}  # fmt: skip
    write_fixture_run(tmp_path / "mixed" / "mme", {"mme": {"mme_perception_score": 1.0}}, {"mme": [40]})
    (tmp_path / "mixed" / "mme" / RUN_SETTINGS_FILE).write_text(json.dumps(pm))
    write_fixture_run(tmp_path / "mixed" / "sqa", {"scienceqa_img_llava15": {"exact_match": 0.5}}, {})
    (tmp_path / "mixed" / "sqa" / "visual_tokens.jsonl").write_text(
        json.dumps({"task": "scienceqa_img_llava15", "doc_id": 0, "visual_tokens": [64]}) + "\n"
    )
    (tmp_path / "mixed" / "sqa" / RUN_SETTINGS_FILE).write_text(json.dumps(lora))
    runs = [load_run(tmp_path / "pm"), load_run(tmp_path / "mixed")]
    assert runs[0].settings == {"mme": pm}
    titles, rows = build_table(runs)
    lines = to_markdown(titles, rows).splitlines()
    assert "- pm: method=prumerge, knn=32; model llava-hf/x" in lines
    assert (
        "- mixed: method=prumerge_plus, budget=64; model /runs/lora (base llava-hf/x); method=prumerge, knn=32; "
        "model llava-hf/x **(benchmarks ran with different settings)**"  # in Table 1's order: SQA, then MME
    ) in lines
    table = list(csv.DictReader(io.StringIO(to_csv(rows))))
    assert json.loads(next(r for r in table if (r["run"], r["benchmark"]) == ("pm", "MME"))["settings"]) == [pm]


def test_table_is_logged_to_wandb_offline(tmp_path):
    write_fixture_run(tmp_path / "pm", {"mme": {"mme_perception_score": 1350.25}}, {"mme": [40, 44]})
    _, rows = build_table([load_run(tmp_path / "pm")])
    log_to_wandb(rows, project="llava-prumerge-test", name="table", directory=str(tmp_path))
    tables = list(tmp_path.glob("wandb/offline-run-*/files/media/table/paper_table_*.table.json"))
    assert len(tables) == 1
    logged = json.loads(tables[0].read_text())
    assert logged["data"][0][:4] == ["pm", "MME", "mme_perception_score", 1350.25]


def test_per_process_token_logs_are_merged(tmp_path):
    write_fixture_run(tmp_path / "run" / "mme", {"mme": {"mme_perception_score": 1.0}}, {})
    logs = tmp_path / "run" / "mme"
    (logs / "visual_tokens.rank0.jsonl").write_text(
        "".join(json.dumps({"task": "mme", "doc_id": d, "visual_tokens": [10]}) + "\n" for d in (0, 2))
    )
    (logs / "visual_tokens.rank1.jsonl").write_text(
        "".join(json.dumps({"task": "mme", "doc_id": d, "visual_tokens": [50]}) + "\n" for d in (1, 3))
    )
    stats = load_run(tmp_path / "run").token_stats(["mme"])
    assert stats == {"mean": 30.0, "min": 10, "max": 50, "samples": 4}


def test_malformed_visual_token_log_is_named(tmp_path):
    write_fixture_run(tmp_path / "run", {"mme": {"mme_perception_score": 1.0}}, {"mme": [40]})
    with (tmp_path / "run" / "visual_tokens.jsonl").open("a") as handle:
        handle.write('{"task": "mme"}\n')
    with pytest.raises(ValueError, match=r"visual_tokens.jsonl:2: malformed"):
        load_run(tmp_path / "run")


def test_batch_consistency_script_compares_batch_one_with_batched(tiny):
    """On the CPU in float32 the batched answers equal batch size 1 (as the model's own tests show)."""
    command = [os.sys.executable, "scripts/eval/batch_consistency.py", "--model", str(tiny["model"])]
    command += ["--prompts", "6", "--batch-size", "3", "--max-new-tokens", "4", "--device", "cpu"]
    result = subprocess.run(command, cwd=ROOT, env=tiny["env"], capture_output=True, text=True, timeout=TIMEOUT)
    assert result.returncode == 0, result.stderr[-3000:]
    assert "batch 1 vs batch 3, 6 prompts" in result.stdout
    assert "identical answers: 6/6 (100.0%)" in result.stdout
    assert "identical visual-token counts: 6/6 (100.0%)" in result.stdout
