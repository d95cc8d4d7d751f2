"""Launching and several processes on DeepSpeed's CPU accelerator (gloo): the launcher outside
``.venv/``, two ranks under ZeRO-3, a rank with text-only micro-batches, and the dummy image path."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import torch

from llava_prumerge.config import TokenReductionConfig
from llava_prumerge.tiny.setting import build_tiny_model, write_tiny_assets
from llava_prumerge.training.checkpoints import BaseModelSpec, assemble_stage2

ROOT = Path(__file__).parents[1]
ENV = {**os.environ, "WANDB_MODE": "offline", "HF_HUB_OFFLINE": "1"}


def run_process_group(command: list[str], cwd: Path, env: dict, timeout: int) -> subprocess.CompletedProcess:
    """Run ``command`` in its own session; on timeout kill the whole group (launcher and ranks)."""
    process = subprocess.Popen(
        command, cwd=cwd, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, start_new_session=True
    )
    try:
        output, _ = process.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)
        output, _ = process.communicate()
        pytest.fail(f"{' '.join(command[:4])} ... did not finish within {timeout} s:\n{output[-4000:]}")
    return subprocess.CompletedProcess(command, process.returncode, output, "")


def venv_less_env(**extra: str) -> dict:
    """An activated virtual environment without ``./.venv``: its bin first on PATH, no PYTHON."""
    env = {key: value for key, value in ENV.items() if key != "PYTHON"}
    env["VIRTUAL_ENV"] = sys.prefix
    env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}"
    env.update(extra)
    return env


@pytest.fixture
def repo_copy(tmp_path):
    """The launcher's inputs (scripts/, configs/) without ``.venv/``; the package is installed."""
    copy = tmp_path / "repo"
    for name in ("scripts", "configs"):
        shutil.copytree(ROOT / name, copy / name)
    return copy


# ----------------------------------------------------------------------------------------------
# The launcher
# ----------------------------------------------------------------------------------------------
@pytest.mark.slow
def test_two_cpu_processes_under_zero3_launched_from_an_activated_env_without_dot_venv(repo_copy):
    """The launcher runs ``python -m deepspeed.launcher.runner`` (no ``.venv/bin/deepspeed``), and
    two ranks on DeepSpeed's CPU accelerator agree on the world size (tiny.yaml's use_cpu: true)."""
    assert not (repo_copy / ".venv").exists()
    output_dir = repo_copy / "out"
    command = [
        "bash",
        "scripts/finetune_lora.sh",
        "configs/train/tiny.yaml",
        "--deepspeed",
        "configs/deepspeed/zero3.json",
    ]
    command += ["--per_device_train_batch_size", "2", "--global_batch_size", "4", "--max_steps", "1"]
    command += ["--save_strategy", "no", "--report_to", "none", "--output_dir", str(output_dir)]
    result = run_process_group(command, repo_copy, venv_less_env(NUM_GPUS="2"), timeout=300)
    assert result.returncode == 0, result.stdout[-4000:]
    assert "deepspeed: No such file" not in result.stdout
    state = json.loads((output_dir / "trainer_state.json").read_text())
    assert state["global_step"] == 1
    args = torch.load(output_dir / "training_args.bin", weights_only=False)
    assert args.gradient_accumulation_steps == 1  # 4 = 2 per device x 2 processes x 1
    assert (output_dir / "adapter_model.safetensors").is_file()


def test_flags_without_a_config_use_the_default_config(repo_copy):
    """``finetune_lora.sh --flag value``: the default config is read and every flag is kept (the
    global batch of 100 is checked against the default config's per-device batch of 16; the
    dataclass default is 8)."""
    command = ["bash", "scripts/finetune_lora.sh", "--global_batch_size", "100", "--report_to", "none"]
    result = run_process_group(command, repo_copy, venv_less_env(), timeout=240)
    assert result.returncode != 0
    assert "global_batch_size=100 is not a multiple of per_device_train_batch_size=16" in result.stdout, result.stdout[
        -4000:
    ]


# ----------------------------------------------------------------------------------------------
# Text-only micro-batches: the vision side still runs (same modules on every rank)
# ----------------------------------------------------------------------------------------------
def text_only_batch(model, rows: int = 2, length: int = 12) -> dict[str, torch.Tensor]:
    generator = torch.Generator().manual_seed(0)
    input_ids = torch.randint(5, model.config.text_config.vocab_size, (rows, length), generator=generator)
    attention_mask = torch.ones_like(input_ids)
    attention_mask[1, -3:] = 0
    labels = input_ids.masked_fill(attention_mask == 0, -100)
    return {"input_ids": input_ids, "attention_mask": attention_mask, "labels": labels}


@pytest.mark.parametrize("method", ["prumerge", "none"])
def test_dummy_image_leaves_the_loss_and_gradients_of_a_text_only_batch_unchanged(method):
    model = build_tiny_model(method).train()
    batch = text_only_batch(model)
    projector_calls = []
    model.model.multi_modal_projector.register_forward_hook(lambda *_: projector_calls.append(1))
    results = {}
    for dummy in (False, True):
        model.zero_grad(set_to_none=True)
        model.text_only_dummy_image = dummy
        torch.manual_seed(1)
        loss = model(**batch).loss
        loss.backward()
        grads = {name: None if p.grad is None else p.grad.clone() for name, p in model.named_parameters()}
        results[dummy] = (loss.detach(), grads, len(projector_calls))
    (plain_loss, plain_grads, calls_plain), (dummy_loss, dummy_grads, calls_total) = results[False], results[True]
    assert calls_plain == 0 and calls_total == 1  # the projector ran once, on the zero image
    assert torch.equal(plain_loss, dummy_loss)
    for name, grad in plain_grads.items():
        if grad is None:  # the vision side: untouched without the dummy, zero gradients with it
            assert dummy_grads[name] is None or not dummy_grads[name].any(), name
        else:
            assert torch.equal(grad, dummy_grads[name]), name
    assert any("multi_modal_projector" in name and g is not None for name, g in dummy_grads.items())

    model.eval()  # never in evaluation, and by default not in a single process
    model.text_only_dummy_image = None
    assert not model.runs_dummy_image()
    model.train()
    assert not model.runs_dummy_image()
    with torch.no_grad():
        model.text_only_dummy_image = True
        assert not model.runs_dummy_image()


DRIVER = textwrap.dedent(
    """
    import json, os, sys
    import deepspeed
    import torch
    from llava_prumerge.training import run, trainer as training

    rank = int(os.environ["RANK"])
    out = os.environ["DUMP_DIR"]
    with_images = []
    original = training.PruMergeTrainer.compute_loss

    def compute_loss(self, model, inputs, *args, **kwargs):
        with_images.append("pixel_values" in inputs)
        return original(self, model, inputs, *args, **kwargs)

    training.PruMergeTrainer.compute_loss = compute_loss
    trainer = run.run(sys.argv[1:])
    trained = [(n, p) for n, p in trainer.model.named_parameters() if p.requires_grad]
    with deepspeed.zero.GatheredParameters([p for _, p in trained]):  # ZeRO-3 partitions them
        state = {n: p.detach().clone() for n, p in trained}
    torch.save(state, os.path.join(out, f"trained-rank{rank}.pt"))
    with open(os.path.join(out, f"batches-rank{rank}.json"), "w") as f:
        json.dump(with_images, f)
    """
)


@pytest.mark.slow
def test_text_only_rank_under_zero3_finishes_with_the_same_adapter_on_both_ranks(tmp_path):
    """Two ranks, ZeRO-3: one rank's micro-batches are all text-only, the other's all have images.
    Two image + two text-only samples, 2 per device: the modality-grouped sampler puts the images in
    one per-device batch and the texts in the other, and accelerate gives batch i to rank i.
    Runs with ``--use_cpu false`` (DeepSpeed's CPU accelerator sets it true) from the stage-2 start,
    whose parts are loaded partitioned (``assemble_stage2`` under ZeRO-3)."""
    assets = write_tiny_assets(tmp_path / "assets")
    samples = json.loads(assets["data"].read_text())
    images = [s for s in samples if "image" in s][:2]
    texts = [s for s in samples if "image" not in s][:2]
    data = tmp_path / "mixed.json"
    data.write_text(json.dumps(texts + images))
    (tmp_path / "driver.py").write_text(DRIVER)
    dump = tmp_path / "dump"
    dump.mkdir()
    command = [sys.executable, "-m", "deepspeed.launcher.runner", "--num_gpus", "2", str(tmp_path / "driver.py")]
    command += [str(ROOT / "configs/train/tiny.yaml"), "--language_model", str(assets["language_model"])]
    command += ["--vision_tower", str(assets["vision_tower"]), "--mm_projector", str(assets["mm_projector"])]
    command += ["--data_path", str(data), "--image_folder", str(assets["data"].parent / "images")]
    command += ["--deepspeed", str(ROOT / "configs/deepspeed/zero3.json"), "--use_cpu", "false"]
    command += ["--per_device_train_batch_size", "2", "--global_batch_size", "4", "--num_train_epochs", "2"]
    command += ["--save_strategy", "no", "--report_to", "none", "--output_dir", str(tmp_path / "run")]
    env = {**ENV, "DS_ACCELERATOR": "cpu", "DUMP_DIR": str(dump), "WANDB_DIR": str(tmp_path)}
    result = run_process_group(command, tmp_path, env, timeout=300)
    assert result.returncode == 0, result.stdout[-4000:]
    batches = [json.loads((dump / f"batches-rank{rank}.json").read_text()) for rank in (0, 1)]
    assert sorted(batches) == [[False, False], [True, True]], batches  # one rank text-only throughout
    states = [torch.load(dump / f"trained-rank{rank}.pt") for rank in (0, 1)]
    assert states[0].keys() == states[1].keys() and any("lora_B" in key for key in states[0])
    for key in states[0]:
        assert torch.equal(states[0][key], states[1][key]), key
    assert any(states[0][key].abs().sum() > 0 for key in states[0] if "lora_B" in key)  # it trained


def test_stage2_parts_are_used_in_the_training_dtype_without_copies(tmp_path):
    assets = write_tiny_assets(tmp_path / "assets")
    spec = BaseModelSpec(
        language_model=str(assets["language_model"]),
        vision_tower=str(assets["vision_tower"]),
        mm_projector=str(assets["mm_projector"]),
    )
    model, _ = assemble_stage2(spec, TokenReductionConfig(), dtype=torch.bfloat16)
    tensors = [*model.parameters(), *model.buffers()]
    assert not any(t.is_meta for t in tensors)
    assert {p.dtype for p in model.parameters()} == {torch.bfloat16}
    assert model.config.text_config is model.model.language_model.config  # one config per part
    assert model.config.vision_config is model.model.vision_tower.config
