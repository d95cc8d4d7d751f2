"""Training (issue: one-epoch LoRA finetune): template, masking, bad data, the real entry point, resume."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time
from pathlib import Path

import pytest
import torch
from PIL import Image
from safetensors.torch import load_file
from tolerances import assert_close_at_scale

from llava_prumerge import LlavaPruMergeForConditionalGeneration
from llava_prumerge.config import TokenReductionConfig
from llava_prumerge.conversation import IGNORE_INDEX, MalformedSample, normalise_turns, tokenize_conversation
from llava_prumerge.tiny.setting import write_tiny_assets
from llava_prumerge.training.checkpoints import BaseModelSpec, assemble_stage2, load_finetuned
from llava_prumerge.training.dataset import DataSettings, LlavaInstructionDataset, too_many_bad
from llava_prumerge.training.run import lora_target_modules, run
from llava_prumerge.training.validation import validate_dataset

ROOT = Path(__file__).parents[1]
ENV = {**os.environ, "WANDB_MODE": "offline", "HF_HUB_OFFLINE": "1"}


@pytest.fixture(scope="module")
def assets(tmp_path_factory):
    return write_tiny_assets(tmp_path_factory.mktemp("tiny-assets"))


def tiny_argv(assets, output_dir, *extra):
    return [
        str(ROOT / "configs/train/tiny.yaml"),
        "--model_name_or_path",
        str(assets["llava"]),
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


# ----------------------------------------------------------------------------------------------
# Template and label masking
# ----------------------------------------------------------------------------------------------
def test_labels_mask_exactly_the_prompt_and_image(tokenizer):
    conversations = [
        {"from": "human", "value": "What is it?\n<image>"},
        {"from": "gpt", "value": "a cat"},
        {"from": "human", "value": "Colour?"},
        {"from": "gpt", "value": "greyscale"},
    ]
    turns = normalise_turns(conversations, num_images=1)
    assert turns[0] == ("human", "<image>\nWhat is it?")  # placeholder moved first, as LLaVA-1.5 does
    tokens = tokenize_conversation(turns, tokenizer, max_length=2048)
    text = tokenizer.decode(tokens.input_ids)
    # LLaVA's conv_vicuna_v1.system, copied from llava/conversation.py (LLaVA-1.5 training and evaluation)
    system = (
        "A chat between a curious user and an artificial intelligence assistant. "
        "The assistant gives helpful, detailed, and polite answers to the user's questions."
    )
    assert text == f"<s>{system} USER: <image>\nWhat is it? ASSISTANT: a cat</s>USER: Colour? ASSISTANT: greyscale</s>"
    supervised = [t for t, label in zip(tokens.input_ids, tokens.labels) if label != IGNORE_INDEX]
    assert tokenizer.decode(supervised) == " a cat</s> greyscale</s>"
    assert all(label in (IGNORE_INDEX, token) for token, label in zip(tokens.input_ids, tokens.labels))
    image_id = tokenizer.convert_tokens_to_ids("<image>")
    assert tokens.labels[tokens.input_ids.index(image_id)] == IGNORE_INDEX
    assert tokens.labels[0] == IGNORE_INDEX  # <s>


def test_truncation_rules(tokenizer):
    turns = normalise_turns(
        [{"from": "human", "value": "<image>\nQ?"}, {"from": "gpt", "value": "a long answer " * 5}], num_images=1
    )
    full = tokenize_conversation(turns, tokenizer, max_length=4096)
    cut = tokenize_conversation(turns, tokenizer, max_length=len(full.input_ids) - 20)
    assert cut.input_ids == full.input_ids[: len(cut.input_ids)]
    assert any(label != IGNORE_INDEX for label in cut.labels)
    prompt_length = full.labels.index(next(label for label in full.labels if label != IGNORE_INDEX))
    with pytest.raises(MalformedSample, match="no supervised token"):
        tokenize_conversation(turns, tokenizer, max_length=prompt_length)
    late_image = normalise_turns([{"from": "human", "value": "Q?"}, {"from": "gpt", "value": "A."}], num_images=0) + [
        ("human", "<image>\nand this?"),
        ("gpt", "B."),
    ]
    with pytest.raises(MalformedSample, match="image placeholder falls beyond"):
        tokenize_conversation(late_image, tokenizer, max_length=len(full.input_ids) - 150)


def test_placeholder_in_a_later_turn_moves_to_the_front_of_that_turn_once(tokenizer):
    """LLaVA-1.5's ``preprocess_multimodal``: the turn holding ``<image>`` gets it at its front;
    no second copy is added to the first turn."""
    conversations = [
        {"from": "human", "value": "Hello?"},
        {"from": "gpt", "value": "Hi."},
        {"from": "human", "value": "What is this? <image>"},
        {"from": "gpt", "value": "a cat"},
    ]
    turns = normalise_turns(conversations, num_images=1)
    assert turns == [("human", "Hello?"), ("gpt", "Hi."), ("human", "<image>\nWhat is this?"), ("gpt", "a cat")]
    ids = tokenize_conversation(turns, tokenizer, max_length=2048).input_ids
    assert ids.count(tokenizer.convert_tokens_to_ids("<image>")) == 1


def test_bad_fraction_is_judged_only_after_enough_samples():
    # a 665k run at max_bad_fraction 0.001: three bad files among the first 2,000 do not stop it ...
    assert not too_many_bad(3, 2_000, 665_000, 0.001, 10_000)
    # ... more bad samples than 0.1 % of the whole dataset do, at once
    assert too_many_bad(666, 2_000, 665_000, 0.001, 10_000)
    # after 10,000 samples the fraction of the samples seen is judged
    assert not too_many_bad(10, 10_000, 665_000, 0.001, 10_000)
    assert too_many_bad(11, 10_000, 665_000, 0.001, 10_000)
    # a dataset smaller than min_samples is judged once it was seen whole
    assert not too_many_bad(2, 40, 45, 0.2, 10_000)
    assert too_many_bad(10, 45, 45, 0.2, 10_000)


@pytest.mark.parametrize(
    "conversations, images, message",
    [
        ([], 0, "non-empty"),
        ([{"from": "gpt", "value": "hi"}], 0, "expected 'human'"),
        ([{"from": "human", "value": "hi"}], 0, "last turn"),
        ([{"from": "human", "value": "<image>\nhi"}, {"from": "gpt", "value": "yo"}], 0, "1 '<image>'"),
        ([{"from": "human", "value": "hi"}, {"from": "gpt", "value": 3}], 0, "string"),
        ([{"from": "human"}, {"from": "gpt", "value": "x"}], 0, "'from' and 'value'"),
        ([{"from": "human", "value": "hi"}, {"from": "gpt", "value": "<image>"}], 1, "answer"),
    ],
)
def test_malformed_conversations_are_named(conversations, images, message):
    with pytest.raises(MalformedSample, match=message):
        normalise_turns(conversations, images)


# ----------------------------------------------------------------------------------------------
# Bad samples
# ----------------------------------------------------------------------------------------------
def write_dataset_with_bad_samples(assets, directory: Path, bad: int = 3) -> Path:
    samples = json.loads(Path(assets["data"]).read_text())
    images = directory / "images"
    images.mkdir(parents=True)
    for path in (Path(assets["data"]).parent / "images").iterdir():
        (images / path.name).write_bytes(path.read_bytes())
    (images / "corrupt.png").write_bytes(b"\x89PNG\r\n\x1a\n not really a png")
    broken = [
        {"id": "bad-missing", "image": "nowhere.png", "conversations": samples[0]["conversations"]},
        {"id": "bad-corrupt", "image": "corrupt.png", "conversations": samples[0]["conversations"]},
        {"id": "bad-turns", "image": samples[0]["image"], "conversations": [{"from": "gpt", "value": "x"}]},
    ][:bad]
    path = directory / "with_bad.json"
    path.write_text(json.dumps(samples[:10] + broken + samples[10:]))
    return path


def test_bad_samples_are_skipped_counted_and_logged(assets, tmp_path, caplog):
    data = write_dataset_with_bad_samples(assets, tmp_path / "data")
    argv = tiny_argv(assets, tmp_path / "run", "--num_train_epochs", "1", "--max_bad_fraction", "0.2")
    argv[argv.index("--data_path") + 1] = str(data)
    argv[argv.index("--image_folder") + 1] = str(data.parent / "images")
    with caplog.at_level("WARNING", logger="llava_prumerge.training"):
        trainer = run(argv)
    assert trainer.samples_skipped == 3 and trainer.samples_seen == 42  # one epoch, each bad sample once
    messages = " ".join(record.getMessage() for record in caplog.records)
    for sample_id in ("bad-missing", "bad-corrupt", "bad-turns"):
        assert sample_id in messages
    logged = [entry["skipped_samples"] for entry in trainer.state.log_history if "skipped_samples" in entry]
    assert logged[-1] == 3.0


def test_too_many_bad_samples_stop_the_run(assets, tmp_path):
    data = write_dataset_with_bad_samples(assets, tmp_path / "data")
    argv = tiny_argv(assets, tmp_path / "run", "--num_train_epochs", "1", "--max_bad_fraction", "0.01")
    argv[argv.index("--data_path") + 1] = str(data)
    argv[argv.index("--image_folder") + 1] = str(data.parent / "images")
    with pytest.raises(RuntimeError, match="max_bad_fraction=0.01"):
        run(argv)


def test_validate_data_lists_every_problem_with_ids(assets, tmp_path):
    data = write_dataset_with_bad_samples(assets, tmp_path / "data")
    result = subprocess.run(
        [
            str(Path(os.sys.executable)),
            "scripts/validate_data.py",
            "--data-path",
            str(data),
            "--image-folder",
            str(data.parent / "images"),
            "--processor",
            str(assets["llava"]),
            "--report",
            str(tmp_path / "problems.csv"),
        ],
        cwd=ROOT,
        capture_output=True,
        text=True,
        env=ENV,
        timeout=300,
    )
    assert result.returncode == 1, result.stderr[-2000:]
    assert "missing_image     bad-missing" in result.stdout
    assert "unreadable_image  bad-corrupt" in result.stdout
    assert "malformed         bad-turns" in result.stdout
    assert "ok=39" in result.stdout
    assert len((tmp_path / "problems.csv").read_text().strip().splitlines()) == 4


def test_validation_builds_later_turn_placeholders_as_training_does(assets, processor, tmp_path):
    """A placeholder in a later turn is one image token (validation and training agree); one in an
    answer is reported as malformed instead of failing the run later."""
    samples = json.loads(Path(assets["data"]).read_text())
    image = next(s["image"] for s in samples if s.get("image"))
    later = [
        {"from": "human", "value": "Hi."},
        {"from": "gpt", "value": "Hello."},
        {"from": "human", "value": "And this? <image>"},
        {"from": "gpt", "value": "a cat"},
    ]
    in_answer = [{"from": "human", "value": "What?"}, {"from": "gpt", "value": "<image> a cat"}]
    data = tmp_path / "data.json"
    data.write_text(
        json.dumps(
            [
                {"id": "later-turn", "image": image, "conversations": later},
                {"id": "in-answer", "image": image, "conversations": in_answer},
            ]
        )
    )
    settings = DataSettings(data_path=str(data), image_folder=str(assets["data"].parent / "images"))
    problems, counts = validate_dataset(settings, processor.tokenizer, processor.image_processor, 144, progress=False)
    assert [(sample_id, kind) for sample_id, kind, _ in problems] == [("in-answer", "malformed")]
    assert counts["ok"] == 1
    dataset = LlavaInstructionDataset(settings, processor.tokenizer, processor.image_processor, 144)
    item = dataset[0]
    image_id = processor.tokenizer.convert_tokens_to_ids("<image>")
    assert item["input_ids"].count(image_id) == 1 and item["pixel_values"].shape[0] == 1
    text = processor.tokenizer.decode(item["input_ids"])
    assert text.endswith("USER: Hi. ASSISTANT: Hello.</s>USER: <image>\nAnd this? ASSISTANT: a cat</s>")


def test_evaluation_pads_with_the_training_colour(processor):
    """LLaVA-1.5's ``expand2square(image, tuple(int(x * 255) for x in image_mean))``: CLIP's mean
    (0.48145466, 0.4578275, 0.40821073) truncates to (122, 116, 104), where rounding gives 123, 117."""
    from types import SimpleNamespace

    from llava_prumerge.evaluation.lmms_eval_model import LlavaPruMerge
    from llava_prumerge.images import pad_colour

    clip_mean = SimpleNamespace(image_mean=[0.48145466, 0.4578275, 0.40821073])
    assert pad_colour(clip_mean) == (122, 116, 104)
    evaluator = SimpleNamespace(image_aspect_ratio="pad", processor=SimpleNamespace(image_processor=clip_mean))
    padded = LlavaPruMerge._prepare_image(evaluator, Image.new("RGB", (40, 20), (255, 0, 0)))
    assert padded.size == (40, 40)
    assert padded.getpixel((0, 0)) == (122, 116, 104) and padded.getpixel((20, 20)) == (255, 0, 0)


def test_image_padding_uses_the_mean_colour(assets, processor):
    settings = DataSettings(data_path=str(assets["data"]), image_folder=str(assets["data"].parent / "images"))
    dataset = LlavaInstructionDataset(settings, processor.tokenizer, processor.image_processor, 144)
    wide = next(i for i, s in enumerate(dataset.samples) if s.get("image") == "text.png")  # 448 x 172
    pixels = dataset.build(wide)["pixel_values"][0]
    top_row = pixels[:, 0, :]  # padding band: the mean colour normalises to ~0
    assert top_row.abs().max() < 0.02
    with Image.open(Path(settings.image_folder) / "text.png") as image:
        assert image.width > image.height


# ----------------------------------------------------------------------------------------------
# LoRA placement, reload, merge, stage-2 start
# ----------------------------------------------------------------------------------------------
def test_in_process_finetune_changes_only_lora_and_projector_and_reloads_exactly(assets, tmp_path, processor, photos):
    trainer = run(tiny_argv(assets, tmp_path / "run", "--num_train_epochs", "1"))
    model = trainer.model.eval()
    base = LlavaPruMergeForConditionalGeneration.from_pretrained(assets["llava"])
    base_state = base.state_dict()
    changed, trained_lora = [], []
    for name, value in model.named_parameters():
        plain = name.replace("base_model.model.", "", 1).replace(".base_layer", "")
        plain = plain.replace(".modules_to_save.default", "").replace(".original_module", "")
        if plain in base_state and not torch.equal(value.detach(), base_state[plain]):
            changed.append(name)
        if "lora_B" in name and value.abs().sum() > 0:
            trained_lora.append(name)
        if value.requires_grad:
            assert "lora_" in name or "multi_modal_projector.modules_to_save" in name, name
    # of the base model's own weights only the projector (trained fully) changed; LoRA B moved off zero
    assert changed and all("multi_modal_projector.modules_to_save" in name for name in changed), changed
    assert trained_lora
    targets = lora_target_modules(base)
    assert targets and all(".language_model." in f".{t}." for t in targets)
    assert not any("vision_tower" in t or "multi_modal_projector" in t or "lm_head" in t for t in targets)
    saved = load_file(tmp_path / "run" / "adapter_model.safetensors")
    assert all("lora_" in key or "multi_modal_projector" in key for key in saved)

    processor.tokenizer.padding_side = "left"
    inputs = processor(
        images=photos[:2], text=["USER: <image>\nWhat? ASSISTANT:"] * 2, return_tensors="pt", padding=True
    )
    with torch.no_grad():
        expected = model(**inputs).logits
        reloaded, _ = load_finetuned(tmp_path / "run")
        assert torch.equal(reloaded(**inputs).logits, expected)
    assert reloaded.base_model.model.token_reduction == TokenReductionConfig()

    merged_dir = tmp_path / "merged"
    result = subprocess.run(
        [os.sys.executable, "scripts/merge_lora.py", "--adapter", str(tmp_path / "run"), "--output", str(merged_dir)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        env=ENV,
        timeout=300,
    )
    assert result.returncode == 0, result.stderr[-2000:]
    merged = LlavaPruMergeForConditionalGeneration.from_pretrained(merged_dir).eval()
    assert merged.token_reduction == TokenReductionConfig()
    with torch.no_grad():  # merging W + scale·BA reorders float sums: equal up to rounding
        assert_close_at_scale(merged(**inputs).logits, expected)


def test_stage2_start_assembles_the_same_model(assets, tmp_path, processor, photos):
    spec = BaseModelSpec(
        language_model=str(assets["language_model"]),
        vision_tower=str(assets["vision_tower"]),
        mm_projector=str(assets["mm_projector"]),
    )
    assembled, assembled_processor = assemble_stage2(spec, TokenReductionConfig())
    reference = LlavaPruMergeForConditionalGeneration.from_pretrained(assets["llava"]).eval()
    inputs = processor(images=photos[:1], text=["USER: <image>\nWhat? ASSISTANT:"], return_tensors="pt")
    assert torch.equal(
        assembled_processor(images=photos[:1], text=["USER: <image>\nWhat? ASSISTANT:"], return_tensors="pt")[
            "input_ids"
        ],
        inputs["input_ids"],
    )
    with torch.no_grad():
        assert torch.equal(assembled.eval()(**inputs).logits, reference(**inputs).logits)
    argv = tiny_argv(assets, tmp_path / "run", "--num_train_epochs", "1", "--max_steps", "2")
    position = argv.index("--model_name_or_path")
    del argv[position : position + 2]
    argv += [
        "--language_model",
        spec.language_model,
        "--vision_tower",
        spec.vision_tower,
        "--mm_projector",
        spec.mm_projector,
    ]
    trainer = run(argv)
    assert trainer.state.global_step == 2
    reloaded, _ = load_finetuned(tmp_path / "run")
    assert reloaded.base_model.model.config.image_token_id == reference.config.image_token_id


# ----------------------------------------------------------------------------------------------
# The real entry point: DeepSpeed ZeRO-2 on the CPU accelerator
# ----------------------------------------------------------------------------------------------
def launch(output_dir: Path, *extra: str, wait: bool = True):
    command = ["bash", "scripts/finetune_lora.sh", "configs/train/tiny.yaml", "--output_dir", str(output_dir), *extra]
    env = {**ENV, "PYTHON": os.sys.executable, "WANDB_DIR": str(output_dir.parent)}
    if not wait:
        return subprocess.Popen(
            command, cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True
        )
    result = subprocess.run(command, cwd=ROOT, env=env, capture_output=True, text=True, timeout=900)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    return result


@pytest.fixture(scope="module")
def finetuned(tmp_path_factory):
    output_dir = tmp_path_factory.mktemp("deepspeed") / "tiny-lora"
    launch(output_dir)
    return output_dir


def test_tiny_finetune_through_deepspeed(finetuned):
    state = json.loads((finetuned / "trainer_state.json").read_text())
    steps = [entry for entry in state["log_history"] if "loss" in entry]
    per_epoch = {}
    for entry in steps:
        per_epoch.setdefault(int(entry["epoch"] - 1e-9), []).append(entry["loss"])
    first, last = per_epoch[min(per_epoch)], per_epoch[max(per_epoch)]
    assert sum(last) / len(last) < sum(first) / len(first) - 0.5, per_epoch
    with_images = [entry for entry in steps if "visual_tokens_mean" in entry]  # text-only batches log none
    assert len(with_images) >= len(steps) - 3
    for entry in with_images:
        assert entry["visual_tokens_min"] <= entry["visual_tokens_mean"] <= entry["visual_tokens_max"] <= 145
        assert 0 < entry["visual_token_share"] < 1
    assert all(entry["tokens_per_second"] > 0 for entry in steps)
    assert json.loads((finetuned / "token_reduction.json").read_text()) == TokenReductionConfig().to_dict()
    assert (finetuned / "adapter_model.safetensors").is_file() and (finetuned / "base_model.json").is_file()
    runs = list((finetuned.parent / "wandb").glob("offline-run-*/run-*.wandb"))
    assert len(runs) == 1  # wandb offline: config and history are records in this file
    records = runs[0].read_bytes()
    for text in (b"token_reduction", b"prumerge-tiny-lora", b"visual_tokens_mean", b"visual_token_share"):
        assert text in records, text


def test_killed_run_resumes_to_the_same_adapter(finetuned, tmp_path):
    output_dir = tmp_path / "tiny-lora"
    process = launch(output_dir, wait=False)
    marker = output_dir / "checkpoint-4" / "llava_prumerge_settings.json"
    deadline = time.time() + 600
    while not marker.exists():
        assert process.poll() is None, "training ended before its first checkpoint"
        assert time.time() < deadline, "no checkpoint-4 after 10 minutes"
        time.sleep(0.05)
    os.killpg(process.pid, signal.SIGKILL)
    process.wait()
    assert not (output_dir / "adapter_model.safetensors").exists()  # it really died mid-run
    launch(output_dir, "--resume", "true")
    resumed = load_file(output_dir / "adapter_model.safetensors")
    uninterrupted = load_file(finetuned / "adapter_model.safetensors")
    assert resumed.keys() == uninterrupted.keys()
    for key in resumed:
        torch.testing.assert_close(resumed[key], uninterrupted[key], atol=1e-6, rtol=1e-5)


def test_modality_length_grouping_keeps_batches_single_modality():
    from llava_prumerge.training.sampler import ModalityLengthGroupedSampler

    lengths = [5, -3, 8, 12, -7, 2, 9, -1, 4, 6, -2, 11]  # > 0: with image, < 0: text only
    sampler = ModalityLengthGroupedSampler(lengths, batch_size=2, seed=3)
    order = list(sampler)
    assert sorted(order) == list(range(len(lengths)))
    batches = [order[i : i + 2] for i in range(0, len(order), 2)]
    assert all(len({lengths[i] > 0 for i in batch}) == 1 for batch in batches[:-1])  # only the last may mix
    assert order == list(ModalityLengthGroupedSampler(lengths, batch_size=2, seed=3))  # reproducible
    sampler.set_epoch(1)
    assert list(sampler) != order  # a new order each epoch
