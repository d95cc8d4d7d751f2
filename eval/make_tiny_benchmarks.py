"""Write the tiny local benchmark copies (real photos, Hub schemas) used by the tests and the demo.

python eval/make_tiny_benchmarks.py outputs/tiny-benchmarks [--if-stale]
# Table 3's video QA copies (Video-ChatGPT's format, clips made from the photos) and a tiny
# random-weight Video-LLaVA to answer them
python eval/make_tiny_benchmarks.py outputs/tiny-video-benchmarks --video --video-model outputs/tiny-video-llava
"""

import argparse
from pathlib import Path

from llava_prumerge.tiny.benchmarks import tiny_benchmarks_current, write_tiny_benchmarks


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("root", help="output folder (one sub-folder per benchmark)")
    parser.add_argument("--if-stale", action="store_true", help="do nothing if an up-to-date copy is there")
    parser.add_argument("--video", action="store_true", help="write the video QA copies (MSVD/MSRVTT/ActivityNet-QA)")
    parser.add_argument("--video-model", help="with --video: also write a tiny Video-LLaVA checkpoint here")
    args = parser.parse_args()
    if args.video:
        from llava_prumerge.tiny.video_llava import write_tiny_video_llava
        from llava_prumerge.tiny.videos import tiny_video_benchmarks_current, write_tiny_video_benchmarks

        if args.if_stale and tiny_video_benchmarks_current(args.root):
            print(f"tiny video benchmarks in {args.root} are current")
        else:
            folders = write_tiny_video_benchmarks(args.root)
            print(f"tiny video benchmarks written: {', '.join(str(f) for f in folders.values())}")
        if args.video_model:  # cheap (random weights from a config): always rewritten
            print(f"tiny Video-LLaVA written to {write_tiny_video_llava(Path(args.video_model))}")
        return
    if args.video_model:
        parser.error("--video-model needs --video")
    if args.if_stale and tiny_benchmarks_current(args.root):
        print(f"tiny benchmarks in {args.root} are current")
        return
    print(f"tiny benchmarks written to {write_tiny_benchmarks(args.root)}")


if __name__ == "__main__":
    main()
