"""Write the tiny local benchmark copies (real photos, Hub schemas) used by the tests and the demo.

python eval/make_tiny_benchmarks.py outputs/tiny-benchmarks [--if-stale]
"""

import argparse

from llava_prumerge.tiny.benchmarks import tiny_benchmarks_current, write_tiny_benchmarks


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("root", help="output folder (one sub-folder per benchmark)")
    parser.add_argument("--if-stale", action="store_true", help="do nothing if an up-to-date copy is there")
    args = parser.parse_args()
    if args.if_stale and tiny_benchmarks_current(args.root):
        print(f"tiny benchmarks in {args.root} are current")
        return
    print(f"tiny benchmarks written to {write_tiny_benchmarks(args.root)}")


if __name__ == "__main__":
    main()
