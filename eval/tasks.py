"""Write the task YAMLs one benchmark run needs and print its ``--tasks`` value.

    python eval/tasks.py --benchmark mme --out outputs/eval/run/mme/tasks [--local-data DIR]

With ``--local-data`` the tasks read ``DIR/<repo>`` (see ``eval/README.md``); the scripts in
``scripts/eval/`` call this, then ``lmms_eval --include_path <out> --tasks <printed>``.
"""

import argparse
import sys

from llava_prumerge.evaluation.tasks import BENCHMARKS, check_local_data, task_names, write_task_yamls


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--benchmark", required=True, choices=sorted(BENCHMARKS))
    parser.add_argument("--out", required=True, help="folder for the YAMLs (lmms-eval's --include_path)")
    parser.add_argument("--local-data", default=None, help="folder of local dataset copies, one per Hub repo")
    args = parser.parse_args()
    try:
        if args.local_data:
            check_local_data(args.benchmark, args.local_data)
        write_task_yamls(args.out, args.local_data)
    except FileNotFoundError as error:
        sys.exit(f"eval/tasks.py: {error}")
    print(",".join(task_names(args.benchmark, local=bool(args.local_data))))


if __name__ == "__main__":
    main()
