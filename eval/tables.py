"""lmms-eval output folders → the paper's tables; also the scripts' success check.

    # Table 1 layout, several runs side by side, deltas against a baseline, markdown + CSV (+ wandb)
    python eval/tables.py table outputs/eval/none outputs/eval/prumerge outputs/eval/prumerge_plus \\
        --baseline none --markdown outputs/eval/table1.md --csv outputs/eval/table1.csv [--wandb-project P]
    # label=folder names a run differently from its folder
    python eval/tables.py table "LLaVA-1.5=outputs/eval/none" "PruMerge=outputs/eval/prumerge"
    # what scripts/eval/*.sh run after lmms-eval (which exits 0 even when it failed)
    python eval/tables.py check outputs/eval/prumerge/mme --tasks mme --since 1700000000
    # PruMerge's mean visual tokens on a benchmark (the equal-budget ablations of Table 4); several
    # benchmarks (comma-separated) or `all` (every benchmark of the folder) pool all their samples
    python eval/tables.py mean-tokens outputs/eval/prumerge --benchmark textvqa
    python eval/tables.py mean-tokens outputs/eval/scenes/prumerge --benchmark all
    # kept visual tokens against the number of objects in each sample's scene (scripts/eval/scenes.sh)
    python eval/tables.py objects outputs/eval/scenes/prumerge --objects DATA/scene_objects.json [--json PATH]
    # every setting's per-benchmark score and mean visual tokens in one JSON
    python eval/tables.py summary Full=outputs/eval/scenes/full PruMerge=outputs/eval/scenes/prumerge \
        --json outputs/eval/scenes/summary.json
    # the trained tiny testbed's targets (scripts/scenes.sh): measured values, thresholds, met or not
    python eval/tables.py targets outputs/eval/scenes [--json PATH] [--floor 85] [--strict]
    # the shortened testbed's accuracy regression floors (SMALL=1 scripts/scenes.sh; the CI test)
    python eval/tables.py regression /tmp/eval [--strict]
    # peers at equal budgets (scripts/eval/peers.sh): one table, deltas to the full model, published rows
    python eval/tables.py peers outputs/eval/peers/* --baseline none --markdown outputs/eval/peers/peers.md
    # Table 3 layout (video QA: judge accuracy and score, tokens per video and per frame)
    python eval/tables.py video outputs/eval/video/none outputs/eval/video/prumerge --markdown table3.md
"""

import argparse
import json
import sys
from pathlib import Path

from llava_prumerge.evaluation.peer_reference import reference_markdown
from llava_prumerge.evaluation.results import (
    build_table,
    check_run,
    load_run,
    log_to_wandb,
    mean_visual_tokens,
    object_count_correlation,
    run_benchmarks,
    runs_summary,
    to_csv,
    to_markdown,
)
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
    names = [b.strip() for b in args.benchmark.split(",") if b.strip()]
    if names == ["all"]:
        names = run_benchmarks(run)
    unknown = [b for b in names if b not in BENCHMARKS]
    if unknown or not names:
        sys.exit(
            f"eval/tables.py mean-tokens: unknown benchmark(s) {', '.join(unknown) or repr(args.benchmark)}; "
            f"expected {', '.join(BENCHMARKS)} (comma-separated) or all"
        )
    stats = mean_visual_tokens(run, names)
    if stats is None:
        sys.exit(f"{args.folder}: no visual-token records for {args.benchmark}")
    print(round(stats["mean"]))


def _write_json(path: str | None, data) -> None:
    if path:
        Path(path).parent.mkdir(parents=True, exist_ok=True)
        Path(path).write_text(json.dumps(data, indent=2) + "\n")


def _fmt(value, digits: int = 1) -> str:
    return "–" if value is None else f"{value:.{digits}f}"


def _objects(args) -> None:
    result = object_count_correlation(args.folder, args.objects)
    lines = [
        f"{args.folder}: kept visual tokens by objects in the scene ({result['samples']} samples)",
        "",
        "| objects | samples | mean tokens | min | max |",
        "|---:|---:|---:|---:|---:|",
    ]
    for entry in result["by_object_count"]:
        lines.append(
            f"| {entry['objects']} | {entry['samples']} | {entry['mean_tokens']:.1f} | "
            f"{entry['min_tokens']} | {entry['max_tokens']} |"
        )
    lines += ["", f"Pearson r (kept tokens, objects): {_fmt(result['pearson_r'], 3)}"]
    print("\n".join(lines))
    _write_json(args.json, result)


def _summary(args) -> None:
    summary = runs_summary(_runs(args.runs, load_run))
    print(json.dumps(summary, indent=2))
    _write_json(args.json, summary)


def _targets(args) -> None:
    from llava_prumerge.evaluation.targets import evaluate_targets, targets_json, targets_markdown

    targets = evaluate_targets(args.folder, floor=args.floor)
    print(f"{args.folder}: the trained tiny testbed's targets\n")
    print(targets_markdown(targets))
    if args.json:
        Path(args.json).write_text(targets_json(targets))
    missed = [t.name for t in targets if not t.met]
    if missed:
        print(f"\n{len(missed)} of {len(targets)} targets missed: {'; '.join(missed)}")
        if args.strict:
            sys.exit(1)


def _regression(args) -> None:
    from llava_prumerge.evaluation.targets import REGRESSION_FLOORS, regression_failures

    failures = regression_failures(args.folder)
    print(f"{args.folder}: {len(REGRESSION_FLOORS) - len(failures)} of {len(REGRESSION_FLOORS)} regression floors hold")
    for failure in failures:
        print(f"  missed: {failure}")
    if failures and args.strict:
        sys.exit(1)


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
    mean = commands.add_parser("mean-tokens", help="a run's mean visual tokens on benchmarks, rounded")
    mean.add_argument("folder")
    mean.add_argument(
        "--benchmark",
        required=True,
        help=f"one of {', '.join(BENCHMARKS)}; several, comma-separated; or all (every benchmark of the "
        "folder): the mean over all their samples",
    )
    objects = commands.add_parser("objects", help="kept visual tokens per object count, and their correlation")
    objects.add_argument("folder", help="run folder (its visual-token logs)")
    objects.add_argument("--objects", required=True, help="scene_objects.json: {task: {doc_id: object count}}")
    objects.add_argument("--json", help="write the result here")
    summary = commands.add_parser("summary", help="every run's per-benchmark score and mean tokens as JSON")
    summary.add_argument("runs", nargs="+", help="run folders, optionally LABEL=FOLDER")
    summary.add_argument("--json", help="write the summary here")
    targets = commands.add_parser("targets", help="the trained tiny testbed's targets (scripts/scenes.sh)")
    targets.add_argument("folder", help="the scripts/eval/scenes.sh output root (its summary.json)")
    targets.add_argument("--floor", type=float, default=85.0, help="accuracy floor of the yes/no and MC sets (%%)")
    targets.add_argument("--json", help="write the targets here")
    targets.add_argument("--strict", action="store_true", help="exit 1 when a target is missed")
    regression = commands.add_parser("regression", help="the shortened testbed's accuracy floors (SMALL=1)")
    regression.add_argument("folder", help="the scripts/eval/scenes.sh output root (its summary.json)")
    regression.add_argument("--strict", action="store_true", help="exit 1 when a floor is missed")
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
        handlers = {"table": _table, "check": _check, "mean-tokens": _mean_tokens, "video": _video, "peers": _peers}
        handlers |= {"objects": _objects, "summary": _summary, "targets": _targets, "regression": _regression}
        handlers[args.command](args)
    except (FileNotFoundError, ValueError, RuntimeError) as error:
        sys.exit(f"eval/tables.py {args.command}: {error}")


if __name__ == "__main__":
    main()
