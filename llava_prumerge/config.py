"""`TokenReductionConfig`: every setting of the visual-token reduction, validated in one place.

The defaults are the authors' released code at batch size 1 (see ``shared/spec/prumerge.md``);
each deviation from the paper is a named field so that the paper's variants and the ablations of
Tables 4 and 5 stay one config value away.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

PEER_METHODS = ("fastervlm", "visionzip", "divprune", "random", "pooling")
"""Other papers' vision-side reducers, ported for equal-budget comparisons (:mod:`llava_prumerge.peers`)."""
METHODS = ("prumerge", "prumerge_plus", "aits", "sequential", "spatial", "none", *PEER_METHODS)
"""Reduction methods. ``prumerge`` (Sec. 3.2-3.3), ``prumerge_plus`` (Sec. 3.4), ``aits``
(selection only, Table 5 "w. AITS"), ``sequential`` and ``spatial`` (Table 4 baselines), ``none``
(all tokens: the unchanged LLaVA-1.5); the peers :data:`PEER_METHODS` need a ``budget``."""

MERGING_METHODS = ("prumerge", "prumerge_plus")
SCOPES = ("image", "batch", "video")
"""Where the IQR fence of the adaptive count is computed (:attr:`TokenReductionConfig.scope`)."""
ATTENTION_METHODS = ("prumerge", "prumerge_plus", "aits")


@dataclass
class TokenReductionConfig:
    """How the visual tokens of each image are reduced before they reach the language model.

    With ``budget=None`` the selecting methods are adaptive: the kept count follows the IQR
    outlier count of each image's CLS attention (Sec. 3.2). With ``budget=B`` every method
    outputs exactly ``B`` tokens per image, the summary token included, so that methods can be
    compared at equal token counts. For ``prumerge_plus`` a budget keeps the adaptive method's
    1 : 3 split: ``max(1, round((B - 1) / 4))`` tokens by attention, the rest of the ``B - 1``
    spatially (evenly over the not-selected patches in raster order), then the summary token.

    ``knn`` larger than ``N - 1`` (images with fewer patches than neighbours) is clamped to
    ``N - 1``: every other patch is a neighbour. ``budget`` larger than ``N`` is an error, raised
    when the image's ``N`` is known (in :func:`llava_prumerge.reduce_visual_tokens`).
    """

    method: str = field(
        default="prumerge",
        metadata={
            "help": f"One of {METHODS}. PruMerge Sec. 3.2-3.3; PruMerge+ Sec. 3.4; "
            "aits = Table 5 'w. AITS'; sequential/spatial = Table 4; none = all tokens."
        },
    )
    knn: int = field(
        default=32,
        metadata={
            "help": "Neighbours merged into each kept token (Sec. 3.3, Algorithm 1 line 9; "
            "32 in the released code). Clamped to N-1."
        },
    )
    iqr_scale: float = field(
        default=1.5,
        metadata={"help": "Upper fence = Q3 + iqr_scale * (Q3 - Q1) (Sec. 3.2)."},
    )
    scope: str = field(
        default="image",
        metadata={
            "help": "'image': fence and count per image (batch-invariant, default). "
            "'batch': fence over the whole batch and one shared count, as the released "
            "code's training runs did (spec Sec. 2). 'video' (Video-LLaVA): one fence over "
            "all frames of a video, each frame keeping its own patches above it (batch-"
            "invariant; for images the same as 'image')."
        },
    )
    budget: int | None = field(
        default=None,
        metadata={
            "help": "Exact number of output tokens per image (summary token included); "
            "None = adaptive (Sec. 3.2). Required for 'sequential'."
        },
    )
    grid: tuple[int, int] | None = field(
        default=None,
        metadata={
            "help": "(rows, cols) of patches evenly spread over the image for 'spatial' "
            "(Table 4: 5x8, 8x5, 6x6, 4x4 ...)."
        },
    )
    merge: str = field(
        default="sum",
        metadata={
            "help": "'sum': y_i = x_i + sum_j a_j x_j, the released code (spec Sec. 4). "
            "'mean': attention-weighted average over centre and neighbours, the paper's "
            "'weighted averaging' (Sec. 3.3)."
        },
    )
    attention: str = field(
        default="single_head",
        metadata={
            "help": "'single_head': one softmax over the full width, the released code "
            "(spec Sec. 1). 'per_head': per-head CLS attention averaged over heads "
            "(Eq. 3.2 read per head)."
        },
    )
    keep_frame_cls: bool = field(
        default=True,
        metadata={
            "help": "Video-LLaVA only: feed each frame's CLS token in front of its reduced tokens, "
            "as the stock model feeds it (257 tokens per frame); False drops it."
        },
    )
    dominant: int | None = field(
        default=None,
        metadata={
            "help": "visionzip: dominant tokens (the CLS + dominant-1 patches by block-22 CLS attention); "
            "with contextual. Default from the budget: 64 = 54+10 (VisionZip's README), 128 = 108+20, "
            "192 = 162+30, else dominant = round(budget*54/64)."
        },
    )
    contextual: int | None = field(
        default=None, metadata={"help": "visionzip: contextual (merged) tokens; dominant + contextual = budget."}
    )
    keep_ratio: float | None = field(
        default=None,
        metadata={"help": "divprune: keep round(keep_ratio * N) tokens (DivPrune's ratio) instead of a budget."},
    )
    seed: int = field(default=0, metadata={"help": "random: global seed, mixed with a hash of each image."})
    min_keep: int = field(
        default=1,
        metadata={
            "help": "Least number of attention-selected tokens when the IQR finds no "
            "outlier, e.g. constant attention (spec Sec. 2, degenerate case)."
        },
    )

    def __post_init__(self) -> None:
        if isinstance(self.grid, list):
            self.grid = tuple(self.grid)
        self.validate()

    def validate(self) -> None:
        """Raise ``ValueError`` naming the field for any unknown or inconsistent value."""
        if self.method not in METHODS:
            raise ValueError(f"TokenReductionConfig.method={self.method!r}: expected one of {METHODS}")
        _check_int("knn", self.knn, minimum=1)
        _check_int("min_keep", self.min_keep, minimum=1)
        if isinstance(self.iqr_scale, bool) or not isinstance(self.iqr_scale, (int, float)):
            raise ValueError(f"TokenReductionConfig.iqr_scale={self.iqr_scale!r}: expected a number")
        if not math.isfinite(self.iqr_scale) or self.iqr_scale < 0:
            raise ValueError(f"TokenReductionConfig.iqr_scale={self.iqr_scale!r}: expected a finite number >= 0")
        if self.scope not in SCOPES:
            raise ValueError(f"TokenReductionConfig.scope={self.scope!r}: expected one of {SCOPES}")
        if not isinstance(self.keep_frame_cls, bool):
            raise ValueError(f"TokenReductionConfig.keep_frame_cls={self.keep_frame_cls!r}: expected true or false")
        if self.merge not in ("sum", "mean"):
            raise ValueError(f"TokenReductionConfig.merge={self.merge!r}: expected 'sum' or 'mean'")
        if self.attention not in ("single_head", "per_head"):
            raise ValueError(f"TokenReductionConfig.attention={self.attention!r}: expected 'single_head' or 'per_head'")
        if self.budget is not None:
            least = 2 if self.method in MERGING_METHODS else 1
            _check_int("budget", self.budget, minimum=least)
            if self.method == "none":
                raise ValueError("TokenReductionConfig: method='none' keeps every token; budget must be None")
        if self.grid is not None:
            if self.method != "spatial":
                raise ValueError(f"TokenReductionConfig.grid is only used by method='spatial', not {self.method!r}")
            if not (isinstance(self.grid, tuple) and len(self.grid) == 2):
                raise ValueError(f"TokenReductionConfig.grid={self.grid!r}: expected (rows, cols)")
            for value in self.grid:
                _check_int("grid", value, minimum=1)
        if self.method == "spatial":
            if self.grid is None:
                raise ValueError("TokenReductionConfig: method='spatial' needs grid=(rows, cols)")
            if self.budget is not None and self.budget != self.grid[0] * self.grid[1]:
                raise ValueError(
                    f"TokenReductionConfig: budget={self.budget} disagrees with grid={self.grid} "
                    f"({self.grid[0] * self.grid[1]} tokens)"
                )
        if self.method == "sequential" and self.budget is None:
            raise ValueError("TokenReductionConfig: method='sequential' needs a budget (tokens to keep)")
        self._validate_peer()

    def _validate_peer(self) -> None:
        if self.method != "visionzip" and (self.dominant is not None or self.contextual is not None):
            raise ValueError(
                f"TokenReductionConfig.dominant/contextual are only used by visionzip, not {self.method!r}"
            )
        if self.method != "divprune" and self.keep_ratio is not None:
            raise ValueError(f"TokenReductionConfig.keep_ratio is only used by divprune, not {self.method!r}")
        _check_int("seed", self.seed, minimum=0)
        if self.method == "visionzip":
            if (self.dominant is None) != (self.contextual is None):
                raise ValueError("TokenReductionConfig: visionzip needs both dominant and contextual, or neither")
            if self.dominant is not None:
                _check_int("dominant", self.dominant, minimum=1)
                _check_int("contextual", self.contextual, minimum=0)
                if self.budget is not None and self.budget != self.dominant + self.contextual:
                    raise ValueError(
                        f"TokenReductionConfig: budget={self.budget} disagrees with dominant={self.dominant} "
                        f"+ contextual={self.contextual}"
                    )
            elif self.budget is None:
                raise ValueError("TokenReductionConfig: method='visionzip' needs a budget (or dominant and contextual)")
        if self.method == "divprune":
            if self.keep_ratio is not None:
                if isinstance(self.keep_ratio, bool) or not isinstance(self.keep_ratio, (int, float)):
                    raise ValueError(f"TokenReductionConfig.keep_ratio={self.keep_ratio!r}: expected a number")
                if not 0 < self.keep_ratio <= 1:
                    raise ValueError(f"TokenReductionConfig.keep_ratio={self.keep_ratio!r}: expected 0 < ratio <= 1")
                if self.budget is not None:
                    raise ValueError("TokenReductionConfig: divprune takes a budget or a keep_ratio, not both")
            elif self.budget is None:
                raise ValueError("TokenReductionConfig: method='divprune' needs a budget or a keep_ratio")
        if self.method in ("fastervlm", "random", "pooling") and self.budget is None:
            raise ValueError(f"TokenReductionConfig: method={self.method!r} needs a budget (tokens to keep)")

    @property
    def visionzip_split(self) -> tuple[int, int]:
        """``(dominant, contextual)`` of ``visionzip``: the fields, else the budget's standard split."""
        if self.dominant is not None:
            return self.dominant, self.contextual
        from .peers import visionzip_split

        return visionzip_split(self.budget)

    @property
    def output_count(self) -> int | None:
        """Tokens per image when fixed by the config, else None (adaptive, or divprune's ratio of N)."""
        if self.method == "spatial":
            return self.grid[0] * self.grid[1]
        if self.method == "pooling":
            rows, cols = spatial_grid_for(self.budget)
            return rows * cols
        if self.method == "visionzip":
            return sum(self.visionzip_split)
        return self.budget

    def to_dict(self) -> dict[str, Any]:
        """JSON-serialisable dict (as stored in ``model.config.token_reduction``)."""
        values = dataclasses.asdict(self)
        if values["grid"] is not None:
            values["grid"] = list(values["grid"])
        return values

    @classmethod
    def from_dict(cls, values: dict[str, Any]) -> TokenReductionConfig:
        """Build from a dict; unknown keys are an error, not silently dropped."""
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(values) - known)
        if unknown:
            raise ValueError(f"TokenReductionConfig: unknown field(s) {unknown}; known fields are {sorted(known)}")
        return cls(**values)

    @classmethod
    def from_yaml(cls, path: str | Path) -> TokenReductionConfig:
        """Load a YAML mapping of fields (e.g. ``llava_prumerge/configs/reduction/prumerge_plus.yaml``)."""
        import yaml

        path = Path(path)
        values = yaml.safe_load(path.read_text()) or {}
        if not isinstance(values, dict):
            raise ValueError(f"{path}: expected a mapping of TokenReductionConfig fields, got {type(values).__name__}")
        try:
            return cls.from_dict(values)
        except (TypeError, ValueError) as error:
            raise ValueError(f"{path}: {error}") from error

    @classmethod
    def coerce(cls, value: TokenReductionConfig | dict[str, Any] | str | Path | None) -> TokenReductionConfig:
        """Accept a config, a dict, a method name, a named config, a YAML path, or None (PruMerge).

        The one resolver of reduction names for the model, training and evaluation:
        :func:`resolve_reduction` with no budget.
        """
        return resolve_reduction(value)


NAMED_CONFIG_DIR = "configs/reduction"
"""Named reduction configs, shipped inside the package (``llava_prumerge/configs/reduction``)."""


def named_configs() -> dict[str, Path]:
    """The packaged reduction YAMLs by name (``prumerge_budget64`` → its file).

    Read through ``importlib.resources``, so names resolve after a non-editable install and from
    any working directory.
    """
    from importlib.resources import files

    folder = files("llava_prumerge").joinpath(NAMED_CONFIG_DIR)
    return {Path(entry.name).stem: Path(str(entry)) for entry in folder.iterdir() if entry.name.endswith(".yaml")}


def resolve_reduction(
    value: TokenReductionConfig | dict[str, Any] | str | Path | None,
    budget: int | None = None,
    base: TokenReductionConfig | None = None,
) -> TokenReductionConfig:
    """Turn whatever a user wrote into a :class:`TokenReductionConfig`; the only name resolver.

    ``value`` is a config, a dict of fields, a method (``prumerge``), a packaged named config
    (``prumerge_budget64``, :func:`named_configs`), or a YAML path; ``None`` means ``base`` (e.g.
    an adapter's saved reduction), else the default PruMerge. ``budget`` sets
    :attr:`TokenReductionConfig.budget` on top (exactly that many tokens per image); for
    ``spatial`` it picks the grid instead (:func:`spatial_grid_for`). Errors name the value.
    """
    if value is None:
        values = (base or TokenReductionConfig()).to_dict()
    elif isinstance(value, TokenReductionConfig):
        values = value.to_dict()
    elif isinstance(value, dict):
        values = dict(value)
    elif isinstance(value, (str, Path)):
        text = str(value)
        named = named_configs()
        if text in METHODS:
            values = {"method": text}  # built below, after the budget (sequential needs one)
        elif text in named:
            values = TokenReductionConfig.from_yaml(named[text]).to_dict()
        elif text.endswith((".yaml", ".yml")) or Path(text).is_file():
            if not Path(text).is_file():
                raise FileNotFoundError(f"reduction config not found: {text}")
            values = TokenReductionConfig.from_yaml(text).to_dict()
        else:
            raise ValueError(
                f"reduction={text!r} is neither a method ({', '.join(METHODS)}), a named config "
                f"({', '.join(sorted(named))}), nor a YAML file"
            )
    else:
        raise TypeError(f"cannot build a TokenReductionConfig from {type(value).__name__}")
    if budget is not None:
        if values.get("method") == "spatial":
            values["grid"], values["budget"] = spatial_grid_for(int(budget)), None
        else:
            values["budget"] = int(budget)
        if values.get("method") == "visionzip":  # the budget's standard split, not a saved one
            values["dominant"] = values["contextual"] = None
        if values.get("method") == "divprune":
            values["keep_ratio"] = None
    try:
        return TokenReductionConfig.from_dict(values)
    except ValueError as error:
        if budget is None and not isinstance(value, (str, Path)):
            raise
        raise ValueError(f"reduction={value!r}, budget={budget!r}: {error}") from error


def spatial_grid_for(budget: int) -> tuple[int, int]:
    """A ``(rows, cols)`` grid with about ``budget`` cells, for ``spatial`` at an equal budget (Table 4).

    The most square exact factorisation with ``cols <= 2 * rows`` (40 → 5 x 8, 16 → 4 x 4, as the
    paper's Table 4); when none exists (primes, e.g. 37), the near-square grid whose size is
    closest to ``budget`` (37 → 6 x 6 = 36). The run's recorded token counts show the exact size.
    """
    _check_int("budget", budget, minimum=1)
    exact = [(r, budget // r) for r in range(1, int(math.isqrt(budget)) + 1) if budget % r == 0]
    rows, cols = exact[-1]
    if cols <= 2 * rows:
        return rows, cols
    side = max(1, round(math.sqrt(budget)))
    candidates = [(r, c) for r in (side - 1, side, side + 1) for c in (r, r + 1) if r >= 1]
    return min(candidates, key=lambda rc: (abs(rc[0] * rc[1] - budget), rc[1] - rc[0]))


def _check_int(name: str, value: Any, minimum: int) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise ValueError(f"TokenReductionConfig.{name}={value!r}: expected an integer >= {minimum}")
