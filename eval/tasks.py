"""Write the task YAMLs one benchmark run needs and print its ``--tasks`` value.

    python eval/tasks.py --benchmark mme --out outputs/eval/run/mme/tasks [--local-data DIR]
    # several image benchmarks in one lmms-eval call: their tasks, comma-joined
    python eval/tasks.py --benchmark vqav2,sqa,pope --out outputs/eval/run/tasks --local-data DIR

With ``--local-data`` the tasks read ``DIR/<repo>`` (see ``eval/README.md``); the scripts in
``scripts/eval/`` call this, then ``lmms_eval --include_path <out> --tasks <printed>``. The video
benchmarks of Table 3 (``msvd``, ``msrvtt``, ``activitynet``) always read local copies in
Video-ChatGPT's format (``DIR/MSVD-QA/test_q.json`` ...); ``--skip-missing-videos`` skips (and
counts) questions whose clip is missing instead of failing.
"""

import argparse
import sys

from llava_prumerge.evaluation.tasks import BENCHMARKS, check_local_data, task_names, write_task_yamls
from llava_prumerge.evaluation.video_tasks import VIDEO_BENCHMARKS, write_video_task


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument(
        "--benchmark",
        required=True,
        help=f"one of {', '.join(sorted(BENCHMARKS) + sorted(VIDEO_BENCHMARKS))}; "
        "or several image benchmarks, comma-separated",
    )
    parser.add_argument("--out", required=True, help="folder for the YAMLs (lmms-eval's --include_path)")
    parser.add_argument("--local-data", default=None, help="folder of local dataset copies, one per Hub repo")
    parser.add_argument(
        "--skip-missing-videos", action="store_true", help="video benchmarks: skip questions without a clip"
    )
    args = parser.parse_args()
    benchmarks = list(dict.fromkeys(b.strip() for b in args.benchmark.split(",") if b.strip()))
    unknown = [b for b in benchmarks if b not in BENCHMARKS and b not in VIDEO_BENCHMARKS]
    if not benchmarks or unknown:
        parser.error(
            f"argument --benchmark: invalid choice {', '.join(unknown) or repr(args.benchmark)} "
            f"(choose from {', '.join(sorted(BENCHMARKS) + sorted(VIDEO_BENCHMARKS))})"
        )
    if len(benchmarks) > 1 and any(b in VIDEO_BENCHMARKS for b in benchmarks):
        parser.error("argument --benchmark: the video benchmarks run one at a time")
    args.benchmark = benchmarks[0]
    if args.benchmark in VIDEO_BENCHMARKS:
        if not args.local_data:
            sys.exit(f"eval/tasks.py: {args.benchmark} reads a local copy: set LOCAL_DATA (--local-data DIR)")
        try:
            print(write_video_task(args.benchmark, args.local_data, args.out, args.skip_missing_videos))
        except (FileNotFoundError, ValueError) as error:
            sys.exit(f"eval/tasks.py: {error}")
        return
    try:
        if args.local_data:
            missing = []
            for benchmark in benchmarks:
                try:
                    check_local_data(benchmark, args.local_data)
                except FileNotFoundError as error:
                    missing.append(str(error))
            if missing:
                raise FileNotFoundError("; ".join(missing))
        write_task_yamls(args.out, args.local_data)
    except FileNotFoundError as error:
        sys.exit(f"eval/tasks.py: {error}")
    print(",".join(task for b in benchmarks for task in task_names(b, local=bool(args.local_data))))


if __name__ == "__main__":
    main()
