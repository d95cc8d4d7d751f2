"""lmms-eval output folders → the paper's tables; also the scripts' success check.

    # Table 1 layout, several runs side by side, deltas against a baseline, markdown + CSV (+ wandb)
    python eval/tables.py table outputs/eval/none outputs/eval/prumerge outputs/eval/prumerge_plus \\
        --baseline none --markdown outputs/eval/table1.md --csv outputs/eval/table1.csv [--wandb-project P]
    # label=folder names a run differently from its folder
    python eval/tables.py table "LLaVA-1.5=outputs/eval/none" "PruMerge=outputs/eval/prumerge"
    # what scripts/eval/*.sh run after lmms-eval (which exits 0 even when it failed)
    python eval/tables.py check outputs/eval/prumerge/mme --tasks mme --since 1700000000
    # PruMerge's mean visual tokens on a benchmark (the equal-budget ablations of Table 4)
    python eval/tables.py mean-tokens outputs/eval/prumerge --benchmark textvqa
    # peers at equal budgets (scripts/eval/peers.sh): one table, deltas to the full model, published rows
    python eval/tables.py peers outputs/eval/peers/* --baseline none --markdown outputs/eval/peers/peers.md
    # Table 3 layout (video QA: judge accuracy and score, tokens per video and per frame)
    python eval/tables.py video outputs/eval/video/none outputs/eval/video/prumerge --markdown table3.md
"""

import argparse
import sys
from pathlib import Path

from llava_prumerge.evaluation.peer_reference import reference_markdown
from llava_prumerge.evaluation.results import build_table, check_run, load_run, log_to_wandb, to_csv, to_markdown
from llava_prumerge.evaluation.tasks import BENCHMARKS
from llava_prumerge.evaluation.video_results import load_video_run, video_markdown, video_rows

BENCHMARKS_BY_TITLE = {b.title: name for name, b in BENCHMARKS.items()}


def _runs(specs: list[str], loader) -> list:
    """``FOLDER`` or ``LABEL=FOLDER`` arguments, each loaded with ``loader(folder, label)``."""
    runs = []
    for spec in specs:
        label, _, folder = spec.rpartition("=") if "=" in spec else (None, "", spec)
        runs.append(loader(folder, label or None))
    return runs


def _write(markdown: str, rows: list[dict], args) -> None:
    """Print the table; write it to ``--markdown`` and the long-form rows to ``--csv`` when given."""
    print(markdown)
    for path, text in ((args.markdown, markdown), (args.csv, to_csv(rows) if args.csv else "")):
        if path:
            Path(path).parent.mkdir(parents=True, exist_ok=True)
            Path(path).write_text(text)


def _table(args) -> None:
    titles, rows = build_table(_runs(args.runs, load_run), args.baseline)
    _write(to_markdown(titles, rows, args.baseline), rows, args)
    if args.wandb_project:
        log_to_wandb(rows, args.wandb_project, args.wandb_name, args.wandb_dir)


def _peers(args) -> None:
    titles, rows = build_table(_runs(args.runs, load_run), args.baseline)
    published = reference_markdown([BENCHMARKS_BY_TITLE[t] for t in titles])
    _write(to_markdown(titles, rows, args.baseline) + "\n" + published, rows, args)


def _video(args) -> None:
    runs = _runs(args.runs, load_video_run)
    _write(video_markdown(runs), video_rows(runs), args)


def _check(args) -> None:
    summary = check_run(args.folder, [t for t in args.tasks.split(",") if t], args.since)
    for task, values in summary.items():
        tokens = values["visual_tokens"]
        shown = {k: v for k, v in values["metrics"].items() if isinstance(v, (int, float))}
        extra = (
            ""
            if tokens is None
            else f"  visual tokens mean {tokens['mean']:.1f} (min {tokens['min']}, max {tokens['max']})"
        )
        print(f"{task}: {shown}{extra}")


def _mean_tokens(args) -> None:
    run = load_run(args.folder)
    stats = run.token_stats(BENCHMARKS[args.benchmark].score_tasks)
    if stats is None:
        sys.exit(f"{args.folder}: no visual-token records for {args.benchmark}")
    print(round(stats["mean"]))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    commands = parser.add_subparsers(dest="command", required=True)
    table = commands.add_parser("table", help="the paper's Table 1 layout for one or more run folders")
    table.add_argument("runs", nargs="+", help="run folders, optionally LABEL=FOLDER")
    table.add_argument("--baseline", help="run label the deltas are taken against")
    table.add_argument("--markdown", help="write the markdown table here")
    table.add_argument("--csv", help="write the long-form CSV here")
    table.add_argument("--wandb-project", help="also log the table to this W&B project")
    table.add_argument("--wandb-name", help="W&B run name")
    table.add_argument("--wandb-dir", help="W&B run directory")
    check = commands.add_parser("check", help="fail unless lmms-eval wrote results for every task")
    check.add_argument("folder")
    check.add_argument("--tasks", required=True, help="comma-separated task/group names given to lmms-eval")
    check.add_argument("--since", type=float, required=True, help="epoch seconds when the run started")
    mean = commands.add_parser("mean-tokens", help="a run's mean visual tokens on one benchmark, rounded")
    mean.add_argument("folder")
    mean.add_argument("--benchmark", required=True, choices=sorted(BENCHMARKS))
    peers = commands.add_parser("peers", help="equal-budget comparison with the peers' published rows")
    peers.add_argument("runs", nargs="+", help="run folders (scripts/eval/peers.sh), optionally LABEL=FOLDER")
    peers.add_argument("--baseline", help="run label the deltas are taken against (the full model: none)")
    peers.add_argument("--markdown", help="write the markdown table here")
    peers.add_argument("--csv", help="write the long-form CSV here")
    video = commands.add_parser("video", help="the paper's Table 3 layout for video run folders")
    video.add_argument("runs", nargs="+", help="video run folders, optionally LABEL=FOLDER")
    video.add_argument("--markdown", help="write the markdown table here")
    video.add_argument("--csv", help="write the long-form CSV here")
    args = parser.parse_args()
    try:
        {"table": _table, "check": _check, "mean-tokens": _mean_tokens, "video": _video, "peers": _peers}[args.command](
            args
        )
    except (FileNotFoundError, ValueError, RuntimeError) as error:
        sys.exit(f"eval/tables.py {args.command}: {error}")


if __name__ == "__main__":
    main()
