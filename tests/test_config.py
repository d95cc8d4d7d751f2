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

    shipped = sorted((Path(__file__).parents[1] / "configs" / "reduction").glob("*.yaml"))
    assert len(shipped) >= 5
    methods = {TokenReductionConfig.coerce(path).method for path in shipped}
    assert {"prumerge", "prumerge_plus", "aits", "none", "sequential", "spatial"} <= methods
    assert TokenReductionConfig.coerce(str(shipped[0])) == TokenReductionConfig.from_yaml(shipped[0])
    bad = tmp_path / "bad.yaml"
    bad.write_text("method: prumerge\nratio: 0.1\n")
    with pytest.raises(ValueError, match="bad.yaml: .*unknown field"):
        TokenReductionConfig.from_yaml(bad)
