"""Video QA predictions → the GPT judge's accuracy and score (Table 3: MSVD-QA, MSRVTT-QA, ActivityNet-QA).

    # an lmms-eval output folder (run with --log_samples); --task picks one of its tasks
    OPENAI_API_KEY=... python eval/judge_video_qa.py outputs/eval/prumerge/video --task activitynetqa
    # Video-LLaVA's prediction records ({"id", "question", "answer", "pred"} as JSON or JSON lines)
    OPENAI_API_KEY=... python eval/judge_video_qa.py merge.jsonl --output outputs/judge/msvd
    # any OpenAI-compatible endpoint (OPENAI_BASE_URL works too)
    OPENAI_API_KEY=... python eval/judge_video_qa.py merge.jsonl --base-url http://localhost:8000/v1 --model M

Writes ``judged.jsonl`` (one line per sample, appended as it is judged; a re-run judges only the
rest) and, once every sample is judged, ``judge_summary.json`` into --output (default
``<folder>/judge/<task>``). The key is read from OPENAI_API_KEY only, never from the command line.
"""

import argparse
import logging
import os
import sys

from llava_prumerge.evaluation.judge import (
    DEFAULT_BASE_URL,
    DEFAULT_JUDGE_MODEL,
    JudgeError,
    default_output_dir,
    judge_predictions,
    load_predictions,
    resolve_predictions,
)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument(
        "predictions", help="lmms-eval output folder or samples file, or a Video-LLaVA predictions file"
    )
    parser.add_argument("--task", help="the lmms-eval task whose samples to judge (needed when the folder has several)")
    parser.add_argument(
        "--output", help="folder for judged.jsonl and judge_summary.json (default: <folder>/judge/<task>)"
    )
    parser.add_argument("--model", default=DEFAULT_JUDGE_MODEL, help="judge model (default: %(default)s, as Table 3)")
    parser.add_argument(
        "--base-url", help=f"Chat Completions base URL (default: $OPENAI_BASE_URL or {DEFAULT_BASE_URL})"
    )
    parser.add_argument("--concurrency", type=int, default=8, help="parallel requests (default: %(default)s)")
    parser.add_argument("--retries", type=int, default=5, help="retries of a failed request (default: %(default)s)")
    parser.add_argument(
        "--retry-wait",
        type=float,
        default=2.0,
        help="seconds before the first retry, doubling after (default: %(default)s)",
    )
    parser.add_argument("--timeout", type=float, default=60.0, help="seconds per request (default: %(default)s)")
    parser.add_argument("--restart", action="store_true", help="discard earlier judgements in --output and judge all")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    name = "eval/judge_video_qa.py"
    api_key = os.environ.get("OPENAI_API_KEY")
    if not api_key:
        sys.exit(f"{name}: set OPENAI_API_KEY (the judge needs the model; nothing was judged)")
    base_url = args.base_url or os.environ.get("OPENAI_BASE_URL") or DEFAULT_BASE_URL
    try:
        source, task = resolve_predictions(args.predictions, args.task)
        predictions = load_predictions(source, task)
        output = args.output or default_output_dir(args.predictions, task)
        print(f"judging {len(predictions)} predictions from {source} with {args.model} at {base_url} → {output}")
        summary = judge_predictions(
            predictions,
            output,
            model=args.model,
            base_url=base_url,
            api_key=api_key,
            concurrency=args.concurrency,
            retries=args.retries,
            retry_wait=args.retry_wait,
            timeout=args.timeout,
            restart=args.restart,
            progress=not args.no_progress,
            task=task,
            predictions_path=source,
        )
    except (FileNotFoundError, ValueError, JudgeError) as error:
        sys.exit(f"{name}: {error}")
    print(
        f"{task or source.name}: accuracy {summary['accuracy'] * 100:.1f}% score {summary['score']:.2f} "
        f"({summary['samples']} samples, {summary['yes']} yes, judge {summary['judge_model']})"
    )


if __name__ == "__main__":
    main()
