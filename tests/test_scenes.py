"""The synthetic scenes of the trained tiny testbed: rendering, questions, prompts and test sets."""

from __future__ import annotations

import json
import random
from pathlib import Path

import numpy as np
import pytest
from scipy import ndimage

from llava_prumerge.tiny.scenes import (
    ALL_OBJECTS,
    POPULARITY,
    RGB,
    SceneSetSizes,
    absent_object,
    render_scene,
    sample_scene,
    write_scene_benchmarks,
    write_scene_training_data,
)

TINY_SETS = SceneSetSizes(pope=6, vqav2=8, textvqa=4, sqa=8, mmbench=8, mme=2)


@pytest.fixture(scope="module")
def scene_sets(tmp_path_factory) -> Path:
    return write_scene_benchmarks(tmp_path_factory.mktemp("scene-sets"), TINY_SETS, seed=3)


def _parquet(root: Path, repo: str, config: str, split: str) -> list[dict]:
    from datasets import load_dataset

    files = str(root / repo / config / f"{split}-00000-of-00001.parquet")
    return list(load_dataset("parquet", data_files=files, split="train"))


def _blobs(image: np.ndarray, rgb: tuple[int, int, int]) -> int:
    """Connected regions of exactly ``rgb`` (the renderer leaves a gap of a pixel or more between items)."""
    return ndimage.label(np.all(image == np.array(rgb), axis=-1))[1]


def test_rendered_pixels_show_the_scene_objects():
    """Each colour's shapes are separate blobs of that exact colour: what questions say is drawn."""
    rng = random.Random(11)
    for _ in range(40):
        scene = sample_scene(rng)
        pixels = np.asarray(render_scene(scene))
        assert pixels.shape == (48, 48, 3)
        for colour, rgb in RGB.items():
            assert _blobs(pixels, rgb) == len(scene.of_colour(colour)), (colour, scene)


def test_scenes_vary_in_clutter_and_are_deterministic():
    first = [sample_scene(random.Random(5)) for _ in range(2)]
    assert first[0] == first[1]
    assert np.array_equal(np.asarray(render_scene(first[0])), np.asarray(render_scene(first[1])))
    rng = random.Random(6)
    counts = {len(sample_scene(rng).objects) for _ in range(200)}
    assert counts == {1, 2, 3, 4, 5, 6}


def test_pope_negatives_follow_the_split_rules():
    rng = random.Random(2)
    for _ in range(50):
        scene = sample_scene(rng)
        popular = absent_object(scene, rng, "popular")
        assert not scene.has(*popular)
        assert all(scene.has(*o) for o in POPULARITY[: POPULARITY.index(popular)])  # the most frequent absent one
        adversarial = absent_object(scene, rng, "adversarial")
        if adversarial is not None:
            assert not scene.has(*adversarial)
            assert any(adversarial[0] == o.colour or adversarial[1] == o.shape for o in scene.objects)
        assert not scene.has(*absent_object(scene, rng, "random"))
    assert len(ALL_OBJECTS) == 15


def test_training_data_is_deterministic_and_loads(tmp_path):
    from llava_prumerge.tiny.testbed import PATCHES, image_processor, scene_corpus, train_scene_tokenizer
    from llava_prumerge.training.dataset import DataSettings, LlavaInstructionDataset

    first = write_scene_training_data(tmp_path / "a", 12, seed=4)
    second = write_scene_training_data(tmp_path / "b", 12, seed=4)
    other = write_scene_training_data(tmp_path / "c", 12, seed=5)
    assert first["instruct"].read_text() == second["instruct"].read_text()
    assert first["instruct"].read_text() != other["instruct"].read_text()
    assert (tmp_path / "a/images/scene00003.png").read_bytes() == (tmp_path / "b/images/scene00003.png").read_bytes()
    tokenizer = train_scene_tokenizer(scene_corpus(first), 300)
    assert tokenizer.get_vocab() == train_scene_tokenizer(scene_corpus(second), 300).get_vocab()
    settings = DataSettings(data_path=str(first["instruct"]), image_folder=str(tmp_path / "a/images"))
    dataset = LlavaInstructionDataset(settings, tokenizer, image_processor(), PATCHES)
    example = dataset[0]
    answers = [turn["value"] for turn in json.loads(first["instruct"].read_text())[0]["conversations"][1::2]]
    supervised = tokenizer.decode([t for t in list(example["labels"]) if t != -100])
    for answer in answers:
        assert answer in supervised
    assert "<unk>" not in tokenizer.convert_ids_to_tokens(list(example["input_ids"]))


def test_training_questions_are_single_turn_and_cover_each_scene(tmp_path):
    """One question per sample: in a conversation about one scene, earlier answers give later ones away."""
    paths = write_scene_training_data(tmp_path, 30, seed=1)
    instruct = json.loads(paths["instruct"].read_text())
    captions = json.loads(paths["captions"].read_text())
    assert all(len(sample["conversations"]) == 2 for sample in instruct)
    assert all(sample["conversations"][0]["value"].startswith("<image>\n") for sample in instruct)
    per_scene = {}
    for sample in instruct:
        per_scene.setdefault(sample["image"], []).append(sample["conversations"][0]["value"])
    assert set(per_scene) == {caption["image"] for caption in captions}
    assert all(4 <= len(questions) <= 6 for questions in per_scene.values())
    assert len({sample["id"] for sample in instruct}) == len(instruct)


def test_tower_pretraining_trains_patches_first(monkeypatch):
    """The patch loss weights objects and labels up; the CLS heads join in the second half."""
    import torch

    from llava_prumerge.tiny import testbed

    probe = testbed.SceneProbe(8)
    patches, pooled = torch.randn(2, 5, 8), torch.randn(2, 8)
    targets = {
        "patch": torch.tensor([[0, 0, 3, 16, 0], [1, 0, 0, 0, 0]]),
        "presence": torch.zeros(2, 15),
        "count": torch.tensor([2, 1]),
        "label": torch.tensor([1, 0]),
        "per_shape": torch.zeros(2, 3, dtype=torch.long),
    }
    # weighted mean cross entropy, computed by hand: weight 1 on background, OBJECT_PATCH_WEIGHT elsewhere
    log_p = torch.log_softmax(probe.patch(patches), -1).flatten(0, 1)
    labels = targets["patch"].flatten()
    weights = torch.where(labels == 0, 1.0, testbed.OBJECT_PATCH_WEIGHT)
    by_hand = -(weights * log_p[torch.arange(len(labels)), labels]).sum() / weights.sum()
    assert torch.allclose(probe.loss(pooled, patches, targets, cls=False), by_hand)
    assert probe.loss(pooled, patches, targets) > by_hand
    phases, attention_steps = [], []
    original = testbed.SceneProbe.loss
    monkeypatch.setattr(
        testbed.SceneProbe, "loss", lambda self, *a, cls=True: phases.append(cls) or original(self, *a, cls=cls)
    )
    original_attention = testbed.attention_loss
    monkeypatch.setattr(
        testbed, "attention_loss", lambda *a: attention_steps.append(len(phases)) or original_attention(*a)
    )
    tower = testbed.pretrain_vision_tower(steps=4, batch=2)
    assert phases == [False, False, True, True]
    assert attention_steps == [3, 4]  # the CLS attention loss joins the CLS heads in the second half
    hidden = tower(pixel_values=torch.zeros(1, 3, 48, 48)).last_hidden_state
    assert hidden.shape[1] == testbed.PATCHES + 1 == 65  # CLS + an 8 x 8 grid


def test_item_centres_and_the_attention_loss():
    """One target patch per item (shape or label) at its centre; the loss is the cross entropy from
    PruMerge's single-head CLS attention of the block after layer -2 to those patches."""
    import torch
    from transformers import CLIPVisionModel

    from llava_prumerge.tiny import testbed
    from llava_prumerge.tiny.scenes import Scene, SceneObject

    objects = (SceneObject("circle", "red", "large", 0, 0), SceneObject("square", "blue", "small", 30, 20))
    scene = Scene(objects, "plain", ((50, 50, 50), (50, 50, 50)), "cat", (40, 36, 48, 48), seed=0)
    # centres (6.5, 6.5), (34, 24) and the label's (44, 42) on the 8 x 8 grid of 6-px patches
    assert torch.nonzero(testbed.item_centres(scene)).flatten().tolist() == [1 * 8 + 1, 4 * 8 + 5, 7 * 8 + 7]

    torch.manual_seed(0)
    tower = CLIPVisionModel(testbed.vision_config()).eval()
    features = torch.randn(2, testbed.PATCHES + 1, 64)
    centres = torch.zeros(2, testbed.PATCHES)
    centres[0, [3, 10]] = 1
    centres[1, 7] = 1
    block = tower.encoder.layers[-1]
    normed = block.layer_norm1(features)
    q, k = block.self_attn.q_proj(normed), block.self_attn.k_proj(normed)
    attention = torch.softmax(torch.einsum("bc,bnc->bn", q[:, 0], k) / 8, dim=-1)[:, 1:]  # sqrt(64) = 8
    by_hand = -(attention[0, 3].log() + attention[0, 10].log()) / 4 - attention[1, 7].log() / 2
    assert torch.allclose(testbed.attention_loss(tower, features, centres), by_hand, atol=1e-6)


def test_answers_match_the_pixels(scene_sets):
    """Counting and colour answers re-derived from the stored images, not from the generator."""
    rows = _parquet(scene_sets, "VQAv2", "default", "validation")
    checked = 0
    for row in rows:
        pixels = np.asarray(row["image"].convert("RGB"))
        if row["question"] == "How many shapes are there?":
            blobs = sum(_blobs(pixels, rgb) for rgb in RGB.values())
            assert str(blobs) == row["multiple_choice_answer"]
            checked += 1
        elif row["question"].startswith("What color is the"):
            assert _blobs(pixels, RGB[row["multiple_choice_answer"]]) >= 1
            checked += 1
    assert checked >= 2


def test_test_sets_follow_the_lmms_eval_prompts(scene_sets):
    """The training prompts are built by our functions; here they must equal lmms-eval's own
    ``doc_to_text`` on the written rows (so the model is evaluated on the format it learned)."""
    from lmms_eval.tasks.mmbench.en_utils import mmbench_doc_to_text
    from lmms_eval.tasks.mme.utils import mme_doc_to_text
    from lmms_eval.tasks.pope.utils import pope_doc_to_text
    from lmms_eval.tasks.scienceqa.utils import sqa_doc_to_text
    from lmms_eval.tasks.vqav2.utils import vqav2_doc_to_text

    from llava_prumerge.tiny.scenes import mmbench_prompt, short_answer_prompt, sqa_prompt

    short = {"pre_prompt": "", "post_prompt": "\nAnswer the question using a single word or phrase."}
    letter = {"pre_prompt": "", "post_prompt": "\nAnswer with the option's letter from the given choices directly."}
    for row in _parquet(scene_sets, "POPE", "Full", "adversarial"):
        assert pope_doc_to_text(row, short) == short_answer_prompt(row["question"])
    for row in _parquet(scene_sets, "VQAv2", "default", "validation"):
        assert vqav2_doc_to_text(row, short) == short_answer_prompt(row["question"])
    for row in _parquet(scene_sets, "MME", "default", "test"):
        assert mme_doc_to_text(row, short) == short_answer_prompt(
            row["question"].removesuffix(" Please answer yes or no.")
        )
    for row in _parquet(scene_sets, "ScienceQA", "ScienceQA-IMG", "test"):
        expected = sqa_prompt(row["question"], tuple(row["choices"]), row["hint"])
        assert sqa_doc_to_text(row, letter | {"format": "default"}) == expected
    for row in _parquet(scene_sets, "MMBench", "en", "dev"):
        options = tuple(row[k] for k in "ABCD" if row[k])
        assert mmbench_doc_to_text(row, letter) == mmbench_prompt(row["question"], options, row["hint"])


def test_scene_objects_cover_every_scored_row(scene_sets):
    items = json.loads((scene_sets / "scene_objects.json").read_text())
    expected_rows = {
        "pope_adv_llava15": TINY_SETS.pope,
        "pope_pop_llava15": TINY_SETS.pope,
        "pope_random_llava15": TINY_SETS.pope,
        "vqav2_val": TINY_SETS.vqav2,
        "textvqa_val_llava15": TINY_SETS.textvqa,
        "scienceqa_img_llava15": TINY_SETS.sqa,
        "mmbench_en_dev_static": TINY_SETS.mmbench,
        "mme": TINY_SETS.mme * 4 * 2,
    }
    assert {task: len(docs) for task, docs in items.items()} == expected_rows
    for task, rows in (("pope_adv_llava15", _parquet(scene_sets, "POPE", "Full", "adversarial")),):
        assert [r["answer"] for r in rows].count("yes") == len(rows) // 2
        for doc_id, row in enumerate(rows):
            pixels = np.asarray(row["image"].convert("RGB"))
            shapes = sum(_blobs(pixels, rgb) for rgb in RGB.values())
            assert items[task][str(doc_id)] in (shapes, shapes + 1)  # + 1: the label


def test_mme_pairs_share_their_image(scene_sets):
    rows = _parquet(scene_sets, "MME", "default", "test")
    by_id: dict[str, list[dict]] = {}
    for row in rows:
        by_id.setdefault(row["question_id"], []).append(row)
    assert len(by_id) == TINY_SETS.mme * 4
    for pair in by_id.values():
        assert sorted(r["answer"] for r in pair) == ["No", "Yes"]
        assert np.array_equal(np.asarray(pair[0]["image"]), np.asarray(pair[1]["image"]))


def test_two_local_copies_of_one_benchmark_never_share_a_cache(tmp_path):
    """``datasets`` keys a local parquet folder's cache by its name and layout only: the scene sets
    and the photo copies (both ``<root>/VQAv2``) would load each other's rows. Each copy's tasks get
    a cache folder of their own, which also changes when the files are rewritten."""
    from datasets import load_dataset

    from llava_prumerge.evaluation.tasks import local_dataset_cache_dir, write_task_yamls

    first = write_scene_benchmarks(tmp_path / "a", TINY_SETS, seed=1)
    second = write_scene_benchmarks(tmp_path / "b", TINY_SETS, seed=2)
    caches = [local_dataset_cache_dir(root / "VQAv2") for root in (first, second)]
    assert caches[0] != caches[1]
    for root, cache in zip((first, second), caches):
        loaded = load_dataset(str(root / "VQAv2"), split="validation", cache_dir=str(cache))
        assert loaded["question"] == [r["question"] for r in _parquet(root, "VQAv2", "default", "validation")]
    first_questions = [r["question"] for r in _parquet(first, "VQAv2", "default", "validation")]
    assert loaded["question"] != first_questions
    yamls = write_task_yamls(tmp_path / "tasks", second)
    assert f"cache_dir: {caches[1]}" in (yamls / "vqav2_val_local.yaml").read_text()
    write_scene_benchmarks(second, TINY_SETS, seed=3)  # rewritten in place: a new cache
    assert local_dataset_cache_dir(second / "VQAv2") != caches[1]
