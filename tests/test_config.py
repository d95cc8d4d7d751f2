"""TokenReductionConfig: defaults, validation and serialisation."""

import pytest

from llava_prumerge import TokenReductionConfig


def test_defaults_follow_the_released_code():
    config = TokenReductionConfig()
    assert (config.method, config.knn, config.iqr_scale, config.scope) == ("prumerge", 32, 1.5, "image")
    assert (config.budget, config.grid, config.merge, config.attention, config.min_keep) == (
        None,
        None,
        "sum",
        "single_head",
        1,
    )


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"method": "tome"}, "method"),
        ({"method": "spatial"}, "grid"),
        ({"method": "sequential"}, "budget"),
        ({"method": "spatial", "grid": (4, 4), "budget": 15}, "disagrees"),
        ({"method": "prumerge", "grid": (4, 4)}, "grid"),
        ({"method": "none", "budget": 8}, "budget"),
        ({"knn": 0}, "knn"),
        ({"knn": 2.5}, "knn"),
        ({"budget": 1}, "budget"),
        ({"budget": True}, "budget"),
        ({"iqr_scale": -1.0}, "iqr_scale"),
        ({"iqr_scale": float("nan")}, "iqr_scale"),
        ({"scope": "dataset"}, "scope"),
        ({"merge": "max"}, "merge"),
        ({"attention": "last_head"}, "attention"),
        ({"min_keep": 0}, "min_keep"),
        ({"method": "spatial", "grid": (4,)}, "grid"),
    ],
)
def test_bad_values_raise_naming_the_field(kwargs, message):
    with pytest.raises(ValueError, match=message):
        TokenReductionConfig(**kwargs)


def test_round_trip_and_unknown_keys():
    config = TokenReductionConfig(method="spatial", grid=(5, 8))
    values = config.to_dict()
    assert values["grid"] == [5, 8]
    assert TokenReductionConfig.from_dict(values) == config
    with pytest.raises(ValueError, match="unknown field"):
        TokenReductionConfig.from_dict({"method": "prumerge", "ratio": 0.1})


def test_coerce_accepts_names_dicts_and_configs():
    assert TokenReductionConfig.coerce("aits").method == "aits"
    assert TokenReductionConfig.coerce({"method": "prumerge_plus", "budget": 144}).budget == 144
    assert TokenReductionConfig.coerce(None) == TokenReductionConfig()
    with pytest.raises(TypeError):
        TokenReductionConfig.coerce(3)


def test_budget_one_is_fine_without_a_summary_token():
    assert TokenReductionConfig(method="aits", budget=1).output_count == 1
    assert TokenReductionConfig(method="spatial", grid=(6, 6)).output_count == 36


def test_every_shipped_reduction_yaml_loads(tmp_path):
    from pathlib import Path

    shipped = sorted((Path(__file__).parents[1] / "llava_prumerge" / "configs" / "reduction").glob("*.yaml"))
    assert len(shipped) >= 5
    methods = {TokenReductionConfig.coerce(path).method for path in shipped}
    assert {"prumerge", "prumerge_plus", "aits", "none", "sequential", "spatial"} <= methods
    assert TokenReductionConfig.coerce(str(shipped[0])) == TokenReductionConfig.from_yaml(shipped[0])
    bad = tmp_path / "bad.yaml"
    bad.write_text("method: prumerge\nratio: 0.1\n")
    with pytest.raises(ValueError, match="bad.yaml: .*unknown field"):
        TokenReductionConfig.from_yaml(bad)


def test_one_resolver_for_training_evaluation_and_the_model():
    """Named configs resolve the same everywhere, from any working directory (packaged data)."""
    import os
    import subprocess
    import sys

    from llava_prumerge.config import named_configs, resolve_reduction
    from llava_prumerge.evaluation.lmms_eval_model import resolve_reduction as resolve_model_argument
    from llava_prumerge.training.settings import ModelSettings

    assert TokenReductionConfig.coerce("prumerge_budget64") == TokenReductionConfig(budget=64)
    assert resolve_model_argument("prumerge_budget64", None) == TokenReductionConfig(budget=64)
    assert TokenReductionConfig.coerce(ModelSettings().token_reduction) == TokenReductionConfig()
    assert resolve_reduction("spatial", 40).grid == (5, 8)
    assert {"prumerge", "prumerge_plus", "prumerge_budget64", "spatial_5x8"} <= set(named_configs())
    with pytest.raises(ValueError, match="named config"):
        TokenReductionConfig.coerce("prumerge_budget_64")
    code = "from llava_prumerge import TokenReductionConfig as T; print(T.coerce('spatial_5x8').grid)"
    result = subprocess.run(
        [sys.executable, "-c", code], cwd="/", capture_output=True, text=True, env=os.environ, timeout=120
    )
    assert result.stdout.strip() == "(5, 8)", result.stderr[-2000:]


def test_named_configs_ship_in_the_wheel(tmp_path):
    """A non-editable install carries the named reduction configs (package data)."""
    import shutil
    import subprocess
    import sys
    import zipfile
    from pathlib import Path

    root = Path(__file__).parents[1]
    source = tmp_path / "source"  # a copy: building in the checkout would leave build/ there
    shutil.copytree(root / "llava_prumerge", source / "llava_prumerge", ignore=shutil.ignore_patterns("__pycache__"))
    for name in ("setup.py", "README.md", "pyproject.toml"):
        shutil.copy(root / name, source / name)
    command = [sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "--no-build-isolation", "-w", str(tmp_path)]
    subprocess.run([*command, str(source)], check=True, capture_output=True, timeout=300)
    (wheel,) = tmp_path.glob("llava_prumerge-*.whl")
    names = {Path(name).name for name in zipfile.ZipFile(wheel).namelist() if name.endswith(".yaml")}
    shipped = {path.name for path in (root / "llava_prumerge" / "configs" / "reduction").glob("*.yaml")}
    assert shipped and names == shipped
