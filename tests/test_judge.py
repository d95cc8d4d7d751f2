"""The video QA GPT judge against a local stand-in for the Chat Completions API."""

from __future__ import annotations

import ast
import contextlib
import importlib.util
import json
import logging
import os
import re
import subprocess
import sys
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from llava_prumerge.evaluation.judge import (
    DEFAULT_JUDGE_MODEL,
    JUDGED_FILE,
    SUMMARY_FILE,
    JudgeError,
    judge_messages,
    judge_predictions,
    load_predictions,
    parse_review,
    read_summary,
)

ROOT = Path(__file__).parents[1]
KEY = "sk-test-key"
SERVED_MODEL = "gpt-3.5-turbo-0125"
USER_MESSAGE = re.compile(r"Question: (.*)\nCorrect Answer: (.*)\nPredicted Answer: (.*)\n\n", re.S)


def expected_review(answer: str, pred: str) -> tuple[str, int]:
    """The stand-in judge's rule: 'yes' with score 5 for an exact match, else 'no' with 0..2."""
    return ("yes", 5) if pred == answer else ("no", len(pred) % 3)


class ChatServer:
    """Plays ``POST /v1/chat/completions``: checks each request, answers per ``script``.

    ``script(number, question, answer, pred)`` returns ``(status, body)`` or ``None`` for the
    default rule (:func:`expected_review` as a Video-ChatGPT-style dict reply).
    """

    def __init__(self) -> None:
        self.requests: list[dict] = []
        self.problems: list[str] = []
        self.script = None
        self.lock = threading.Lock()
        server = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args) -> None:
                pass

            def do_POST(self) -> None:
                body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                status, reply = server.answer(self.path, self.headers.get("Authorization"), body)
                data = reply.encode() if isinstance(reply, str) else json.dumps(reply).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}/v1"

    def answer(self, path: str, authorization: str | None, body: dict) -> tuple[int, object]:
        with self.lock:
            self.requests.append(body)
            number = len(self.requests)
        if authorization != f"Bearer {KEY}":
            return 401, {"error": {"message": "Incorrect API key provided", "code": "invalid_api_key"}}
        user = body["messages"][1]["content"]
        match = USER_MESSAGE.search(user)
        if path != "/v1/chat/completions" or body["temperature"] != 0 or body["model"] != DEFAULT_JUDGE_MODEL:
            self.problems.append(f"unexpected request {path} {body}")
        if match is None or body["messages"][0]["role"] != "system" or body["messages"][1]["role"] != "user":
            self.problems.append(f"unexpected messages {body['messages']}")
            return 400, {"error": {"message": "bad messages"}}
        question, answer, pred = match.groups()
        scripted = self.script(number, question, answer, pred) if self.script else None
        if scripted is not None:
            return scripted
        verdict, score = expected_review(answer, pred)
        return 200, completion(f"{{'pred': '{verdict}', 'score': {score}}}")

    def preds_requested(self) -> list[str]:
        return [USER_MESSAGE.search(r["messages"][1]["content"]).group(3) for r in self.requests]


def completion(content: str) -> dict:
    return {
        "id": "chatcmpl-1",
        "model": SERVED_MODEL,
        "choices": [{"index": 0, "message": {"role": "assistant", "content": content}}],
    }


@contextlib.contextmanager
def running_server():
    """A :class:`ChatServer` serving on a thread for the duration of the block."""
    chat = ChatServer()
    thread = threading.Thread(target=chat.httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    try:
        yield chat
    finally:
        chat.httpd.shutdown()
        chat.httpd.server_close()


@pytest.fixture
def server(monkeypatch):
    monkeypatch.setenv("no_proxy", "127.0.0.1")
    with running_server() as chat:
        yield chat
    assert not chat.problems


def make_predictions(count: int = 10) -> list[dict[str, str]]:
    """Every third prediction matches its answer exactly."""
    return [
        {
            "id": f"v_clip{i}_0",
            "question": f"what is happening in clip {i}",
            "answer": f"answer {i}",
            "pred": f"answer {i}" if i % 3 == 0 else f"something else {'x' * i}",
        }
        for i in range(count)
    ]


def expected_summary(predictions: list[dict[str, str]]) -> dict:
    reviews = [expected_review(p["answer"], p["pred"]) for p in predictions]
    yes = sum(verdict == "yes" for verdict, _ in reviews)
    return {
        "samples": len(reviews),
        "yes": yes,
        "no": len(reviews) - yes,
        "accuracy": pytest.approx(yes / len(reviews)),
        "score": pytest.approx(sum(score for _, score in reviews) / len(reviews)),
    }


def run_judge(predictions, output, server, **overrides) -> dict:
    settings = dict(
        model=DEFAULT_JUDGE_MODEL,
        base_url=server.url,
        api_key=KEY,
        concurrency=4,
        retries=2,
        retry_wait=0,
        timeout=10,
        progress=False,
    )
    return judge_predictions(predictions, output, **{**settings, **overrides})


def judged_lines(output: Path) -> list[dict]:
    return [json.loads(line) for line in (output / JUDGED_FILE).read_text().splitlines()]


def lmms_eval_prompt_messages(question: str, answer: str, pred: str) -> list[dict[str, str]]:
    """The messages of lmms-eval 0.7.3's copy of the judge (``activitynetqa/utils.py:get_eval``),
    evaluated from its source so that the prompt text is checked against an independent copy."""
    import lmms_eval

    source = Path(lmms_eval.__file__).parent / "tasks" / "activitynetqa" / "utils.py"
    function = next(n for n in ast.parse(source.read_text()).body if getattr(n, "name", None) == "get_eval")
    assignment = next(n for n in function.body if isinstance(n, ast.Assign) and n.targets[0].id == "messages")
    code = compile(ast.Expression(assignment.value), str(source), "eval")
    return eval(code, {"question": question, "answer": answer, "pred": pred})


def test_prompt_is_video_chatgpts():
    question, answer, pred = "what is the man doing", "play guitar", "He is playing a guitar {with} braces."
    assert judge_messages(question, answer, pred) == lmms_eval_prompt_messages(question, answer, pred)
    assert judge_messages(question, answer, pred)[1]["content"].endswith("{'pred': 'yes', 'score': 4.8}.")


@pytest.mark.parametrize(
    ("review", "expected"),
    [
        ("{'pred': 'yes', 'score': 4}", ("yes", 4)),
        ("{'pred': 'no', 'score': 0}", ("no", 0)),
        ('{"pred": "Yes", "score": 5}', ("yes", 5)),
        ("Here is my evaluation: {'pred': 'no', 'score': 2} Hope this helps.", ("no", 2)),
        ("```python\n{'pred': 'yes', 'score': 3}\n```", ("yes", 3)),
        ("{'pred': 'yes', 'score': 4.8}", ("yes", 4)),  # int() as Video-ChatGPT: the prompt's own example
        ("{'pred': 'yes', 'score': 4.0}", ("yes", 4)),
        ("{'pred': 'no', 'score': '1'}", ("no", 1)),
        ("{'pred': 'No.', 'score': 1}", ("no", 1)),
        ("{'score': 3, 'pred': 'yes'}", ("yes", 3)),
    ],
)
def test_parse_review_valid(review, expected):
    assert parse_review(review) == expected


@pytest.mark.parametrize(
    "review",
    [
        "",
        "yes",
        "{'pred': 'yes'}",
        "{'score': 3}",
        "{'pred': 'maybe', 'score': 3}",
        "{'pred': 1, 'score': 3}",
        "{'pred': 'yes', 'score': 6}",
        "{'pred': 'yes', 'score': -1}",
        "{'pred': 'yes', 'score': True}",
        "{'pred': 'yes', 'score': '4.5'}",
        "{'pred': 'yes', 'score': None}",
        "{'pred': 'yes', 'score': float('nan')}",
        "{'pred': 'yes', 'score': 4",
        "{pred: yes, score: 4}",
    ],
)
def test_parse_review_invalid(review):
    with pytest.raises(ValueError):
        parse_review(review)


def test_judges_every_sample(server, tmp_path):
    predictions = make_predictions(10)
    summary = run_judge(predictions, tmp_path / "out", server)
    assert summary == {
        "task": None,
        "predictions": None,
        "judge_model": SERVED_MODEL,
        "requested_model": DEFAULT_JUDGE_MODEL,
        "base_url": server.url,
        **expected_summary(predictions),
    }
    assert read_summary(tmp_path / "out") == summary
    assert KEY not in (tmp_path / "out" / SUMMARY_FILE).read_text()
    assert len(server.requests) == 10
    assert all(r["max_tokens"] == 64 for r in server.requests)
    lines = {line["id"]: line for line in judged_lines(tmp_path / "out")}
    assert set(lines) == {p["id"] for p in predictions}
    for prediction in predictions:
        line = lines[prediction["id"]]
        verdict, score = expected_review(prediction["answer"], prediction["pred"])
        assert {k: line[k] for k in ("question", "answer", "pred")} == {
            k: prediction[k] for k in ("question", "answer", "pred")
        }
        assert (line["verdict"], line["score"], line["judge_model"]) == (verdict, score, SERVED_MODEL)
        assert line["review"] == f"{{'pred': '{verdict}', 'score': {score}}}"


def test_retries_errors_and_garbage(server, tmp_path):
    failures = {
        1: (500, {"error": {"message": "server error"}}),
        2: (200, "<html>not json</html>"),
        3: (200, completion("I think the answer is correct.")),
        4: (429, {"error": {"message": "rate limited"}}),
    }
    server.script = lambda number, *_: failures.get(number)
    predictions = make_predictions(6)
    summary = run_judge(predictions, tmp_path, server, concurrency=1, retries=5)
    assert summary["samples"] == 6 and summary["accuracy"] == expected_summary(predictions)["accuracy"]
    assert len(server.requests) == 6 + len(failures)
    assert len(judged_lines(tmp_path)) == 6


def test_failing_sample_names_id_and_keeps_others(server, tmp_path):
    predictions = make_predictions(8)
    broken = predictions[5]["pred"]
    server.script = lambda number, q, a, pred: (503, {"error": {"message": "overloaded"}}) if pred == broken else None
    with pytest.raises(JudgeError, match=r"1 of 8 samples .*v_clip5_0.*HTTP 503.*overloaded"):
        run_judge(predictions, tmp_path, server, retries=3)
    assert server.preds_requested().count(broken) == 4
    assert sorted(line["id"] for line in judged_lines(tmp_path)) == sorted(
        p["id"] for p in predictions if p["pred"] != broken
    )
    assert read_summary(tmp_path) is None
    # once the endpoint recovers, a re-run asks only for the missing sample
    server.script, before = None, len(server.requests)
    summary = run_judge(predictions, tmp_path, server)
    assert server.preds_requested()[before:] == [broken]
    assert {k: summary[k] for k in ("samples", "yes", "no", "accuracy", "score")} == expected_summary(predictions)


def test_missing_key_sends_nothing(server, tmp_path):
    for key in (None, ""):
        with pytest.raises(JudgeError, match="OPENAI_API_KEY"):
            run_judge(make_predictions(3), tmp_path / "out", server, api_key=key)
    assert server.requests == []
    assert not (tmp_path / "out").exists()


def test_refused_key_fails_fast(server, tmp_path):
    with pytest.raises(JudgeError, match="HTTP 401.*Incorrect API key"):
        run_judge(make_predictions(40), tmp_path, server, api_key="sk-wrong", concurrency=2, retries=5)
    # only the requests already in flight when the first 401 came back, never 40 x 6 tries
    assert 1 <= len(server.requests) <= 2
    assert read_summary(tmp_path) is None


def test_resume_judges_only_new_samples(server, tmp_path):
    predictions = make_predictions(10)
    run_judge(predictions[:4], tmp_path, server)
    assert len(server.requests) == 4
    # a crash in the middle of writing a line: that line is dropped and its sample judged again
    with (tmp_path / JUDGED_FILE).open("a") as log:
        log.write(json.dumps({**predictions[4], "verdict": "yes", "score": 5})[:30])
    summary = run_judge(predictions, tmp_path, server)
    assert sorted(server.preds_requested()[4:]) == sorted(p["pred"] for p in predictions[4:])
    assert sorted(line["id"] for line in judged_lines(tmp_path)) == sorted(p["id"] for p in predictions)
    assert {k: summary[k] for k in ("samples", "yes", "no", "accuracy", "score")} == expected_summary(predictions)
    # everything judged: nothing more is asked
    assert run_judge(predictions, tmp_path, server) == summary
    assert len(server.requests) == 10


def test_stale_judgements(server, tmp_path):
    predictions = make_predictions(5)
    run_judge(predictions, tmp_path, server)
    changed = [dict(p) for p in predictions]
    changed[2]["pred"] = changed[2]["answer"]
    with pytest.raises(JudgeError, match=r"stale judgements for 1 samples: v_clip2_0"):
        run_judge(changed, tmp_path, server)
    with pytest.raises(JudgeError, match=r"v_clip0_0 \(judged by gpt-3.5-turbo, not gpt-4o\)"):
        run_judge(predictions, tmp_path, server, model="gpt-4o")
    assert len(server.requests) == 5
    summary = run_judge(changed, tmp_path, server, restart=True)
    assert len(server.requests) == 10
    assert summary["yes"] == expected_summary(changed)["yes"] == expected_summary(predictions)["yes"] + 1
    assert len(judged_lines(tmp_path)) == 5


def lmms_eval_sample(doc_id: int, doc: dict, pred: str, *, keep_doc: bool = False) -> dict:
    """A line as lmms-eval 0.7.3 writes with --log_samples: ``doc`` dropped, one request's answer
    flattened to a string, the task's ``process_results`` dicts logged next to it."""
    sample = {
        "doc_id": doc_id,
        "target": doc["answer"],
        "filtered_resps": pred,
        "token_counts": [None],
        "doc_hash": "74234e98afe7498fb5daf1f36ac2d78acc339464f950703b8c019892f982b90b",
        "gpt_eval_score": {**doc, "pred": pred, "Correctness": "no", "score": 0},
        "gpt_eval_accuracy": {**doc, "pred": pred, "Correctness": "no", "score": 0},
        "input": doc["question"].capitalize() + "?",
    }
    if keep_doc:  # older lmms-eval: the doc is kept and filtered_resps is not flattened
        sample = {"doc_id": doc_id, "doc": doc, "target": doc["answer"], "filtered_resps": [[pred]]}
    return sample


def write_samples(path: Path, samples: list[dict]) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(json.dumps(s) + "\n" for s in samples))
    return path


def video_docs(count: int) -> list[dict]:
    return [
        {
            "question_id": f"v_abc{i}_0",
            "question": f"what is the person doing {i}",
            "answer": f"dancing {i}",
            "video_name": f"abc{i}",
            "type": 0,
        }
        for i in range(count)
    ]


def test_lmms_eval_folder(tmp_path, caplog):
    folder = tmp_path / "run"
    model = folder / "llava-hf__llava-1.5-7b-hf"
    docs = video_docs(4)
    write_samples(
        model / "20240101_100000_samples_activitynetqa.jsonl",
        [lmms_eval_sample(i, d, "old") for i, d in enumerate(docs)],
    )
    newest = write_samples(
        folder / "again" / "20240102_090000_samples_activitynetqa.jsonl",
        [lmms_eval_sample(i, d, f"new {i}") for i, d in enumerate(docs)],
    )
    write_samples(
        model / "20240101_100000_samples_msvd_qa.jsonl",
        [lmms_eval_sample(i, d, d["answer"], keep_doc=True) for i, d in enumerate(docs[:2])],
    )
    with pytest.raises(ValueError, match="several tasks.*activitynetqa, msvd_qa"):
        load_predictions(folder)
    with pytest.raises(ValueError, match="no samples of task 'msrvtt_qa'.*activitynetqa, msvd_qa"):
        load_predictions(folder, task="msrvtt_qa")
    with caplog.at_level(logging.WARNING):
        predictions = load_predictions(folder, task="activitynetqa")
    assert str(newest) in caplog.text
    assert predictions == [
        {"id": d["question_id"], "question": d["question"], "answer": d["answer"], "pred": f"new {i}"}
        for i, d in enumerate(docs)
    ]
    assert load_predictions(folder, task="msvd_qa") == [
        {"id": d["question_id"], "question": d["question"], "answer": d["answer"], "pred": d["answer"]}
        for d in docs[:2]
    ]
    assert load_predictions(newest)[0]["pred"] == "new 0"


def test_lmms_eval_malformed(tmp_path):
    docs = video_docs(3)
    samples = [lmms_eval_sample(i, d, "p") for i, d in enumerate(docs)]
    del samples[1]["gpt_eval_score"]["answer"], samples[1]["gpt_eval_accuracy"]
    path = write_samples(tmp_path / "20240101_100000_samples_activitynetqa.jsonl", samples)
    with pytest.raises(ValueError, match=r"samples_activitynetqa.jsonl:2: .*no 'doc'"):
        load_predictions(tmp_path)
    samples[1] = lmms_eval_sample(1, docs[0], "p")
    write_samples(path, samples)
    with pytest.raises(ValueError, match="duplicate ids v_abc0_0"):
        load_predictions(tmp_path)
    samples[1] = {"doc_id": 1, "target": "x"}
    write_samples(path, samples)
    with pytest.raises(ValueError, match=r":2: not an lmms-eval sample, missing filtered_resps"):
        load_predictions(tmp_path)


@pytest.mark.parametrize("layout", ["json", "jsonl", "jsonl-named-json"])
def test_video_llava_predictions(tmp_path, layout):
    records = [
        {"id": p["id"], "question": p["question"], "answer": p["answer"], "pred": p["pred"]}
        for p in make_predictions(3)
    ]
    records[1] = {"question_id": records[1].pop("id"), **records[1]}
    path = tmp_path / ("merge.jsonl" if layout == "jsonl" else "merge.json")
    write = (lambda rs: json.dumps(rs)) if layout == "json" else (lambda rs: "".join(json.dumps(r) + "\n" for r in rs))
    path.write_text(write(records))
    assert load_predictions(path) == make_predictions(3)
    del records[2]["pred"]
    path.write_text(write(records))
    with pytest.raises(ValueError, match=r"merge\.jsonl?(\[2\]|:3) \(id v_clip2_0\): record has no 'pred'"):
        load_predictions(path)
    records[2] = dict(records[0])
    path.write_text(write(records))
    with pytest.raises(ValueError, match="duplicate ids v_clip0_0"):
        load_predictions(path)


def load_cli():
    spec = importlib.util.spec_from_file_location("judge_video_qa", ROOT / "eval" / "judge_video_qa.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_cli_without_key_exits_before_work(server, tmp_path, monkeypatch, capsys):
    predictions = tmp_path / "merge.jsonl"
    predictions.write_text("".join(json.dumps(p) + "\n" for p in make_predictions(2)))
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    monkeypatch.setenv("OPENAI_BASE_URL", server.url)
    monkeypatch.setattr(sys, "argv", ["judge_video_qa.py", str(predictions)])
    with pytest.raises(SystemExit, match="set OPENAI_API_KEY") as exit_info:
        load_cli().main()
    assert exit_info.value.code != 0
    assert server.requests == [] and not (tmp_path / "judge").exists()


def test_cli_end_to_end(server, tmp_path):
    folder = tmp_path / "video"
    docs = video_docs(4)
    write_samples(
        folder / "llava-hf__llava-1.5-7b-hf" / "20240101_100000_samples_msrvtt_qa.jsonl",
        [lmms_eval_sample(i, d, d["answer"] if i < 3 else "wrong") for i, d in enumerate(docs)],
    )
    env = {**os.environ, "OPENAI_API_KEY": KEY, "OPENAI_BASE_URL": server.url, "no_proxy": "127.0.0.1"}
    command = [sys.executable, "eval/judge_video_qa.py", str(folder), "--retry-wait", "0", "--no-progress"]
    result = subprocess.run(command, cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr
    assert "msrvtt_qa: accuracy 75.0% score 4.25 (4 samples, 3 yes" in result.stdout
    summary = read_summary(folder / "judge" / "msrvtt_qa")
    assert summary["task"] == "msrvtt_qa" and summary["predictions"].endswith("_samples_msrvtt_qa.jsonl")
    assert (summary["accuracy"], summary["score"], summary["judge_model"]) == (0.75, 4.25, SERVED_MODEL)
