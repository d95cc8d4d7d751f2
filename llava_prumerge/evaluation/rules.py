"""LLaVA-1.5's own scoring and prompt rules, where lmms-eval 0.7.3's built-in tasks differ.

The paper's numbers come from LLaVA-1.5's evaluation scripts (``llava/eval/``), which the
released PruMerge code reuses. Our task files (:mod:`llava_prumerge.evaluation.tasks`) keep lmms-eval's
tasks and replace only these functions, through ``!function llava_prumerge.evaluation.rules.<name>``:

- **POPE** (``eval_pope.py``): the answer is parsed, not matched: keep the first sentence, drop
  commas, split on spaces; ``no`` if the words contain ``No``, ``not`` or ``no``, else ``yes``.
  lmms-eval scores only an exact ``yes``/``no`` (``"Yes, there is."`` counts as neither).
- **TextVQA** (``model_vqa_loader.py`` on ``llava_textvqa_val_v051_ocr.jsonl``): the question as
  written, then ``\\nReference OCR token: ...`` and the short-answer instruction. lmms-eval
  ``capitalize()``s the question, which also lower-cases the rest of it (``NASA`` → ``nasa``).
- **ScienceQA-IMG** (``eval_science_qa.py``): the prediction counts when it is one of the
  offered letters, starts with ``"X. "``, or says ``The answer is X.`` once; anything else is
  wrong. lmms-eval also accepts a lower-case letter and ignores ``The answer is X.``.
"""

from __future__ import annotations

import re
import string
from typing import Any

SQA_ANSWER_PATTERN = re.compile(r"The answer is ([A-Z]).")


def llava_pope_answer(text: str) -> str:
    """``yes`` or ``no`` as LLaVA-1.5's ``eval_pope.py`` reads a free-form answer."""
    if "." in text:
        text = text.split(".")[0]
    words = text.replace(",", "").split(" ")
    return "no" if ("No" in words or "not" in words or "no" in words) else "yes"


def pope_process_results(doc: dict[str, Any], results: list[str]) -> dict[str, dict[str, Any]]:
    """lmms-eval's POPE metrics (same keys and aggregations) on the answer parsed LLaVA's way."""
    prediction = llava_pope_answer(results[0].strip())
    truth = doc["answer"].lower().strip()
    if truth not in ("yes", "no"):
        raise ValueError(f"POPE question {doc.get('question_id')}: answer {doc['answer']!r} is not yes/no")
    entry = {
        "question_id": doc["question_id"],
        "score": float(prediction == truth),
        "prediction": prediction,
        "ground_truth": truth,
    }
    metrics = ("pope_accuracy", "pope_precision", "pope_recall", "pope_f1_score", "pope_yes_ratio")
    return {metric: dict(entry) for metric in metrics}


def textvqa_doc_to_text(doc: dict[str, Any], lmms_eval_specific_kwargs: dict[str, Any] | None = None) -> str:
    """``{question}\\nReference OCR token: {a, b, ...}{post_prompt}``, the question unchanged."""
    kwargs = lmms_eval_specific_kwargs or {}
    ocr = f"\nReference OCR token: {', '.join(doc['ocr_tokens'])}" if kwargs.get("ocr") else ""
    return f"{kwargs.get('pre_prompt', '')}{doc['question']}{ocr}{kwargs.get('post_prompt', '')}"


def llava_sqa_letter(prediction: str, num_choices: int) -> str | None:
    """The option letter LLaVA-1.5's ``eval_science_qa.py`` reads from ``prediction``, or None."""
    options = list(string.ascii_uppercase[:num_choices])
    if prediction in options:
        return prediction
    if len(prediction) >= 3 and prediction[0] in options and prediction[1:3] == ". ":
        return prediction[0]
    found = SQA_ANSWER_PATTERN.findall(prediction)
    return found[0] if len(found) == 1 and found[0] in options else None


def sqa_process_results(doc: dict[str, Any], results: list[str]) -> dict[str, float]:
    """ScienceQA accuracy (lmms-eval's ``exact_match`` key) with LLaVA's letter parsing."""
    letter = llava_sqa_letter(results[0].strip(), len(doc["choices"]))
    return {"exact_match": float(letter is not None and letter == string.ascii_uppercase[doc["answer"]])}
