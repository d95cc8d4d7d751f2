"""Published LLaVA-1.5-7B numbers of the peer reducers, shown under the equal-budget comparison.

Reference rows only: other papers' own runs (their prompts, scoring and often their copy of each
other's numbers), not comparable digit for digit with ours. Each row names its source. Where a
source reports MME as perception + cognition (the ~1862 full-model value), the MME cell is shown
with "P+C"; ours is the perception score (Table 1 of the PruMerge paper).

Not found in a citable text source: FasterVLM's own tables (arXiv 2412.01818 v1 gives them only as
images; its README maps 75/90/95% reduction to 144/58/29 tokens), DivPrune's own rows at 64/128/192
(its paper evaluates ~56 tokens, ``SUBSET_RATIO=0.098``), and any random or pooling baseline.
"""

from __future__ import annotations

from dataclasses import dataclass

VISIONZIP = (
    "VisionZip (Yang et al., CVPR 2025, arXiv 2412.04467 v1), Table 1, training-free rows; "
    "read from a transcription of the arXiv tables and cross-checked against MMTok (arXiv 2508.18264) "
    "Table 1, which copies them"
)
DIVPRUNE_MMTOK = (
    "DivPrune run by MMTok (arXiv 2508.18264) Table 1 with DivPrune's official code "
    "(DivPrune's own paper reports ~56 tokens only)"
)


@dataclass(frozen=True)
class ReferenceRow:
    method: str
    tokens: int
    scores: dict[str, float]
    """benchmark (our BENCHMARKS names) → the published number, in the paper's units."""
    source: str
    mme_is_perception_plus_cognition: bool = True


REFERENCE_ROWS: tuple[ReferenceRow, ...] = (
    ReferenceRow("LLaVA-1.5-7B", 576, {"vqav2": 78.5, "sqa": 69.5, "textvqa": 58.2, "pope": 85.9, "mme": 1862, "mmbench": 64.7, "gqa": 61.9}, VISIONZIP),
    ReferenceRow("VisionZip", 192, {"vqav2": 76.8, "sqa": 68.9, "textvqa": 57.3, "pope": 85.3, "mme": 1782.6, "mmbench": 63.0, "gqa": 59.3}, VISIONZIP),
    ReferenceRow("VisionZip", 128, {"vqav2": 75.6, "sqa": 68.9, "textvqa": 56.8, "pope": 83.2, "mme": 1761.7, "mmbench": 62.0, "gqa": 57.6}, VISIONZIP),
    ReferenceRow("VisionZip", 64, {"vqav2": 72.4, "sqa": 69.0, "textvqa": 55.5, "pope": 77.0, "mme": 1690, "mmbench": 60.1, "gqa": 55.1}, VISIONZIP),
    ReferenceRow("DivPrune", 192, {"vqav2": 76.87, "sqa": 68.66, "textvqa": 56.97, "pope": 87.00, "mme": 1762.23, "mmbench": 62.54, "gqa": 59.97}, DIVPRUNE_MMTOK),
    ReferenceRow("DivPrune", 128, {"vqav2": 75.96, "sqa": 68.66, "textvqa": 56.06, "pope": 86.72, "mme": 1718.22, "mmbench": 62.03, "gqa": 59.25}, DIVPRUNE_MMTOK),
    ReferenceRow("DivPrune", 64, {"vqav2": 74.11, "sqa": 68.07, "textvqa": 54.69, "pope": 85.56, "mme": 1674.40, "mmbench": 59.28, "gqa": 57.78}, DIVPRUNE_MMTOK),
)  # fmt: skip
"""POPE is F1 (MMTok labels it so); the MMBench split is not stated by either source."""


def reference_markdown(benchmarks: list[str]) -> str:
    """The published rows for ``benchmarks`` (our names, in table order) as a markdown block."""
    from .tasks import BENCHMARKS

    if not benchmarks:
        return ""
    titles = [BENCHMARKS[b].title for b in benchmarks]
    lines = [
        "Published LLaVA-1.5-7B numbers (reference only: other papers' runs and scoring):",
        "",
        "| method | tokens | " + " | ".join(titles) + " | source |",
        "|---|---:|" + "---:|" * len(titles) + "---|",
    ]
    sources = list(dict.fromkeys(row.source for row in REFERENCE_ROWS))
    for row in REFERENCE_ROWS:
        cells = []
        for name in benchmarks:
            value = row.scores.get(name)
            text = "–" if value is None else f"{value:g}"
            if name == "mme" and value is not None and row.mme_is_perception_plus_cognition:
                text += " (P+C)"
            cells.append(text)
        lines.append(
            f"| {row.method} | {row.tokens} | " + " | ".join(cells) + f" | [{sources.index(row.source) + 1}] |"
        )
    lines += [""] + [f"[{i + 1}] {source}." for i, source in enumerate(sources)]
    lines += [
        "",
        "POPE: F1. MME (P+C): perception + cognition, not comparable with a perception score. "
        "FasterVLM's own numbers are published only as images (not transcribed here); no source "
        "found for random or pooling baselines.",
    ]
    return "\n".join(lines) + "\n"
