"""Write the embedded tiny setting to disk: a tiny LLaVA checkpoint, stage-2 stand-ins, a dataset.

    python scripts/make_tiny_assets.py --output outputs/tiny-assets

Everything is built locally (random weights from configs, photos from scikit-image); nothing is
downloaded. ``configs/train/tiny.yaml`` points at these paths.
"""

import argparse

from llava_prumerge.tiny.setting import tiny_assets_current, write_tiny_assets


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--output", default="outputs/tiny-assets", help="folder to write into")
    parser.add_argument("--seed", type=int, default=0, help="seed of the random weights")
    parser.add_argument("--if-stale", action="store_true", help="do nothing when current assets are there")
    args = parser.parse_args()
    if args.if_stale and tiny_assets_current(args.output):
        return
    for name, path in write_tiny_assets(args.output, seed=args.seed).items():
        print(f"{name:>15}: {path}")


if __name__ == "__main__":
    main()
