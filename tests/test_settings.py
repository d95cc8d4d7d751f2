"""Training YAMLs as overlays (``base: OTHER.yaml``): base < overlay < flags, chains, cycles, the shipped configs."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest

from llava_prumerge.training.settings import load_config_values, parse_settings

ROOT = Path(__file__).parents[1]
CONFIGS = ROOT / "configs/train"
RECIPE = "llava15_7b_lora.yaml"
# Pinned on both sides of every comparison of shipped configs, so that parsing needs no GPU (tf32, bf16 without
# use_cpu) and no DeepSpeed accelerator; the YAML-level comparison still covers these keys.
PINNED = ["--output_dir", "/tmp/settings-test", "--tf32", "false", "--use_cpu", "true", "--deepspeed", ""]

# Per shipped overlay: the keys whose YAML value differs from the 7B recipe, and the resolved settings that differ
# (the pinned flags hide output_dir / tf32 / use_cpu / deepspeed; gradient_accumulation_steps follows from
# global_batch_size / per_device_train_batch_size; a stage-2 start resolves model_name_or_path to None).
OVERLAYS = {
    "a100_h100.yaml": ({"output_dir"}, set()),
    "llava15_13b_lora.yaml": ({"output_dir", "model_name_or_path"}, {"model_name_or_path"}),
    "llava_next_7b_lora.yaml": (
        {"output_dir", "model_name_or_path", "model_max_length"},
        {"model_name_or_path", "model_max_length"},
    ),
    "llava15_7b_stage2.yaml": (
        {"output_dir", "language_model", "vision_tower", "mm_projector"},
        {"language_model", "vision_tower", "mm_projector", "model_name_or_path"},
    ),
    "v100.yaml": (
        {"output_dir", "fp16", "bf16", "tf32", "per_device_train_batch_size"},
        {"fp16", "bf16", "per_device_train_batch_size", "gradient_accumulation_steps"},
    ),
    # the trained tiny testbed's three steps (CPU, no DeepSpeed, small batches; lora_r 0 is full finetuning)
    "scenes_stage1.yaml": (
        {
            "bf16",
            "data_path",
            "dataloader_num_workers",
            "deepspeed",
            "global_batch_size",
            "gradient_checkpointing",
            "image_folder",
            "language_model",
            "learning_rate",
            "logging_steps",
            "lora_r",
            "mm_projector",
            "mm_projector_lr",
            "model_max_length",
            "num_train_epochs",
            "output_dir",
            "report_to",
            "save_strategy",
            "seed",
            "tf32",
            "token_reduction",
            "use_cpu",
            "vision_tower",
            "warmup_steps",
        },
        {
            "activation_checkpointing",
            "bf16",
            "data_path",
            "dataloader_num_workers",
            "global_batch_size",
            "gradient_accumulation_steps",
            "gradient_checkpointing",
            "image_folder",
            "language_model",
            "learning_rate",
            "logging_steps",
            "lora_r",
            "mm_projector",
            "mm_projector_lr",
            "model_max_length",
            "model_name_or_path",
            "num_train_epochs",
            "report_to",
            "save_strategy",
            "seed",
            "token_reduction",
            "vision_tower",
            "warmup_steps",
        },
    ),
    "scenes_stage2.yaml": (
        {
            "bf16",
            "data_path",
            "dataloader_num_workers",
            "deepspeed",
            "global_batch_size",
            "gradient_checkpointing",
            "image_folder",
            "learning_rate",
            "logging_steps",
            "lora_r",
            "mm_projector_lr",
            "model_max_length",
            "model_name_or_path",
            "num_train_epochs",
            "output_dir",
            "report_to",
            "save_strategy",
            "seed",
            "tf32",
            "token_reduction",
            "use_cpu",
            "warmup_steps",
        },
        {
            "activation_checkpointing",
            "bf16",
            "data_path",
            "dataloader_num_workers",
            "global_batch_size",
            "gradient_accumulation_steps",
            "gradient_checkpointing",
            "image_folder",
            "learning_rate",
            "logging_steps",
            "lora_r",
            "mm_projector_lr",
            "model_max_length",
            "model_name_or_path",
            "num_train_epochs",
            "report_to",
            "save_strategy",
            "seed",
            "token_reduction",
            "warmup_steps",
        },
    ),
    "scenes_lora.yaml": (
        {
            "bf16",
            "data_path",
            "dataloader_num_workers",
            "deepspeed",
            "global_batch_size",
            "gradient_checkpointing",
            "image_folder",
            "learning_rate",
            "logging_steps",
            "lora_alpha",
            "lora_dropout",
            "lora_r",
            "mm_projector_lr",
            "model_max_length",
            "model_name_or_path",
            "output_dir",
            "report_to",
            "save_strategy",
            "seed",
            "tf32",
            "use_cpu",
            "warmup_steps",
        },
        {
            "activation_checkpointing",
            "bf16",
            "data_path",
            "dataloader_num_workers",
            "global_batch_size",
            "gradient_accumulation_steps",
            "gradient_checkpointing",
            "image_folder",
            "learning_rate",
            "logging_steps",
            "lora_alpha",
            "lora_dropout",
            "lora_r",
            "mm_projector_lr",
            "model_max_length",
            "model_name_or_path",
            "report_to",
            "save_strategy",
            "seed",
            "warmup_steps",
        },
    ),
    "tiny.yaml": (
        {
            "model_name_or_path",
            "data_path",
            "image_folder",
            "max_bad_fraction",
            "output_dir",
            "deepspeed",
            "use_cpu",
            "bf16",
            "tf32",
            "lora_r",
            "lora_alpha",
            "num_train_epochs",
            "per_device_train_batch_size",
            "global_batch_size",
            "learning_rate",
            "mm_projector_lr",
            "save_steps",
            "save_total_limit",
            "dataloader_num_workers",
            "seed",
        },
        {
            "model_name_or_path",
            "data_path",
            "image_folder",
            "max_bad_fraction",
            "bf16",
            "lora_r",
            "lora_alpha",
            "num_train_epochs",
            "per_device_train_batch_size",
            "global_batch_size",
            "gradient_accumulation_steps",
            "learning_rate",
            "mm_projector_lr",
            "save_steps",
            "save_total_limit",
            "dataloader_num_workers",
            "seed",
        },
    ),
}


@pytest.fixture(autouse=True)
def one_process(monkeypatch):
    monkeypatch.delenv("WORLD_SIZE", raising=False)


def resolved(*argv: str) -> dict:
    """Every resolved setting by name (the four settings objects of ``parse_settings`` flattened)."""
    model, data, lora, training = parse_settings(list(argv))
    flat: dict = {}
    for part in (dataclasses.asdict(model), dataclasses.asdict(data), dataclasses.asdict(lora), training.to_dict()):
        assert not set(flat) & set(part)
        flat.update(part)
    return flat


def known_keys() -> set[str]:
    """Every setting name ``parse_settings`` accepts."""
    return set(resolved("--output_dir", "/tmp/settings-test", "--deepspeed", ""))


def differing(a: dict, b: dict) -> set[str]:
    return {key for key in set(a) | set(b) if a.get(key, "<absent>") != b.get(key, "<absent>")}


def write(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    return path


# ----------------------------------------------------------------------------------------------
# The overlay mechanism on tmp_path YAMLs
# ----------------------------------------------------------------------------------------------
BASE_YAML = "lora_r: 16\nlora_alpha: 32\nlearning_rate: 1.0e-3\nseed: 7\nreport_to: none\n"


def test_overlay_changes_only_its_keys_and_flags_win(tmp_path):
    base = write(tmp_path / "base.yaml", BASE_YAML)
    overlay = write(tmp_path / "overlay.yaml", "base: base.yaml\nlora_alpha: 64\nlearning_rate: 5.0e-4\n")
    from_base = resolved(str(base), "--output_dir", str(tmp_path / "out"))
    from_overlay = resolved(str(overlay), "--output_dir", str(tmp_path / "out"), "--learning_rate", "1e-5")

    assert differing(from_base, from_overlay) == {"lora_alpha", "learning_rate"}
    assert from_overlay["lora_r"] == 16 and from_overlay["seed"] == 7  # base
    assert from_overlay["lora_alpha"] == 64  # overlay > base
    assert from_overlay["learning_rate"] == 1e-5  # flag > overlay > base


def test_overlay_null_restores_the_default(tmp_path):
    write(tmp_path / "base.yaml", "save_total_limit: 2\n")
    overlay = write(tmp_path / "overlay.yaml", "base: base.yaml\nsave_total_limit: null\n")
    assert load_config_values(overlay, known_keys()) == {"save_total_limit": None}
    assert resolved(str(overlay), "--output_dir", str(tmp_path / "out"))["save_total_limit"] is None


def test_chain_of_two_bases_relative_to_each_file(tmp_path, monkeypatch):
    write(tmp_path / "root.yaml", BASE_YAML)
    write(tmp_path / "mid" / "middle.yaml", "base: ../root.yaml\nlora_alpha: 64\nseed: 1\n")
    top = write(tmp_path / "top" / "top.yaml", "base: ../mid/middle.yaml\nseed: 2\n")
    monkeypatch.chdir(tmp_path / "mid")  # bases resolve against each YAML's folder, not the working directory

    values = load_config_values(top, known_keys())
    assert values == {"lora_r": 16, "lora_alpha": 64, "learning_rate": 1e-3, "seed": 2, "report_to": "none"}
    settings = resolved(str(top), "--output_dir", str(tmp_path / "out"))
    assert (settings["lora_r"], settings["lora_alpha"], settings["seed"]) == (16, 64, 2)


def test_cycle_is_an_error_naming_the_files(tmp_path):
    write(tmp_path / "a.yaml", "base: b.yaml\nlora_r: 4\n")
    write(tmp_path / "b.yaml", "base: a.yaml\nlora_r: 8\n")
    with pytest.raises(ValueError, match="cycle") as raised:
        parse_settings([str(tmp_path / "a.yaml"), "--output_dir", str(tmp_path / "out")])
    assert "a.yaml" in str(raised.value) and "b.yaml" in str(raised.value)

    write(tmp_path / "self.yaml", "base: self.yaml\n")
    with pytest.raises(ValueError, match=r"cycle: .*self\.yaml -> .*self\.yaml"):
        load_config_values(tmp_path / "self.yaml", known_keys())


def test_missing_base_is_an_error_naming_it(tmp_path):
    overlay = write(tmp_path / "overlay.yaml", "base: nowhere.yaml\nlora_r: 4\n")
    with pytest.raises(FileNotFoundError, match="nowhere.yaml") as raised:
        parse_settings([str(overlay), "--output_dir", str(tmp_path / "out")])
    assert "overlay.yaml" in str(raised.value)
    with pytest.raises(FileNotFoundError, match="training config not found: .*absent.yaml"):
        parse_settings([str(tmp_path / "absent.yaml")])


def test_unknown_key_names_the_file_that_has_it(tmp_path):
    write(tmp_path / "base.yaml", "lora_r: 4\nnot_a_setting: 1\n")
    overlay = write(tmp_path / "overlay.yaml", "base: base.yaml\n")
    with pytest.raises(ValueError, match=r"base\.yaml: unknown setting\(s\) \['not_a_setting'\]"):
        parse_settings([str(overlay), "--output_dir", str(tmp_path / "out")])
    bad = write(tmp_path / "bad.yaml", "base: base.yaml\nlora_rank: 4\n")
    with pytest.raises(ValueError, match=r"bad\.yaml: unknown setting\(s\) \['lora_rank'\]"):
        parse_settings([str(bad), "--output_dir", str(tmp_path / "out")])


# ----------------------------------------------------------------------------------------------
# The shipped configs: one recipe, small overlays
# ----------------------------------------------------------------------------------------------
def test_every_shipped_config_is_the_recipe_or_a_listed_overlay_of_it():
    import yaml

    assert {path.name for path in CONFIGS.glob("*.yaml")} == {RECIPE, *OVERLAYS}
    assert "base" not in yaml.safe_load((CONFIGS / RECIPE).read_text())
    for name in OVERLAYS:
        assert yaml.safe_load((CONFIGS / name).read_text())["base"] == RECIPE


@pytest.mark.parametrize("name", sorted(OVERLAYS))
def test_shipped_overlay_is_the_7b_recipe_except_its_keys(name):
    yaml_keys, resolved_keys = OVERLAYS[name]
    known = known_keys()
    assert differing(load_config_values(CONFIGS / RECIPE, known), load_config_values(CONFIGS / name, known)) == (
        yaml_keys
    )
    assert differing(resolved(str(CONFIGS / RECIPE), *PINNED), resolved(str(CONFIGS / name), *PINNED)) == (
        resolved_keys
    )
