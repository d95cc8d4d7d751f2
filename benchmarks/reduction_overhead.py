"""What the reduction costs: CLIP-ViT-L/14-336 image encoding with and without PruMerge.

    python benchmarks/reduction_overhead.py                      # batch 1 and 16, fp32, CPU
    python benchmarks/reduction_overhead.py --batch-sizes 1 --repeats 5

Random weights at the true shapes (24 blocks, width 1024, 16 heads, 576 patches; the last block's
q/k scaled so that the CLS attention is peaked like a trained CLIP's). For each batch size it
times, interleaved and after a warm-up, the median of:

- ``none``: the stock LLaVA-1.5 encoding (full tower, ``hidden_states[-2]``, CLS dropped);
- ``prumerge`` (budget 32) and ``prumerge_plus`` (budget 144): this package's encoding, which
  runs the blocks up to the feature layer, the consuming block's layer norm and q/k, then reduces;
- ``reduction only``: :func:`reduce_visual_tokens` on precomputed features/q/k;

and prints each one's ratio to ``none``. The projector is left out of every timing (it would favour
the reduced methods, which project fewer tokens).
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch
from transformers import CLIPVisionConfig, LlamaConfig, LlavaConfig

from llava_prumerge import LlavaPruMergeForConditionalGeneration, TokenReductionConfig, reduce_visual_tokens
from llava_prumerge.tiny import sharpen_cls_attention

METHODS = {
    "prumerge": TokenReductionConfig(method="prumerge", budget=32),
    "prumerge_plus": TokenReductionConfig(method="prumerge_plus", budget=144),
}


def clip_l_336_llava() -> LlavaPruMergeForConditionalGeneration:
    """LLaVA-1.5's vision tower at full size; a 1-layer toy language model (not timed)."""
    vision = CLIPVisionConfig(
        hidden_size=1024,
        intermediate_size=4096,
        num_hidden_layers=24,
        num_attention_heads=16,
        image_size=336,
        patch_size=14,
        projection_dim=768,
        hidden_act="quick_gelu",
    )
    text = LlamaConfig(
        hidden_size=64,
        intermediate_size=128,
        num_hidden_layers=1,
        num_attention_heads=4,
        num_key_value_heads=4,
        vocab_size=128,
    )
    config = LlavaConfig(vision_config=vision.to_dict(), text_config=text.to_dict(), image_token_id=127)
    torch.manual_seed(0)
    model = LlavaPruMergeForConditionalGeneration(config).eval()
    sharpen_cls_attention(model, 4.0)
    return model


def stock_encode(model, pixels):
    hidden = model.model.vision_tower(pixels, output_hidden_states=True).hidden_states[-2]
    return hidden[:, 1:]


def median_seconds(fn, repeats: int) -> float:
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--batch-sizes", type=int, nargs="+", default=[1, 16])
    parser.add_argument("--repeats", type=int, default=5, help="timed rounds per method (medians reported)")
    parser.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's choice)")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    model = clip_l_336_llava()
    tower = model.model.vision_tower
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, fp32, CPU; CLIP-ViT-L/14-336 random weights")
    print(f"{'batch':>5} {'method':>15} {'median s':>10} {'vs none':>8}")
    with torch.inference_mode():
        for batch in args.batch_sizes:
            pixels = torch.randn(batch, 3, 336, 336)
            runs = {"none": lambda: stock_encode(model, pixels)}
            for name, config in METHODS.items():
                runs[name] = lambda config=config: _reduce(model, config, pixels)
            for fn in runs.values():  # warm-up
                fn()
            rounds = {name: [] for name in runs}
            for _ in range(args.repeats):  # interleaved so that drift hits every method alike
                for name, fn in runs.items():
                    rounds[name].append(median_seconds(fn, 1))
            medians = {name: statistics.median(values) for name, values in rounds.items()}

            hidden = tower(pixels, output_hidden_states=True).hidden_states[-2]
            block = tower.encoder.layers[-1]
            normed = block.layer_norm1(hidden)
            q, k = block.self_attn.q_proj(normed), block.self_attn.k_proj(normed)
            for name, config in METHODS.items():
                medians[f"{name} (reduce only)"] = median_seconds(
                    lambda config=config: reduce_visual_tokens(hidden[:, 1:], q, k, config), args.repeats
                )
            for name, seconds in medians.items():
                print(f"{batch:>5} {name:>15} {seconds:>10.4f} {seconds / medians['none']:>8.3f}")


def _reduce(model, config, pixels):
    model.set_token_reduction(config)
    return model.reduce_image_tokens(pixels)


if __name__ == "__main__":
    main()
