"""The authors' released LLaVA-format LoRA checkpoints, converted and evaluated with our stack."""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from llava_hf_fixture import build_vicuna_tokenizer
from transformers import CLIPImageProcessor, CLIPVisionConfig, CLIPVisionModel, LlamaConfig, LlamaForCausalLM
from transformers.generation import LogitsProcessor

from llava_prumerge import LlavaPruMergeForConditionalGeneration, TokenReductionConfig, pad_to_square
from llava_prumerge.conversation import generation_prompt
from llava_prumerge.tiny.setting import demo_images
from llava_prumerge.training.checkpoints import load_finetuned
from llava_prumerge.training.released import LORA_TARGETS, convert_llava_checkpoint

ROOT = Path(__file__).parents[1]
VOCAB = 32000  # Vicuna-v1.5 / original LLaVA: no <image> row, images spliced at index -200
RANK, ALPHA = 16, 32  # the released adapters: r 128, alpha 256 (the same scaling, 2)
BLOCK = {p: "mlp" if p in ("gate_proj", "up_proj", "down_proj") else "self_attn" for p in LORA_TARGETS}


def _vicuna(folder: Path, hidden: int = 64, seed: int = 0) -> Path:
    tokenizer = build_vicuna_tokenizer()
    config = LlamaConfig(
        hidden_size=hidden,
        intermediate_size=2 * hidden,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=4,
        vocab_size=VOCAB,
        max_position_embeddings=4096,
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        initializer_range=0.1,
    )
    torch.manual_seed(seed)
    LlamaForCausalLM(config).save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return folder


def _clip(folder: Path) -> Path:
    config = CLIPVisionConfig(
        hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=2, image_size=336, patch_size=14
    )
    torch.manual_seed(1)
    CLIPVisionModel(config).save_pretrained(folder)
    CLIPImageProcessor(size={"shortest_edge": 336}, crop_size={"height": 336, "width": 336}).save_pretrained(folder)
    return folder


def write_released_checkpoint(folder: Path, vicuna: Path, clip: Path, hidden: int = 64, layers: int = 2) -> dict:
    """A checkpoint in the layout LLaVA's train.py saves with --lora_enable (PEFT ~0.4, .bin files)."""
    folder.mkdir(parents=True)
    generator = torch.Generator().manual_seed(2)
    sizes = {
        "q_proj": (hidden, hidden),
        "k_proj": (hidden, hidden),
        "v_proj": (hidden, hidden),
        "o_proj": (hidden, hidden),
    }
    sizes |= {"gate_proj": (hidden, 2 * hidden), "up_proj": (hidden, 2 * hidden), "down_proj": (2 * hidden, hidden)}
    lora = {}
    for layer in range(layers):
        for projection, (fan_in, fan_out) in sizes.items():
            stem = f"base_model.model.model.layers.{layer}.{BLOCK[projection]}.{projection}"
            lora[f"{stem}.lora_A.weight"] = torch.randn(RANK, fan_in, generator=generator) * 0.1
            lora[f"{stem}.lora_B.weight"] = torch.randn(fan_out, RANK, generator=generator) * 0.1
    projector = {
        "base_model.model.model.mm_projector.0.weight": torch.randn(hidden, 32, generator=generator) * 0.2,
        "base_model.model.model.mm_projector.0.bias": torch.randn(hidden, generator=generator) * 0.1,
        "base_model.model.model.mm_projector.2.weight": torch.randn(hidden, hidden, generator=generator) * 0.2,
        "base_model.model.model.mm_projector.2.bias": torch.randn(hidden, generator=generator) * 0.1,
    }
    torch.save(lora, folder / "adapter_model.bin")
    torch.save(projector, folder / "non_lora_trainables.bin")
    adapter_config = {  # as peft 0.4 wrote it for LLaVA
        "base_model_name_or_path": str(vicuna),
        "bias": "none",
        "fan_in_fan_out": False,
        "inference_mode": True,
        "init_lora_weights": True,
        "layers_pattern": None,
        "layers_to_transform": None,
        "lora_alpha": ALPHA,
        "lora_dropout": 0.05,
        "modules_to_save": None,
        "peft_type": "LORA",
        "r": RANK,
        "revision": None,
        "target_modules": ["up_proj", "k_proj", "down_proj", "q_proj", "o_proj", "gate_proj", "v_proj"],
        "task_type": "CAUSAL_LM",
    }
    (folder / "adapter_config.json").write_text(json.dumps(adapter_config, indent=2))
    llava_config = {
        "_name_or_path": "lmsys/vicuna-7b-v1.5",
        "architectures": ["LlavaLlamaForCausalLM"],
        "model_type": "llava",
        "hidden_size": hidden,
        "image_aspect_ratio": "pad",
        "mm_hidden_size": 32,
        "mm_projector_type": "mlp2x_gelu",
        "mm_use_im_patch_token": False,
        "mm_use_im_start_end": False,
        "mm_vision_select_feature": "patch",
        "mm_vision_select_layer": -2,
        "mm_vision_tower": str(clip),
        "vocab_size": VOCAB,
    }
    (folder / "config.json").write_text(json.dumps(llava_config, indent=2))
    (folder / "trainer_state.json").write_text(json.dumps({"epoch": 1.0, "global_step": 5198}))
    return {"lora": lora, "projector": projector}


@pytest.fixture(scope="module")
def released(tmp_path_factory):
    root = tmp_path_factory.mktemp("released")
    vicuna, clip = _vicuna(root / "vicuna"), _clip(root / "clip")
    tensors = write_released_checkpoint(root / "checkpoint", vicuna, clip)
    adapter = root / "adapter"
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1"}
    command = [
        os.sys.executable, "scripts/convert_llava_checkpoint.py", "--checkpoint", str(root / "checkpoint"),
        "--token-reduction", "prumerge_plus", "--output", str(adapter), "--merged", str(root / "merged"), "--dtype", "float32",
    ]  # fmt: skip
    result = subprocess.run(command, cwd=ROOT, env=env, capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    return {"root": root, "vicuna": vicuna, "clip": clip, "adapter": adapter, "merged": root / "merged", **tensors}


def _inputs(processor):
    photo = pad_to_square(demo_images(("chelsea",))[0], processor)
    prompt = generation_prompt("What is in the picture?")
    return processor(text=[prompt], images=[photo], return_tensors="pt")


def _by_hand(released, inputs) -> torch.Tensor:
    """LLaVA's forward written out: W + (alpha/r)·B·A merged into Vicuna, CLIP layer -2 patches through
    the released 2-layer projector, spliced at the image positions of the prompt."""
    vicuna = LlamaForCausalLM.from_pretrained(released["vicuna"]).eval()
    state = vicuna.state_dict()
    for key, a in released["lora"].items():
        if ".lora_A." in key:
            b = released["lora"][key.replace(".lora_A.", ".lora_B.")]
            weight = key.replace("base_model.model.", "").replace(".lora_A.weight", ".weight")
            state[weight] = state[weight] + (ALPHA / RANK) * (b @ a)
    vicuna.load_state_dict(state)
    clip = CLIPVisionModel.from_pretrained(released["clip"]).eval()
    p = {k.split("mm_projector.")[1]: v for k, v in released["projector"].items()}
    with torch.no_grad():
        patches = clip(inputs["pixel_values"], output_hidden_states=True).hidden_states[-2][:, 1:]
        image = F.linear(F.gelu(F.linear(patches, p["0.weight"], p["0.bias"])), p["2.weight"], p["2.bias"])
        ids = inputs["input_ids"]
        is_image = ids >= VOCAB  # the added <image> placeholders
        embeds = vicuna.model.embed_tokens(ids.masked_fill(is_image, 0))
        embeds[is_image] = image.reshape(-1, image.shape[-1])
        return vicuna(inputs_embeds=embeds, attention_mask=inputs["attention_mask"]).logits


@pytest.mark.parametrize("merge", [True, False])
def test_converted_adapter_gives_the_hand_merged_logits(released, merge):
    model, processor = load_finetuned(released["adapter"], token_reduction="none", merge=merge)
    inputs = _inputs(processor)
    assert int((inputs["input_ids"] >= VOCAB).sum()) == 576
    with torch.no_grad():
        ours = model(**inputs).logits
    expected = _by_hand(released, inputs)
    assert ours.shape[-1] == 32064  # <image> and the padding rows, rounded to 64 as llava-hf
    torch.testing.assert_close(ours[..., :VOCAB], expected, rtol=0, atol=1e-5)


def test_vision_tower_untouched_and_reduction_recorded(released):
    model, _ = load_finetuned(released["adapter"], merge=True)
    clip = CLIPVisionModel.from_pretrained(released["clip"])
    ours = model.model.vision_tower.state_dict()
    assert all(torch.equal(ours[k], v) for k, v in clip.state_dict().items())
    assert model.token_reduction == TokenReductionConfig(method="prumerge_plus")
    assert json.loads((released["adapter"] / "released_checkpoint.json").read_text())["lora"]["r"] == RANK
    config = json.loads((released["adapter"] / "adapter_config.json").read_text())
    assert "language_model" in config["target_modules"]  # never the bare suffixes: they match CLIP too
    merged = LlavaPruMergeForConditionalGeneration.from_pretrained(released["merged"])
    assert merged.token_reduction == TokenReductionConfig(method="prumerge_plus")
    assert all(torch.equal(merged.state_dict()[k], v) for k, v in model.state_dict().items())


class Boost(LogitsProcessor):
    """Raises the added rows' logits far above every real token's (applied after suppression)."""

    def __call__(self, input_ids, scores):
        scores[:, VOCAB:] += 1e4
        return scores


def test_generation_never_emits_the_added_token_ids(released):
    model = LlavaPruMergeForConditionalGeneration.from_pretrained(released["merged"]).eval()
    _, processor = load_finetuned(released["adapter"])
    assert model.generation_config.suppress_tokens == list(range(VOCAB, 32064))
    inputs = _inputs(processor)
    settings = dict(max_new_tokens=4, do_sample=False, logits_processor=[Boost()])
    new = model.generate(**inputs, **settings)[0, inputs["input_ids"].shape[1] :]
    assert (new < VOCAB).all(), new
    model.generation_config.suppress_tokens = None  # the same check fails without the suppression
    new = model.generate(**inputs, **settings)[0, inputs["input_ids"].shape[1] :]
    assert (new >= VOCAB).all()


def test_clear_errors_for_missing_files_wrong_base_and_unexpected_keys(released, tmp_path):
    checkpoint = tmp_path / "checkpoint"
    write_released_checkpoint(checkpoint, released["vicuna"], released["clip"])
    (checkpoint / "non_lora_trainables.bin").rename(checkpoint / "elsewhere.bin")
    with pytest.raises(FileNotFoundError, match="missing non_lora_trainables.bin"):
        convert_llava_checkpoint(checkpoint, tmp_path / "out", "prumerge")
    (checkpoint / "elsewhere.bin").rename(checkpoint / "non_lora_trainables.bin")

    wider = _vicuna(tmp_path / "vicuna-48", hidden=48)
    with pytest.raises(ValueError, match=r"does not fit the base .*vicuna-48.*\(a wrong base\?\).*q_proj.lora_A"):
        convert_llava_checkpoint(checkpoint, tmp_path / "out", "prumerge", language_model=str(wider))
    assert not (tmp_path / "out").exists()  # nothing written before the checks pass

    lora = torch.load(checkpoint / "adapter_model.bin", weights_only=True)
    lora["base_model.model.model.vision_tower.vision_tower.layers.0.q_proj.lora_A.weight"] = torch.zeros(1)
    torch.save(lora, checkpoint / "adapter_model.bin")
    with pytest.raises(ValueError, match=r"unexpected key\(s\) base_model.model.model.vision_tower"):
        convert_llava_checkpoint(checkpoint, tmp_path / "out", "prumerge")

    del lora["base_model.model.model.vision_tower.vision_tower.layers.0.q_proj.lora_A.weight"]
    del lora["base_model.model.model.layers.1.mlp.up_proj.lora_B.weight"]
    torch.save(lora, checkpoint / "adapter_model.bin")
    with pytest.raises(ValueError, match="incomplete LoRA .*layers.1.mlp.up_proj.lora_A"):
        convert_llava_checkpoint(checkpoint, tmp_path / "out", "prumerge")

    torch.save({"lora": object.__new__(Boost)}, checkpoint / "adapter_model.bin")  # a pickled object, not tensors
    with pytest.raises(ValueError, match="weights_only=True"):
        convert_llava_checkpoint(checkpoint, tmp_path / "out", "prumerge")


def test_lmms_eval_model_takes_the_converted_adapter(released):
    from llava_prumerge.evaluation.lmms_eval_model import LlavaPruMerge

    evaluator = LlavaPruMerge(adapter=str(released["adapter"]), device="cpu", batch_size=2)
    assert evaluator.token_reduction == TokenReductionConfig(method="prumerge_plus")  # the recorded choice
    assert evaluator.run_settings["base_model"]["language_model"] == str(released["vicuna"])
    photo = demo_images(("coffee",))[0]
    prompts = [evaluator.build_prompt("What is this?", 1)] * 2
    texts, counts = evaluator.generate_batch(prompts, [[photo], [photo]], max_new_tokens=3)
    assert texts[0] == texts[1] and counts[0] == counts[1] and 1 < counts[0][0][0] < 576
