"""Write what the trained tiny testbed starts from (README, "The trained tiny testbed").

    python scripts/make_scene_testbed.py --output outputs/scenes [--small] [--seed 0]

Under ``--output``: ``data/`` (training scenes; ``captions.json`` for stage 1, ``instruct.json``
for stage 2 and the LoRA finetune), ``start/`` (BPE tokenizer + random tiny Llama, the pretrained
tiny CLIP tower, a random projector) and ``benchmarks/`` (fresh test scenes as local copies of
VQAv2, ScienceQA-IMG, TextVQA, POPE, MME and MMBench, plus ``scene_objects.json``) and ``example_scene.png`` (the README's picture). Work already
done for the same sizes and seed is skipped. ``--small``: the shortened testbed's test sets (the CI regression
test: fewer questions, more VQAv2 ones; the training is the same).
"""

import argparse
import random
import time
from pathlib import Path

from llava_prumerge.tiny.scenes import (
    SceneSetSizes,
    render_scene,
    sample_scene,
    scene_benchmarks_current,
    write_scene_benchmarks,
)
from llava_prumerge.tiny.testbed import TestbedSizes, write_start_point


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--output", default="outputs/scenes", help="folder to write into")
    parser.add_argument(
        "--small", action="store_true", help="the shortened testbed's test sets (the training is the same)"
    )
    parser.add_argument("--seed", type=int, default=0, help="seed of the scenes and the start weights")
    args = parser.parse_args()
    output = Path(args.output)
    started = time.time()
    for name, path in write_start_point(output, TestbedSizes(), seed=args.seed).items():
        print(f"{name:>15}: {path}")
    test_sizes = SceneSetSizes.small() if args.small else SceneSetSizes()
    benchmarks = output / "benchmarks"
    if not scene_benchmarks_current(benchmarks, test_sizes, seed=args.seed):
        write_scene_benchmarks(benchmarks, test_sizes, seed=args.seed)
    print(f"{'benchmarks':>15}: {benchmarks}")
    example = output / "example_scene.png"  # the scene of the README's kept-patch picture
    render_scene(sample_scene(random.Random(f"example-{args.seed}"), shapes=5, with_text=True)).save(example)
    print(f"{'example scene':>15}: {example}")
    print(f"testbed start written in {time.time() - started:.0f} s")


if __name__ == "__main__":
    main()
