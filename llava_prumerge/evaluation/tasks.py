"""The paper's benchmarks as lmms-eval tasks: which task runs each, and how Table 1 reports it.

lmms-eval's built-in tasks are used as they are (their prompts, their metric code). Where LLaVA-1.5's
protocol needs something the built-in lacks, a task YAML here ``include``s the built-in one and
overrides only that:

- ``textvqa_val_llava15``: TextVQA with the reference OCR tokens in the prompt, as LLaVA-1.5
  evaluated it (``{question}\\nReference OCR token: {tokens}\\nAnswer the question using a single
  word or phrase.``), the question as written; the built-in ``textvqa_val`` has ``ocr: false``
  and capitalises the question;
- ``pope_llava15``: a group of ``pope_{adv,pop,random}_llava15`` whose score is the F1 averaged
  over the three splits (Table 1), each answer parsed as LLaVA's ``eval_pope.py``; the built-in
  ``pope`` scores all 9000 questions jointly, ``pope_full`` reports no average, and both score
  only an exact yes/no;
- ``scienceqa_img_llava15``: the built-in prompt, the letter read as LLaVA's ``eval_science_qa.py``;
- the rules themselves: :mod:`llava_prumerge.evaluation.rules`;
- ``mmbench_en_dev_static`` (built in) scores MMBench-dev without an OpenAI judge; MMBench-test
  goes to the official server as the ``mmbench_en_test`` xlsx.

**Local data.** With ``local_data=DIR`` every task gets a ``<task>_local`` twin whose only change
is ``dataset_path: DIR/<repo>`` (with a ``datasets`` cache of its own, :func:`local_dataset_cache_dir`),
where ``<repo>`` is the last part of the built-in's Hub path
(``MME``, ``POPE``, ``ScienceQA``, ``textvqa``, ``VQAv2``, ``MMBench``, ``GQA``): a
``huggingface-cli download lmms-lab/<repo> --repo-type dataset --local-dir DIR/<repo>`` snapshot,
or the tiny copies of :mod:`llava_prumerge.tiny.benchmarks`. GQA's built-in task joins its images
from the Hub inside ``process_docs``; the local twin expects the instructions config with the
image already joined as an ``image`` column and sets ``process_docs: null``.

Task YAMLs are written per run (:func:`write_task_yamls`) because ``include`` needs the absolute
path of the installed lmms-eval; lmms-eval then reads them through ``--include_path``. Local
names end in ``_local`` because lmms-eval silently prefers a built-in task of the same name.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path

import yaml

LLAVA15_SHORT_ANSWER = "\nAnswer the question using a single word or phrase."


@dataclass(frozen=True)
class TaskSource:
    """A leaf lmms-eval task: its built-in YAML and what our copy overrides."""

    builtin_yaml: str
    """Path under ``lmms_eval/tasks``."""
    hub_repo: str
    """Folder name of the local copy (the Hub repo's name)."""
    overrides: tuple[tuple[str, object], ...] = ()
    """Extra keys on top of the built-in (beyond the task name and, locally, the data)."""
    local_overrides: tuple[tuple[str, object], ...] = ()
    functions: tuple[tuple[str, str], ...] = ()
    """Keys whose value is a function, as ``(key, "module.function")`` (written as ``!function``)."""


RULES = "llava_prumerge.evaluation.rules"


TASKS: dict[str, TaskSource] = {
    "vqav2_val": TaskSource("vqav2/vqav2_val.yaml", "VQAv2"),
    "vqav2_test": TaskSource("vqav2/vqav2_test.yaml", "VQAv2"),
    "scienceqa_img_llava15": TaskSource(
        "scienceqa/scienceqa_img.yaml",
        "ScienceQA",
        functions=(("process_results", f"{RULES}.sqa_process_results"),),
    ),
    "textvqa_val_llava15": TaskSource(
        "textvqa/textvqa_val.yaml",
        "textvqa",
        overrides=(
            (
                "lmms_eval_specific_kwargs",
                {"default": {"pre_prompt": "", "post_prompt": LLAVA15_SHORT_ANSWER, "ocr": True}},
            ),
        ),
        functions=(("doc_to_text", f"{RULES}.textvqa_doc_to_text"),),
    ),
    "pope_adv_llava15": TaskSource(
        "pope/pope_adv.yaml", "POPE", functions=(("process_results", f"{RULES}.pope_process_results"),)
    ),
    "pope_pop_llava15": TaskSource(
        "pope/pope_pop.yaml", "POPE", functions=(("process_results", f"{RULES}.pope_process_results"),)
    ),
    "pope_random_llava15": TaskSource(
        "pope/pope_random.yaml", "POPE", functions=(("process_results", f"{RULES}.pope_process_results"),)
    ),
    "mme": TaskSource("mme/mme.yaml", "MME"),
    "mmbench_en_dev_static": TaskSource("mmbench/mmbench_en_dev_static.yaml", "MMBench"),
    "mmbench_en_test": TaskSource("mmbench/mmbench_en_test.yaml", "MMBench"),
    "gqa": TaskSource("gqa/gqa.yaml", "GQA", local_overrides=(("process_docs", None),)),
}
"""Leaf tasks, by their lmms-eval name (ours where an override is needed)."""

GROUPS: dict[str, tuple[str, ...]] = {"pope_llava15": ("pope_adv_llava15", "pope_pop_llava15", "pope_random_llava15")}
"""Groups whose score is the plain mean of their tasks' (the paper's POPE: F1 over three splits)."""
GROUP_METRIC = {"pope_llava15": "pope_f1_score"}


@dataclass(frozen=True)
class Benchmark:
    """One column of Table 1: the tasks a script runs and the number the paper reports."""

    name: str
    title: str
    tasks: tuple[str, ...]
    """Tasks (or groups) passed to ``--tasks``."""
    score_tasks: tuple[str, ...]
    """Tasks whose ``metric`` is averaged into the reported number."""
    metric: str
    scale: float
    """Multiplier into the paper's units (accuracies in %, MME as is)."""
    note: str = ""


BENCHMARKS: dict[str, Benchmark] = {
    b.name: b
    for b in (
        Benchmark("vqav2", "VQAv2", ("vqav2_val", "vqav2_test"), ("vqav2_val",), "exact_match", 100.0,
                  "val accuracy here; the paper's test-dev number comes from EvalAI (submissions/vqav2-test-submission-*.json)"),
        Benchmark("sqa", "SQA-IMG", ("scienceqa_img_llava15",), ("scienceqa_img_llava15",), "exact_match", 100.0),
        Benchmark("textvqa", "TextVQA", ("textvqa_val_llava15",), ("textvqa_val_llava15",), "exact_match", 100.0),
        Benchmark("pope", "POPE", ("pope_llava15",), ("pope_adv_llava15", "pope_pop_llava15", "pope_random_llava15"), "pope_f1_score", 100.0,
                  "F1 averaged over the adversarial, popular and random splits"),
        Benchmark("mme", "MME", ("mme",), ("mme",), "mme_perception_score", 1.0, "perception score"),
        Benchmark("mmbench", "MMBench", ("mmbench_en_dev_static", "mmbench_en_test"), ("mmbench_en_dev_static",),
                  "gpt_eval_score", 1.0, "dev accuracy (rule-based matching); the paper's test number comes from the MMBench server (submissions/mmbench_en_test_results.xlsx)"),
        Benchmark("gqa", "GQA", ("gqa",), ("gqa",), "exact_match", 100.0, "testdev-balanced accuracy"),
    )
}  # fmt: skip
"""Table 1's benchmarks (plus GQA, which peers report), in the paper's column order."""


def lmms_eval_tasks_dir() -> Path:
    import lmms_eval.tasks

    return Path(lmms_eval.tasks.__file__).resolve().parent


def local_name(task: str) -> str:
    return f"{task}_local"


def task_names(benchmark: str, local: bool) -> list[str]:
    """What ``--tasks`` gets for ``benchmark`` (``_local`` twins with local data)."""
    if benchmark not in BENCHMARKS:
        raise ValueError(f"unknown benchmark {benchmark!r}; expected one of {', '.join(BENCHMARKS)}")
    tasks = BENCHMARKS[benchmark].tasks
    return [local_name(t) for t in tasks] if local else list(tasks)


def check_local_data(benchmark: str, local_data: str | Path) -> None:
    """Raise ``FileNotFoundError`` naming each local copy ``benchmark`` needs but ``local_data`` lacks."""
    missing = sorted(
        {
            TASKS[leaf].hub_repo
            for task in BENCHMARKS[benchmark].tasks
            for leaf in GROUPS.get(task, (task,))
            if not (Path(local_data) / TASKS[leaf].hub_repo).is_dir()
        }
    )
    if missing:
        raise FileNotFoundError(
            f"{benchmark}: no local copy of {', '.join(missing)} under {local_data} "
            f"(expected {', '.join(str(Path(local_data) / m) for m in missing)})"
        )


def local_dataset_cache_dir(repo: str | Path) -> Path:
    """The ``datasets`` cache folder of one local copy: its own for each path and file contents.

    ``datasets`` 5.2 names the Arrow cache of a local parquet folder by its folder name and file
    layout only, so two copies with the same layout (``A/VQAv2`` and ``B/VQAv2``, or one folder
    rewritten with new rows) share a cache entry and the second silently loads the first's rows.
    Keying a separate ``cache_dir`` by the absolute path and every data file's name, size and
    modification time keeps them apart.
    """
    from datasets import config as datasets_config

    repo = Path(repo).resolve()
    fingerprint = hashlib.sha1(str(repo).encode())
    for path in sorted(p for p in repo.rglob("*") if p.is_file() and ".cache" not in p.parts):
        stat = path.stat()
        fingerprint.update(f"{path.relative_to(repo)}:{stat.st_size}:{stat.st_mtime_ns}".encode())
    return Path(datasets_config.HF_DATASETS_CACHE) / "llava_prumerge_local" / fingerprint.hexdigest()[:16]


def write_task_yamls(out_dir: str | Path, local_data: str | Path | None = None) -> Path:
    """Write our task and group YAMLs (and ``_local`` twins if ``local_data``) into ``out_dir``.

    Returns ``out_dir``, for lmms-eval's ``--include_path``.
    """
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    builtin = lmms_eval_tasks_dir()
    variants = [("", None)]
    if local_data is not None:
        local_data = Path(local_data).resolve()
        if not local_data.is_dir():
            raise FileNotFoundError(f"local benchmark data: {local_data} is not a directory")
        variants.append(("_local", local_data))
    for suffix, data_root in variants:
        for task, source in TASKS.items():
            include = builtin / source.builtin_yaml
            if not include.is_file():
                raise FileNotFoundError(f"lmms-eval has no {source.builtin_yaml} (expected lmms-eval 0.7.3)")
            if not suffix and not source.overrides and not source.functions:
                continue  # the built-in task is used as it is
            body: dict[str, object] = {"include": str(include), "task": task + suffix, **dict(source.overrides)}
            if data_root is not None:
                repo = data_root / source.hub_repo
                if not repo.is_dir():
                    continue  # this benchmark has no local copy; its scripts say so when asked for it
                body["dataset_path"] = str(repo)
                body["dataset_kwargs"] = {"cache_dir": str(local_dataset_cache_dir(repo))}
                body.update(dict(source.local_overrides))
            text = yaml.safe_dump(body, sort_keys=False)
            text += "".join(f"{key}: !function {function}\n" for key, function in source.functions)
            (out_dir / f"{task}{suffix}.yaml").write_text(text)
        for group, members in GROUPS.items():
            body = {
                "group": group + suffix,
                "task": [m + suffix for m in members],
                "aggregate_metric_list": [
                    {"metric": GROUP_METRIC[group], "aggregation": "mean", "weight_by_size": False}
                ],
            }
            (out_dir / f"{group}{suffix}.yaml").write_text(yaml.safe_dump(body, sort_keys=False))
    return out_dir
