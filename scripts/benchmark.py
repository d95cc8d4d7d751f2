"""Measure what visual-token reduction saves, and what it costs, in one run (a benchmark, not a test).

    python scripts/benchmark.py --preset tiny                               # seconds, CPU
    python scripts/benchmark.py --preset small --batch-sizes 1 16           # CPU, realistic proportions
    python scripts/benchmark.py --preset llava-1.5-7b --device cuda --dtype bfloat16 --visual-tokens 40 \
        --batch-sizes 1 16 --clip-batch-sizes 1 16 --record docs/benchmarks.md   # GPU, a few minutes
    python scripts/benchmark.py --preset llava-1.5-7b --device cuda --dtype bfloat16 --weights llava-hf/llava-1.5-7b-hf
    python scripts/benchmark.py --preset video-tiny --batch-sizes 1 2 --visual-tokens 10   # Video-LLaVA, CPU
    python scripts/benchmark.py --preset next-tiny --batch-sizes 1 2 --visual-tokens 6     # LLaVA-NeXT, CPU
    python scripts/benchmark.py --preset llava-next-7b --device cuda --dtype bfloat16 --visual-tokens 32 \
        --batch-sizes 1 4                                           # GPU; --weights llava-hf/llava-v1.6-vicuna-7b-hf
    python scripts/benchmark.py --preset video-llava-7b --device cuda --dtype bfloat16 --visual-tokens 32 \
        --batch-sizes 1 4                                                   # GPU; --weights LanguageBind/Video-LLaVA-7B-hf

Random weights are fine for timing; with them the adaptive counts mean little, so
``--visual-tokens N`` forces N tokens per image for the reducing methods (a budget). The video presets
(``video-tiny``, ``video-llava-7b``) feed one 8-frame video per sample: visual tokens are counted per
video (stock: 8 x (N + CLS)) and per frame, and ``--visual-tokens N`` is a budget per frame (N patch
tokens, plus the frame's CLS, as Video-LLaVA feeds it). The LLaVA-NeXT presets (``next-tiny``,
``llava-next-7b``) feed one photo per sample resized to a square of two crop sides, so AnyRes takes
the base view and a 2×2 grid of crops and unpads nothing (the worst case; 576 + 48·48 + 48 newlines
= 2928 stock tokens for the 7B shapes, 64 + 16·16 + 16 = 336 for the tiny one): visual tokens are
counted per image as the LLM gets them (grid layout, newlines included) and per crop, and
``--visual-tokens N`` is a budget per crop (base view and every grid crop). The loop comparison and
``--clip-batch-sizes`` use LLaVA-1.5's CLIP-L/336 shapes with any preset. Writes ``results.json``, ``results.md`` and ``ttft_memory.png`` to ``--output-dir`` and prints the table and
the target checks: reduction share of the vision time, the batched reduction against the released
code's per-token loop at batch 16 (CLIP-L/336 shapes), prefill speedup against the FLOP ratio and
against the speedup of the prefill's matrix products alone (timed in the same run: what this device
allows for these shapes), and with ``--clip-batch-sizes 1 16`` the reduced CLIP-L/336 encoding
against the stock one. ``--record FILE`` appends the run (date, command, device) to a markdown record.
"""

from __future__ import annotations

import argparse
import datetime
import json
import platform
import sys
from pathlib import Path

import torch

from llava_prumerge import METHODS
from llava_prumerge.analysis.benchmark import (
    PRESETS,
    as_dicts,
    build_preset,
    clip_overhead,
    is_next_preset,
    is_video_preset,
    loop_comparison,
    markdown_table,
    measure,
    plot,
)
from llava_prumerge.config import PEER_METHODS, resolve_reduction


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--preset", default="tiny", choices=sorted(PRESETS))
    parser.add_argument("--methods", nargs="+", default=["none", "prumerge", "prumerge_plus"], choices=METHODS,
                        help="methods to time; the peers need --visual-tokens")  # fmt: skip
    parser.add_argument("--batch-sizes", type=int, nargs="+", default=[1, 4])
    parser.add_argument(
        "--visual-tokens",
        type=int,
        default=None,
        help="force this many tokens per image; with a video preset, patch tokens per frame (each frame's CLS "
        "on top); with a LLaVA-NeXT preset, tokens per crop (newlines on top)",
    )
    parser.add_argument("--repeats", type=int, default=3, help="timed repeats per measurement (medians)")
    parser.add_argument("--prompt-tokens", type=int, default=40, help="text tokens per prompt (paper Sec. 4.2: 40)")
    parser.add_argument("--new-tokens", type=int, default=8, help="tokens generated for the decode rate")
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--dtype", default="float32", choices=["float32", "float16", "bfloat16"])
    parser.add_argument("--attn-implementation", default="sdpa", choices=["sdpa", "eager", "flash_attention_2"])
    parser.add_argument(
        "--weights", default=None, help="load real weights from this HF id / dir (true-shape presets; see PRESETS)"
    )
    parser.add_argument("--loop-batch", type=int, default=16, help="batch of the loop comparison (0: skip)")
    parser.add_argument(
        "--clip-batch-sizes",
        type=int,
        nargs="*",
        default=[],
        help="also time the reduction's overhead on the full CLIP-L/336 tower at these batch sizes "
        "(LLaVA-1.5's tower, its own random model, whatever the preset)",
    )
    parser.add_argument(
        "--clip-peers",
        nargs="*",
        default=list(PEER_METHODS),
        choices=PEER_METHODS,
        help="with --clip-batch-sizes: also time these peers at 64 tokens beside PruMerge (default: all five)",
    )
    parser.add_argument("--output-dir", default="outputs/benchmark")
    parser.add_argument(
        "--record",
        default=None,
        metavar="MARKDOWN",
        help="also append this run (date, command, device, table, checks) to this file, e.g. docs/benchmarks.md",
    )
    args = parser.parse_args()
    if args.repeats < 1:
        parser.error("--repeats must be at least 1")
    if args.new_tokens < 2:
        parser.error("--new-tokens must be at least 2 (the decode rate is the time of tokens 2..N)")
    if args.weights and "weights" not in PRESETS[args.preset]:
        true_shape = sorted(name for name, spec in PRESETS.items() if "weights" in spec)
        parser.error(f"--weights needs a true-shape preset ({', '.join(true_shape)}), not {args.preset!r}")
    if any(b < 1 for b in args.batch_sizes + args.clip_batch_sizes) or args.loop_batch < 0:
        parser.error("batch sizes must be positive (--loop-batch 0 skips the loop comparison)")

    dtype = getattr(torch, args.dtype)
    model, processor = build_preset(args.preset, dtype, args.device, args.weights)
    model.set_attn_implementation(args.attn_implementation)
    rows = []
    try:  # a budget for every reducing method; spatial gets the nearest grid, visionzip its split
        reductions = [resolve_reduction(m, args.visual_tokens if m != "none" else None) for m in args.methods]
    except ValueError as error:
        parser.error(f"{error} (peers need --visual-tokens)")
    for batch_size in args.batch_sizes:
        for row in measure(model, processor, args.preset, reductions, batch_size, args.prompt_tokens,
                           args.new_tokens, args.repeats, args.device, dtype):  # fmt: skip
            rows.append(row)
            print(f"measured {row.method} batch {batch_size}: ttft {1000 * row.ttft_s:.1f} ms", flush=True)

    loop = None
    if args.loop_batch:  # CLIP-L/336 shapes (576 patches x 1024), whatever the preset
        loop = loop_comparison(args.loop_batch, repeats=args.repeats, device=args.device)
    overhead = []
    if args.clip_batch_sizes:
        overhead = clip_overhead(args.clip_batch_sizes, args.repeats, args.device, dtype, args.clip_peers)

    output = Path(args.output_dir)
    output.mkdir(parents=True, exist_ok=True)
    device_name = torch.cuda.get_device_name() if args.device.startswith("cuda") else platform.processor() or "CPU"
    header = (
        f"preset {args.preset}, {args.dtype}, {args.attn_implementation}, device {args.device} ({device_name}), "
        f"torch {torch.__version__}, {torch.get_num_threads()} threads, weights {args.weights or 'random'}"
    )
    table = markdown_table(rows)
    checks = []
    clip_l = model.config.vision_config.hidden_size == 1024 and model.config.vision_config.image_size == 336
    if is_video_preset(args.preset):
        share_target = "(video tower over every frame; the 2% target is LLaVA-1.5's, checked by --clip-batch-sizes)"
    elif is_next_preset(args.preset) and clip_l:
        share_target = "(tower and reduction over every crop; target <= 2%, as LLaVA-1.5's)"
    elif clip_l:
        share_target = "(target <= 2%)"
    else:
        share_target = "(tower narrower than CLIP-L/336; the 2% target is checked by --clip-batch-sizes)"
    for row in rows:
        if row.reduction_share is not None:
            checks.append(f"reduction share of vision time, {row.method} batch {row.batch_size}: "
                          f"{100 * row.reduction_share:.2f}% {share_target}")  # fmt: skip
    baseline = {r.batch_size: r for r in rows if r.method == "none"}
    for row in rows:
        base = baseline.get(row.batch_size)
        if base is not None and row is not base:
            speedup, ratio = base.prefill_s / row.prefill_s, base.prefill_flops / row.prefill_flops
            matmuls = base.matmul_s / row.matmul_s
            checks.append(f"prefill speedup {row.method} batch {row.batch_size}: {speedup:.2f}x of a FLOP ratio "
                          f"{ratio:.2f}x = {100 * speedup / ratio:.0f}% (target >= 80% on 'small'); the "
                          f"prefill's matmuls alone speed up {matmuls:.2f}x on this device "
                          f"({100 * matmuls / ratio:.0f}% of the FLOP ratio), the prefill reaches "
                          f"{100 * speedup / matmuls:.0f}% of that")  # fmt: skip
    for row in overhead:
        for name in ("prumerge", "prumerge_plus"):
            checks.append(f"CLIP-L/336 encoding, batch {row['batch_size']}: {name} takes {row[f'{name}_vs_none']:.3f}x "
                          f"the stock encoding (target <= 1.02x); the reduction alone is "
                          f"{100 * row[f'{name}_reduction_share']:.2f}% of the tower (target <= 2%)")  # fmt: skip
        for name in args.clip_peers:
            checks.append(f"CLIP-L/336, batch {row['batch_size']}: peer {name} at 64 tokens takes "
                          f"{row[f'{name}_vs_none']:.3f}x the stock encoding; its reduction alone is "
                          f"{100 * row[f'{name}_reduction_share']:.2f}% of the tower")  # fmt: skip
    if loop:
        checks.append(f"batched reduction vs the released per-token loop, batch {loop['batch_size']}, "
                      f"{loop['patches']} patches x {loop['width']}: {loop['speedup']:.1f}x faster "
                      f"(target >= 10x; max |difference| {loop['max_abs_difference']:.2e})")  # fmt: skip
    report = f"{header}\n\n{table}\n\n" + "\n".join(f"- {line}" for line in checks) + "\n"
    (output / "results.md").write_text(report)
    (output / "results.json").write_text(
        json.dumps({"setup": header, "rows": as_dicts(rows), "loop": loop, "clip_overhead": overhead}, indent=2)
    )
    plot(rows, output / "ttft_memory.png")
    print(report)
    print(f"wrote {output}/results.json, results.md, ttft_memory.png")
    if args.record:
        record(Path(args.record), device_name, report)
        print(f"appended the run to {args.record}")


def record(path: Path, device_name: str, report: str) -> None:
    """Append one run to a markdown record (created with a title if missing)."""
    command = " ".join(["python scripts/benchmark.py", *sys.argv[1:]])
    when = datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(
            "# Measured benchmarks\n\nRuns of `scripts/benchmark.py` recorded with `--record`; "
            "see the README's speed section for how to read them.\n"
        )
    with path.open("a") as handle:
        handle.write(f"\n## {when}: {device_name}\n\n```bash\n{command}\n```\n\n{report}")


if __name__ == "__main__":
    main()
