"""The GPT judge of zero-shot video QA (Table 3: MSVD-QA, MSRVTT-QA, ActivityNet-QA).

Video-ChatGPT's judge as Video-LLaVA ran it: each ``(question, answer, pred)`` goes to a chat model
(``gpt-3.5-turbo`` in Table 3) with a fixed system and user prompt; the reply is a Python dict
string ``{'pred': 'yes'|'no', 'score': 0..5}``. The prompt text is copied exactly from
mbzuai-oryx/Video-ChatGPT ``quantitative_evaluation/evaluate_activitynet_qa.py`` (identical in
PKU-YuanGroup/Video-LLaVA ``videollava/eval/video/eval_video_qa.py`` and in lmms-eval 0.7.3's
``lmms_eval/tasks/activitynetqa/utils.py``). Accuracy is the fraction of samples judged 'yes' and
the score the mean of the integer scores, as in Video-ChatGPT.

This module owns reading predictions (:func:`load_predictions`: lmms-eval ``*_samples_<task>.jsonl``
folders or Video-LLaVA's prediction records), calling any OpenAI-compatible Chat Completions
endpoint with the standard library (threads, retries with backoff, fail-fast on a refused key),
the resumable per-sample log (:data:`JUDGED_FILE`) and the summary (:data:`SUMMARY_FILE`).
"""

from __future__ import annotations

import ast
import json
import logging
import math
import re
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Iterable
from concurrent.futures import ThreadPoolExecutor, as_completed
from pathlib import Path
from typing import Any

logger = logging.getLogger(__name__)

DEFAULT_JUDGE_MODEL = "gpt-3.5-turbo"
"""Table 3's judge (and the model Video-ChatGPT's script hard-codes)."""
DEFAULT_BASE_URL = "https://api.openai.com/v1"
SUMMARY_FILE = "judge_summary.json"
JUDGED_FILE = "judged.jsonl"
MAX_TOKENS = 64
"""Video-ChatGPT sets no limit; lmms-eval's copy of the judge sends 64, ample for the reply dict."""
REFUSED_STATUS = (401, 403, 404)
"""HTTP statuses that no retry fixes (bad key, no access, wrong base URL or model): stop the run."""
MAX_RETRY_WAIT = 60.0
SAMPLES_FILE = re.compile(r"^(\d{8}_\d{6})_samples_(.+)\.jsonl$")
"""lmms-eval's ``--log_samples`` file name: ``<YYYYmmdd_HHMMSS>_samples_<task>.jsonl``."""

SYSTEM_PROMPT = (
    "You are an intelligent chatbot designed for evaluating the correctness of generative outputs for question-answer pairs. "
    "Your task is to compare the predicted answer with the correct answer and determine if they match meaningfully. Here's how you can accomplish the task:"
    "------"
    "##INSTRUCTIONS: "
    "- Focus on the meaningful match between the predicted answer and the correct answer.\n"
    "- Consider synonyms or paraphrases as valid matches.\n"
    "- Evaluate the correctness of the prediction compared to the answer."
)
USER_PROMPT_INTRO = "Please evaluate the following video-based question-answer pair:\n\n"
USER_PROMPT_INSTRUCTIONS = (
    "Provide your evaluation only as a yes/no and score where the score is an integer value between 0 and 5, with 5 indicating the highest meaningful match. "
    "Please generate the response in the form of a Python dictionary string with keys 'pred' and 'score', where value of 'pred' is  a string of 'yes' or 'no' and value of 'score' is in INTEGER, not STRING."
    "DO NOT PROVIDE ANY OTHER OUTPUT TEXT OR EXPLANATION. Only provide the Python dictionary string. "
    "For example, your response should look like this: {'pred': 'yes', 'score': 4.8}."
)
PREDICTION_FIELDS = ("question", "answer", "pred")


class JudgeError(RuntimeError):
    """The judge cannot run or did not judge every sample (the message says which and why)."""


class _Refused(Exception):
    """The endpoint refused the request in a way no retry fixes."""


# ---------------------------------------------------------------------------------------------
# Predictions


def samples_files(folder: str | Path) -> dict[str, list[Path]]:
    """task → lmms-eval samples files of that task below ``folder``, oldest first (date prefix)."""
    found: dict[str, list[Path]] = {}
    for path in Path(folder).rglob("*_samples_*.jsonl"):
        match = SAMPLES_FILE.match(path.name)
        if match:
            found.setdefault(match.group(2), []).append(path)
    for paths in found.values():
        paths.sort(key=lambda p: (SAMPLES_FILE.match(p.name).group(1), p.stat().st_mtime, str(p)))
    return found


def resolve_predictions(path: str | Path, task: str | None = None) -> tuple[Path, str | None]:
    """The predictions file behind ``path`` and its lmms-eval task (``None`` for Video-LLaVA files).

    A folder is searched recursively for lmms-eval samples files; ``task`` picks one task when the
    folder has several. Re-runs of a task: the newest by the file name's date prefix wins.
    """
    path = Path(path)
    if path.is_file():
        match = SAMPLES_FILE.match(path.name)
        if task is not None and (match is None or match.group(2) != task):
            raise ValueError(f"{path} is not an lmms-eval samples file of task {task!r}")
        return path, match.group(2) if match else None
    if not path.is_dir():
        raise FileNotFoundError(f"predictions {path} do not exist")
    found = samples_files(path)
    if not found:
        raise FileNotFoundError(f"{path}: no lmms-eval *_samples_<task>.jsonl below it (run with --log_samples)")
    if task is None:
        if len(found) > 1:
            raise ValueError(f"{path} has samples of several tasks, pick one with task: {', '.join(sorted(found))}")
        task = next(iter(found))
    if task not in found:
        raise ValueError(f"{path} has no samples of task {task!r}; it has: {', '.join(sorted(found))}")
    chosen = found[task][-1]
    if len(found[task]) > 1:
        older = ", ".join(str(p) for p in found[task][:-1])
        logger.warning(
            "%s: %d samples files of task %s, using the newest %s (not %s)", path, len(found[task]), task, chosen, older
        )
    return chosen, task


def _records(path: Path) -> list[tuple[str, Any]]:
    """``(where, record)`` pairs of a JSON list or a JSON-lines file (Video-LLaVA writes JSON
    lines into ``<name>.json``), ``where`` naming the file and line or position."""
    text = path.read_text()
    try:
        data = json.loads(text)
    except json.JSONDecodeError:
        data = None
        records = []
        for number, line in enumerate(text.splitlines(), start=1):
            if not line.strip():
                continue
            try:
                records.append((f"{path}:{number}", json.loads(line)))
            except json.JSONDecodeError as error:
                raise ValueError(f"{path}:{number}: not valid JSON ({error})") from error
        return records
    if isinstance(data, dict):
        return [(f"{path}:1", data)]
    if not isinstance(data, list):
        raise ValueError(f"{path}: expected a list of prediction records, got {type(data).__name__}")
    return [(f"{path}[{index}]", record) for index, record in enumerate(data)]


def _text(record: dict[str, Any], key: str, where: str) -> str:
    value = record.get(key)
    if value is None:
        raise ValueError(f"{where}: record has no {key!r} (fields: {', '.join(map(str, record)) or 'none'})")
    return str(value)


def _lmms_eval_prediction(record: Any, where: str) -> dict[str, str]:
    """One samples-file line → a prediction.

    The question and answer come from ``doc`` when the line has it; lmms-eval 0.7.3 drops ``doc``
    from samples files, so otherwise from the first dict the task's ``process_results`` logged with
    both ``question`` and ``answer`` (as ``activitynetqa``'s ``gpt_eval_score`` does). The id is the
    doc's ``question_id``, else lmms-eval's ``doc_id``.
    """
    if not isinstance(record, dict):
        raise ValueError(f"{where}: expected a JSON object, got {type(record).__name__}")
    if "doc_id" not in record or "filtered_resps" not in record:
        missing = [k for k in ("doc_id", "filtered_resps") if k not in record]
        raise ValueError(f"{where}: not an lmms-eval sample, missing {', '.join(missing)}")
    doc = record.get("doc")
    if not isinstance(doc, dict):
        doc = next(
            (v for v in record.values() if isinstance(v, dict) and "question" in v and "answer" in v),
            None,
        )
    if doc is None:
        raise ValueError(
            f"{where}: sample {record['doc_id']} has no 'doc' and no logged dict with 'question' and 'answer' "
            "(lmms-eval 0.7.3 drops 'doc' from samples files: the task's process_results must log them)"
        )
    response = record["filtered_resps"]
    while isinstance(response, list) and len(response) == 1:
        response = response[0]
    if not isinstance(response, str):
        raise ValueError(
            f"{where}: sample {record['doc_id']}: expected one answer string in filtered_resps, got {response!r}"
        )
    identifier = doc.get("question_id", record["doc_id"])
    return {
        "id": str(identifier),
        "question": _text(doc, "question", f"{where} (sample {identifier})"),
        "answer": _text(doc, "answer", f"{where} (sample {identifier})"),
        "pred": response,
    }


def _video_llava_prediction(record: Any, where: str) -> dict[str, str]:
    """A Video-LLaVA prediction record ``{"id"|"question_id", "question", "answer", "pred"}``."""
    if not isinstance(record, dict):
        raise ValueError(f"{where}: expected a JSON object, got {type(record).__name__}")
    identifier = record.get("id", record.get("question_id"))
    if identifier is None:
        raise ValueError(f"{where}: record has neither 'id' nor 'question_id'")
    return {"id": str(identifier), **{k: _text(record, k, f"{where} (id {identifier})") for k in PREDICTION_FIELDS}}


def load_predictions(path: str | Path, task: str | None = None) -> list[dict[str, str]]:
    """Predictions ``{id, question, answer, pred}`` (all strings) from an lmms-eval output folder or
    samples file (:func:`resolve_predictions`) or a Video-LLaVA JSON/JSON-lines file.

    A malformed record is an error naming the file and line (or record id); so is a duplicate id.
    """
    source, found_task = resolve_predictions(path, task)
    parse = _lmms_eval_prediction if found_task is not None else _video_llava_prediction
    predictions = [parse(record, where) for where, record in _records(source)]
    if not predictions:
        raise ValueError(f"{source}: no predictions")
    seen: set[str] = set()
    duplicates = [p["id"] for p in predictions if p["id"] in seen or seen.add(p["id"])]
    if duplicates:
        raise ValueError(f"{source}: duplicate ids {', '.join(sorted(set(duplicates))[:10])}")
    return predictions


def default_output_dir(path: str | Path, task: str | None = None) -> Path:
    """Where the judgements go by default: ``<folder>/judge/<task>`` for an lmms-eval folder,
    ``<file's folder>/judge/<task or file stem>`` for a file."""
    path = Path(path)
    if path.is_dir():
        return path / "judge" / (task or "predictions")
    return path.parent / "judge" / (task or path.stem)


# ---------------------------------------------------------------------------------------------
# The judge


def judge_messages(question: str, answer: str, pred: str) -> list[dict[str, str]]:
    """Video-ChatGPT's two chat messages for one sample."""
    user = (
        f"{USER_PROMPT_INTRO}"
        f"Question: {question}\n"
        f"Correct Answer: {answer}\n"
        f"Predicted Answer: {pred}\n\n"
        f"{USER_PROMPT_INSTRUCTIONS}"
    )
    return [{"role": "system", "content": SYSTEM_PROMPT}, {"role": "user", "content": user}]


def parse_review(review: str) -> tuple[str, int]:
    """``(verdict, score)`` from the judge's reply; ``ValueError`` when it is not a valid review.

    Valid: the first ``{...}`` in the reply (text around it is ignored, as lmms-eval does) is a
    Python/JSON dict literal with ``pred`` and ``score``. ``pred`` is a string classified as
    Video-ChatGPT does: 'yes' if it contains "yes", else 'no' if it contains "no" (case-insensitive);
    a string with neither is invalid (Video-ChatGPT silently left it out of the accuracy). ``score``
    is an int, a finite float or an integer string in 0..5, made an int by ``int()`` as
    Video-ChatGPT does (so 4.8, the prompt's own example, is 4); bools and "4.5" are invalid.
    """
    match = re.search(r"\{[^{}]*\}", review)
    if match is None:
        raise ValueError("no {...} dict in the reply")
    try:
        values = ast.literal_eval(match.group(0))
    except (SyntaxError, ValueError) as error:
        raise ValueError(f"the reply's dict is not a literal ({error})") from error
    if not isinstance(values, dict) or "pred" not in values or "score" not in values:
        raise ValueError("the reply's dict lacks 'pred' or 'score'")
    pred, score = values["pred"], values["score"]
    if not isinstance(pred, str):
        raise ValueError(f"'pred' is not a string: {pred!r}")
    if "yes" in pred.lower():
        verdict = "yes"
    elif "no" in pred.lower():
        verdict = "no"
    else:
        raise ValueError(f"'pred' is neither yes nor no: {pred!r}")
    if isinstance(score, bool) or not isinstance(score, (int, float, str)):
        raise ValueError(f"'score' is not a number: {score!r}")
    if isinstance(score, float) and not math.isfinite(score):
        raise ValueError(f"'score' is not finite: {score!r}")
    if isinstance(score, str):
        try:
            score = int(score.strip())
        except ValueError as error:
            raise ValueError(f"'score' is not an integer: {score!r}") from error
    if not 0 <= score <= 5:
        raise ValueError(f"'score' {score!r} is outside 0..5")
    return verdict, int(score)


def request_review(
    messages: list[dict[str, str]], *, model: str, base_url: str, api_key: str, timeout: float
) -> tuple[str, str]:
    """One Chat Completions call (temperature 0): ``(reply text, model name the API returned)``.

    Raises ``_Refused`` for :data:`REFUSED_STATUS`, other exceptions for errors worth retrying.
    """
    body = {"model": model, "messages": messages, "temperature": 0, "max_tokens": MAX_TOKENS}
    request = urllib.request.Request(
        f"{base_url.rstrip('/')}/chat/completions",
        data=json.dumps(body).encode(),
        headers={"Authorization": f"Bearer {api_key}", "Content-Type": "application/json"},
        method="POST",
    )
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            raw = response.read()
    except urllib.error.HTTPError as error:
        detail = error.read().decode(errors="replace")[:300]
        if error.code in REFUSED_STATUS:
            raise _Refused(f"HTTP {error.code} from {request.full_url}: {detail}") from error
        raise RuntimeError(f"HTTP {error.code}: {detail}") from error
    try:
        payload = json.loads(raw)
        content = payload["choices"][0]["message"]["content"]
    except (json.JSONDecodeError, KeyError, IndexError, TypeError) as error:
        raise RuntimeError(f"not a Chat Completions response ({error!r}): {raw[:300]!r}") from error
    if not isinstance(content, str):
        raise RuntimeError(f"reply content is not text: {content!r}")
    return content, str(payload.get("model") or model)


def _read_judged(path: Path) -> dict[str, dict[str, Any]]:
    """id → judged record of an existing :data:`JUDGED_FILE`. A line cut short by a crash (the
    last one, without its newline) is dropped from the file; any other bad line is an error."""
    if not path.is_file():
        return {}
    text = path.read_text()
    lines = text.splitlines()
    judged: dict[str, dict[str, Any]] = {}
    for number, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        try:
            record = json.loads(line)
            record["id"] = str(record["id"])
            if record["verdict"] not in ("yes", "no") or not isinstance(record["score"], int):
                raise ValueError(f"bad verdict/score {record['verdict']!r}/{record['score']!r}")
        except (json.JSONDecodeError, KeyError, TypeError, ValueError) as error:
            if number == len(lines) and not text.endswith("\n"):
                logger.warning("%s:%d: dropping a line cut short (%s)", path, number, error)
                path.write_text("".join(f"{kept}\n" for kept in lines[:-1]))
                break
            raise JudgeError(f"{path}:{number}: malformed judged record ({error})") from error
        judged[record["id"]] = record
    return judged


def _check_kept(judged: dict[str, dict[str, Any]], predictions: list[dict[str, str]], model: str, path: Path) -> None:
    stale = []
    for prediction in predictions:
        kept = judged.get(prediction["id"])
        if kept is None:
            continue
        if any(kept.get(k) != prediction[k] for k in PREDICTION_FIELDS):
            stale.append(f"{prediction['id']} (question/answer/pred changed)")
        elif kept.get("requested_model", model) != model:
            stale.append(f"{prediction['id']} (judged by {kept['requested_model']}, not {model})")
    if stale:
        shown = "; ".join(stale[:10]) + (f"; ... {len(stale) - 10} more" if len(stale) > 10 else "")
        raise JudgeError(
            f"{path} holds stale judgements for {len(stale)} samples: {shown}. "
            "Pass restart (--restart) to judge everything again, or use another output folder"
        )


def summarize(judged: Iterable[dict[str, Any]]) -> dict[str, Any]:
    """Video-ChatGPT's numbers over judged records: accuracy (fraction 'yes'), mean score, counts."""
    records = list(judged)
    yes = sum(r["verdict"] == "yes" for r in records)
    return {
        "samples": len(records),
        "accuracy": yes / len(records) if records else None,
        "score": sum(r["score"] for r in records) / len(records) if records else None,
        "yes": yes,
        "no": len(records) - yes,
    }


def judge_predictions(
    predictions: list[dict[str, str]],
    output_dir: str | Path,
    *,
    model: str = DEFAULT_JUDGE_MODEL,
    base_url: str = DEFAULT_BASE_URL,
    api_key: str | None,
    concurrency: int = 8,
    retries: int = 5,
    retry_wait: float = 2.0,
    timeout: float = 60.0,
    restart: bool = False,
    progress: bool = True,
    task: str | None = None,
    predictions_path: str | Path | None = None,
) -> dict[str, Any]:
    """Judge every prediction not yet in ``output_dir``'s :data:`JUDGED_FILE` and return the summary.

    Each judged sample is appended to :data:`JUDGED_FILE` as it finishes; a re-run keeps those
    (an error if their question/answer/pred or judge changed, unless ``restart``). A request is
    tried ``1 + retries`` times, waiting ``retry_wait * 2**attempt`` seconds (at most 60) between
    tries; samples that still fail make the run end in :class:`JudgeError` naming them, after the
    others finished, and no summary is written. A refused key (HTTP 401/403) or a wrong endpoint
    or model (404) stops the run at once. :data:`SUMMARY_FILE` is written when every sample is
    judged. ``task`` and ``predictions_path`` only label the summary.
    """
    if not api_key:
        raise JudgeError("no API key: set OPENAI_API_KEY (the judge never scores without asking the model)")
    if not predictions:
        raise ValueError("no predictions to judge")
    if len({p["id"] for p in predictions}) != len(predictions):
        raise ValueError("predictions have duplicate ids")
    if concurrency < 1 or retries < 0:
        raise ValueError(f"concurrency must be >= 1 and retries >= 0, got {concurrency} and {retries}")
    output_dir = Path(output_dir)
    output_dir.mkdir(parents=True, exist_ok=True)
    judged_path, summary_path = output_dir / JUDGED_FILE, output_dir / SUMMARY_FILE
    if restart:
        judged_path.unlink(missing_ok=True)
    summary_path.unlink(missing_ok=True)
    judged = _read_judged(judged_path)
    _check_kept(judged, predictions, model, judged_path)
    wanted = {p["id"] for p in predictions}
    if extra := [i for i in judged if i not in wanted]:
        logger.warning("%s: %d judged samples are not among the predictions and are left out", judged_path, len(extra))
    pending = [p for p in predictions if p["id"] not in judged]

    lock, stop = threading.Lock(), threading.Event()
    failures: dict[str, str] = {}
    refused: list[str] = []

    def judge_one(prediction: dict[str, str]) -> None:
        messages = judge_messages(prediction["question"], prediction["answer"], prediction["pred"])
        last_error = ""
        for attempt in range(retries + 1):
            if stop.is_set():
                return
            if attempt:
                time.sleep(min(retry_wait * 2 ** (attempt - 1), MAX_RETRY_WAIT))
            try:
                review, judge_model = request_review(
                    messages, model=model, base_url=base_url, api_key=api_key, timeout=timeout
                )
                verdict, score = parse_review(review)
            except _Refused as error:
                with lock:
                    refused.append(str(error))
                stop.set()
                return
            except Exception as error:  # HTTP, network, timeout, malformed reply: all worth retrying
                last_error = f"{type(error).__name__}: {error}"
                continue
            record = {
                "id": prediction["id"],
                **{k: prediction[k] for k in PREDICTION_FIELDS},
                "verdict": verdict,
                "score": score,
                "review": review,
                "judge_model": judge_model,
                "requested_model": model,
            }
            with lock, judged_path.open("a", encoding="utf-8") as log:
                log.write(json.dumps(record, ensure_ascii=False) + "\n")
                judged[prediction["id"]] = record
            return
        with lock:
            failures[prediction["id"]] = last_error

    if pending:
        from tqdm import tqdm

        executor = ThreadPoolExecutor(max_workers=concurrency)
        try:
            futures = [executor.submit(judge_one, p) for p in pending]
            bar = tqdm(as_completed(futures), total=len(futures), desc="judging", disable=not progress)
            for future in bar:
                future.result()
        except BaseException:
            stop.set()
            raise
        finally:
            executor.shutdown(wait=True, cancel_futures=True)
    if refused:
        raise JudgeError(
            f"the endpoint refused the request, stopped after {len(judged)} of {len(predictions)} judged "
            f"(check OPENAI_API_KEY, --base-url and --model): {refused[0]}"
        )
    if failures:
        ids = sorted(failures)
        last_id, last_error = list(failures.items())[-1]
        raise JudgeError(
            f"{len(ids)} of {len(predictions)} samples could not be judged after {retries + 1} tries "
            f"(the {len(judged)} others are kept in {judged_path}; re-run to retry): "
            f"{', '.join(ids[:20])}{' ...' if len(ids) > 20 else ''}; last error ({last_id}): {last_error}"
        )
    records = [judged[p["id"]] for p in predictions]
    summary = {
        "task": task,
        "predictions": str(predictions_path) if predictions_path is not None else None,
        "judge_model": ", ".join(sorted({r.get("judge_model") or model for r in records})),
        "requested_model": model,
        "base_url": base_url,
        **summarize(records),
    }
    summary_path.write_text(json.dumps(summary, indent=2) + "\n")
    return summary


def read_summary(output_dir: str | Path) -> dict[str, Any] | None:
    """The :data:`SUMMARY_FILE` in ``output_dir``, or ``None`` while not every sample is judged."""
    path = Path(output_dir) / SUMMARY_FILE
    return json.loads(path.read_text()) if path.is_file() else None
