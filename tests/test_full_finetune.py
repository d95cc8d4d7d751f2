"""LLaVA-1.5 stage-2 full finetuning (``lora_r: 0``): what trains, what is saved, and the chain to LoRA."""

from __future__ import annotations

import json
import logging
from pathlib import Path

import pytest
import torch
from transformers import AutoProcessor, AutoTokenizer, CLIPVisionModel, LlamaForCausalLM

from llava_prumerge import LlavaPruMergeForConditionalGeneration
from llava_prumerge.config import TokenReductionConfig
from llava_prumerge.tiny.setting import write_tiny_assets
from llava_prumerge.training.checkpoints import BaseModelSpec, load_base_model, load_finetuned
from llava_prumerge.training.run import run
from llava_prumerge.training.settings import LoraSettings

ROOT = Path(__file__).parents[1]


@pytest.fixture(scope="module")
def assets(tmp_path_factory):
    return write_tiny_assets(tmp_path_factory.mktemp("tiny-assets"))


def tiny_argv(assets, output_dir, *extra, language_model=None):
    """configs/train/tiny.yaml from start point (b), in process, without DeepSpeed, no checkpoints."""
    return [
        str(ROOT / "configs/train/tiny.yaml"),
        "--language_model",
        str(language_model or assets["language_model"]),
        "--vision_tower",
        str(assets["vision_tower"]),
        "--mm_projector",
        str(assets["mm_projector"]),
        "--data_path",
        str(assets["data"]),
        "--image_folder",
        str(assets["data"].parent / "images"),
        "--output_dir",
        str(output_dir),
        "--deepspeed",
        "",
        "--report_to",
        "none",
        "--save_strategy",
        "no",
        *extra,
    ]


FULL = ("--lora_r", "0", "--learning_rate", "1e-3", "--mm_projector_lr", "5e-4")


@pytest.fixture(scope="module")
def full_run(assets, tmp_path_factory):
    output_dir = tmp_path_factory.mktemp("full") / "stage2-full"
    trainer = run(tiny_argv(assets, output_dir, *FULL, "--max_steps", "8"))
    return trainer, output_dir


def plain_state(model) -> dict[str, torch.Tensor]:
    return {name: value.detach().clone() for name, value in model.state_dict().items()}


def assert_same_weights(reloaded, expected: dict[str, torch.Tensor]) -> None:
    state = reloaded.state_dict()
    assert state.keys() == expected.keys()
    different = [name for name in state if not torch.equal(state[name], expected[name])]
    assert not different, different


def is_tied(model) -> bool:
    return model.lm_head.weight is model.get_input_embeddings().weight


def test_lora_r_must_not_be_negative():
    with pytest.raises(ValueError, match="lora_r"):
        LoraSettings(lora_r=-1)


def test_full_finetune_trains_language_model_and_projector_and_saves_a_checkpoint(assets, full_run):
    trainer, output_dir = full_run
    model = trainer.model.eval()
    assert type(model) is LlavaPruMergeForConditionalGeneration  # no PEFT wrapper
    assert trainer.state.global_step == 8

    losses = [entry["loss"] for entry in trainer.state.log_history if "loss" in entry]
    assert len(losses) == 8
    assert sum(losses[-3:]) / 3 < sum(losses[:3]) / 3, losses

    # the tower: frozen, bit-identical to the input CLIP, not in the optimizer
    clip = CLIPVisionModel.from_pretrained(assets["vision_tower"]).state_dict()
    tower = model.model.vision_tower.state_dict()
    assert tower.keys() == clip.keys()
    assert all(torch.equal(tower[name], clip[name]) for name in clip)
    assert not any(p.requires_grad for p in model.model.vision_tower.parameters())

    # the language model (lm_head included) and the projector: trained, with their own learning rates
    vicuna = LlamaForCausalLM.from_pretrained(assets["language_model"]).state_dict()
    language = {f"model.{k}": v for k, v in model.model.language_model.state_dict().items()}
    language["lm_head.weight"] = model.lm_head.weight
    assert language.keys() == vicuna.keys()
    unchanged = [k for k in vicuna if "embed_tokens" not in k and torch.equal(language[k], vicuna[k])]
    assert not unchanged, unchanged  # every layer moved (the embedding only in the rows the data uses)
    assert not torch.equal(language["model.embed_tokens.weight"], vicuna["model.embed_tokens.weight"])
    groups = trainer.optimizer.param_groups
    in_optimizer = {id(p): group["initial_lr"] for group in groups for p in group["params"]}
    for name, parameter in model.named_parameters():
        if "vision_tower" in name:
            assert id(parameter) not in in_optimizer, name
        elif "multi_modal_projector" in name:
            assert in_optimizer[id(parameter)] == 5e-4, name
        else:
            assert in_optimizer[id(parameter)] == 1e-3, name

    # a complete llava-hf checkpoint, no adapter
    names = {path.name for path in output_dir.iterdir()}
    assert "adapter_config.json" not in names and "adapter_model.safetensors" not in names
    for name in ("config.json", "model.safetensors", "generation_config.json", "token_reduction.json"):
        assert name in names, name
    for name in ("base_model.json", "llava_prumerge_settings.json", "processor_config.json", "tokenizer.json"):
        assert name in names, name
    assert json.loads((output_dir / "llava_prumerge_settings.json").read_text())["lora"]["lora_r"] == 0
    assert json.loads((output_dir / "base_model.json").read_text())["language_model"] == str(assets["language_model"])

    expected = plain_state(model)
    reloaded, processor = load_base_model(BaseModelSpec(model_name_or_path=str(output_dir)), TokenReductionConfig())
    assert_same_weights(reloaded, expected)
    assert is_tied(reloaded) == is_tied(model)
    assert len(processor.tokenizer) == len(AutoProcessor.from_pretrained(output_dir).tokenizer)
    assert processor.tokenizer.convert_tokens_to_ids("<image>") == reloaded.config.image_token_id
    direct = LlavaPruMergeForConditionalGeneration.from_pretrained(output_dir)
    assert_same_weights(direct, expected)
    assert direct.generation_config.suppress_tokens == model.generation_config.suppress_tokens
    assert direct.token_reduction == TokenReductionConfig()


def test_stage2_full_then_lora_chain(assets, full_run, tmp_path):
    _, full_dir = full_run
    argv = tiny_argv(assets, tmp_path / "lora", "--max_steps", "2")
    start = argv.index("--language_model")
    del argv[start : start + 6]
    argv += ["--model_name_or_path", str(full_dir)]
    trainer = run(argv)
    assert trainer.state.global_step == 2
    assert (tmp_path / "lora" / "adapter_config.json").is_file()
    base_model = json.loads((tmp_path / "lora" / "base_model.json").read_text())
    assert base_model["model_name_or_path"] == str(full_dir)
    reloaded, _ = load_finetuned(tmp_path / "lora", merge=True)
    full = LlavaPruMergeForConditionalGeneration.from_pretrained(full_dir).state_dict()
    merged = reloaded.state_dict()
    tower = [name for name in full if ".vision_tower." in name]
    assert tower and all(torch.equal(merged[name], full[name]) for name in tower)
    assert any(not torch.equal(merged[name], full[name]) for name in full if ".language_model." in name)


def test_tied_embeddings_and_suppressed_rows_survive_the_save(assets, tmp_path, caplog):
    """A Vicuna with tied embeddings whose tokenizer outgrows it: stage-2 assembly adds (suppressed) rows."""
    vicuna = tmp_path / "vicuna-tied"
    LlamaForCausalLM.from_pretrained(assets["language_model"], tie_word_embeddings=True).save_pretrained(vicuna)
    tokenizer = AutoTokenizer.from_pretrained(assets["language_model"])
    tokenizer.add_tokens(["<extra>"])
    tokenizer.save_pretrained(vicuna)
    output_dir = tmp_path / "full-tied"
    caplog.set_level(logging.INFO, logger="llava_prumerge.training")
    trainer = run(tiny_argv(assets, output_dir, *FULL, "--max_steps", "2", language_model=vicuna))
    model = trainer.model.eval()
    trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
    assert "mode: full finetuning (LLaVA-1.5 stage 2" in caplog.text and f" {trainable} trainable" in caplog.text
    assert is_tied(model)
    suppressed = model.generation_config.suppress_tokens
    base_vocab = LlamaForCausalLM.from_pretrained(vicuna).config.vocab_size
    assert list(suppressed) == list(range(base_vocab, model.config.text_config.vocab_size)) and suppressed
    expected = plain_state(model)
    for reloaded in (
        LlavaPruMergeForConditionalGeneration.from_pretrained(output_dir),
        load_base_model(BaseModelSpec(model_name_or_path=str(output_dir)), TokenReductionConfig())[0],
    ):
        assert is_tied(reloaded)
        assert_same_weights(reloaded, expected)
        assert reloaded.generation_config.suppress_tokens == suppressed


def test_full_finetune_under_zero3_needs_gathered_weights_on_save():
    from types import SimpleNamespace

    from transformers.integrations.deepspeed import HfDeepSpeedConfig

    from llava_prumerge.training.run import check_full_checkpoint_saving

    zero3 = {"zero_optimization": {"stage": 3}}
    with pytest.raises(ValueError, match="stage3_gather_16bit_weights_on_model_save"):
        check_full_checkpoint_saving(SimpleNamespace(hf_deepspeed_config=HfDeepSpeedConfig(zero3)))
    zero3["zero_optimization"]["stage3_gather_16bit_weights_on_model_save"] = True
    check_full_checkpoint_saving(SimpleNamespace(hf_deepspeed_config=HfDeepSpeedConfig(zero3)))
    check_full_checkpoint_saving(
        SimpleNamespace(hf_deepspeed_config=HfDeepSpeedConfig({"zero_optimization": {"stage": 2}}))
    )
    check_full_checkpoint_saving(SimpleNamespace(hf_deepspeed_config=None))
