"""The trained tiny testbed: the start of a LLaVA trained on synthetic scenes, LLaVA's way.

LLaVA-1.5 starts from a pretrained CLIP and a pretrained Vicuna, aligns a projector (stage 1) and
instruction-tunes (stage 2). Nothing pretrained exists at toy size, so this module makes the
parts that ``scripts/scenes.sh`` then trains through our own entry point:

1. :func:`write_scene_training_data` scenes and their LLaVA-format JSON;
2. :func:`train_scene_tokenizer`: a small BPE tokenizer (SentencePiece-style ``▁`` spaces, every
   printable character in its alphabet, so no text is out of vocabulary) fitted on the corpus and
   the prompts of the benchmarks;
3. :func:`pretrain_vision_tower`: a small CLIP-layout ViT (CLS + 8 × 8 patches of 6 px) trained
   from each patch of LLaVA's feature layer (-2) to say which item lies under it, then also from
   its CLS output to say which objects, how many shapes and which label a scene holds, and from
   its CLS attention to look at the items (:func:`attention_loss`). CLIP's CLS attention at
   LLaVA's feature layer is sparse and sits on salient content (paper Sec. 3.2, Figs. 2-3): that
   is PruMerge's premise, learnt by CLIP from 400M image-text pairs. The heads alone did not
   teach it here: the attention went to the label and bright items, 12% of it on the shapes, and
   PruMerge's kept tokens covered a third of the shapes. So the premise is trained in directly,
   and the testbed tests PruMerge's machinery given its premise, not the premise. Like CLIP's,
   its patch features say what they show, which LLaVA's projector and language model then read;
4. a random-weight tiny Llama with that tokenizer and a random projector (``mm_projector.bin``
   with LLaVA's keys): start point (b) of the training recipe.

Departure from LLaVA: the toy Llama has never seen text, so stage 1 (``configs/train/scenes_stage1.yaml``)
trains it together with the projector on the captions instead of the projector alone.
"""

from __future__ import annotations

import json
import random
import string
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from tokenizers import Tokenizer, decoders, models, normalizers, pre_tokenizers, processors, trainers
from transformers import (
    CLIPImageProcessor,
    CLIPVisionConfig,
    CLIPVisionModel,
    LlamaConfig,
    LlamaForCausalLM,
    PreTrainedTokenizerFast,
)

from ..conversation import IMAGE_TOKEN, VICUNA_V1_SYSTEM
from ..reduction import cls_attention
from .scenes import (
    ALL_OBJECTS,
    MAX_SHAPES,
    MMBENCH_SYSTEM,
    SCENE_IMAGE_SIZE,
    SHORT,
    SQA_LETTER,
    TEXTS,
    render_item_mask,
    render_scene,
    sample_scene,
    write_scene_training_data,
)
from .setting import tiny_text_config

TESTBED_VERSION = "4"
"""Bumped whenever the scenes, tokenizer or start models change, so stale outputs get rebuilt."""
PATCH_SIZE = 6
PATCHES = (SCENE_IMAGE_SIZE // PATCH_SIZE) ** 2
"""Visual tokens per image: an 8 × 8 grid (LLaVA-1.5: 24 × 24 = 576)."""
OBJECT_PATCH_WEIGHT = 5.0
"""Weight of a patch on an object or label in the patch loss (background is ~85% of the patches)."""
ATTENTION_WEIGHT = 1.0
"""Weight of the CLS-attention loss (:func:`attention_loss`) in the second phase of pretraining."""
SPECIALS = ["<unk>", "<s>", "</s>", "<pad>", IMAGE_TOKEN]


@dataclass(frozen=True)
class TestbedSizes:
    """How big the testbed is: training scenes, tower pretraining steps and batch, vocabulary."""

    train_scenes: int = 2000
    vision_steps: int = 600
    vision_batch: int = 64
    vocab_size: int = 512


def vision_config() -> CLIPVisionConfig:
    """CLIP-ViT's layout at toy size: 48 px, 6-px patches (64 + CLS), 4 blocks of width 64."""
    return CLIPVisionConfig(
        hidden_size=64,
        intermediate_size=256,
        num_hidden_layers=4,
        num_attention_heads=4,
        image_size=SCENE_IMAGE_SIZE,
        patch_size=PATCH_SIZE,
        projection_dim=64,
    )


def text_config(tokenizer: PreTrainedTokenizerFast) -> LlamaConfig:
    """A 4-layer Llama of width 128 over ``tokenizer``, input and output embeddings tied.

    Tied, a word's input embedding is the direction that predicts it: once stage 1 has taught the
    projector to map an image token to the words naming what it shows, a question's words and the
    matching image tokens are alike, and "is there a red circle?" is learnt in a few hundred
    steps. Untied, the same model stayed blind to the image on every question for 500 steps
    (answers at chance), though its captions were right.
    """
    return tiny_text_config(
        tokenizer,
        hidden_size=128,
        intermediate_size=352,
        num_hidden_layers=4,
        max_position_embeddings=1024,
        initializer_range=0.02,  # Llama's default (the random tiny setting widens it for a frozen head)
        tie_word_embeddings=True,
    )


def image_processor() -> CLIPImageProcessor:
    """CLIP normalisation at 48 px (the scenes are already square)."""
    size = SCENE_IMAGE_SIZE
    return CLIPImageProcessor(size={"shortest_edge": size}, crop_size={"height": size, "width": size})


def scene_corpus(data: dict[str, Path]) -> list[str]:
    """The texts the tokenizer is fitted on: every turn of the training files and the template."""
    # The template's fixed strings count as often as the samples they wrap, so BPE merges them.
    fixed = [VICUNA_V1_SYSTEM, "USER: ASSISTANT:", SHORT, SQA_LETTER, MMBENCH_SYSTEM, "Context: Reference OCR token:"]
    texts = fixed * 200
    for path in data.values():
        for sample in json.loads(path.read_text()):
            texts.extend(turn["value"].replace(IMAGE_TOKEN, "") for turn in sample["conversations"])
    return texts


def train_scene_tokenizer(texts: list[str], vocab_size: int) -> PreTrainedTokenizerFast:
    """A BPE tokenizer fitted on ``texts``: ``<s>`` first, ``▁`` for spaces, ``<image>`` special."""
    backend = Tokenizer(models.BPE(unk_token="<unk>"))
    backend.normalizer = normalizers.Replace(" ", "▁")
    backend.pre_tokenizer = pre_tokenizers.Metaspace(replacement="▁", prepend_scheme="first", split=True)
    backend.decoder = decoders.Metaspace(replacement="▁", prepend_scheme="first", split=True)
    alphabet = [c for c in string.printable if c not in "\t\r\x0b\x0c "] + ["▁"]
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size, special_tokens=SPECIALS, initial_alphabet=alphabet, show_progress=False
    )
    backend.train_from_iterator(sorted(texts), trainer=trainer)
    backend.post_processor = processors.TemplateProcessing(
        single="<s> $A", pair="<s> $A $B", special_tokens=[("<s>", backend.token_to_id("<s>"))]
    )
    tokenizer = PreTrainedTokenizerFast(
        tokenizer_object=backend, bos_token="<s>", eos_token="</s>", unk_token="<unk>", pad_token="<pad>"
    )
    tokenizer.add_special_tokens({"additional_special_tokens": [IMAGE_TOKEN]})
    return tokenizer


# ---- vision pretraining ---------------------------------------------------------------------


def scene_targets(scene) -> tuple[list[float], int, int, list[int]]:
    """What the tower's CLS must predict: object presence (15), shape count, label (0 = none), per-shape counts."""
    presence = [float(scene.has(colour, shape)) for colour, shape in ALL_OBJECTS]
    label = 0 if scene.text is None else 1 + TEXTS.index(scene.text)
    shapes = sorted({shape for _, shape in ALL_OBJECTS})
    return presence, len(scene.objects), label, [len(scene.of_shape(s)) for s in shapes]


class SceneProbe(torch.nn.Module):
    """Linear heads on the tower's pooled CLS (``pooler_output``): the pretraining objective."""

    def __init__(self, width: int):
        super().__init__()
        self.presence = torch.nn.Linear(width, len(ALL_OBJECTS))
        self.count = torch.nn.Linear(width, MAX_SHAPES + 1)
        self.label = torch.nn.Linear(width, len(TEXTS) + 1)
        self.per_shape = torch.nn.Linear(width, 3 * (MAX_SHAPES + 1))
        self.patch = torch.nn.Linear(width, len(ALL_OBJECTS) + 2)

    def loss(
        self, pooled: torch.Tensor, patches: torch.Tensor, targets: dict[str, torch.Tensor], cls: bool = True
    ) -> torch.Tensor:
        """The patch loss (objects and labels weighted up), plus the CLS heads' losses when ``cls``."""
        cross = torch.nn.functional.cross_entropy
        weight = torch.full((len(ALL_OBJECTS) + 2,), OBJECT_PATCH_WEIGHT)
        weight[0] = 1.0
        patch = cross(self.patch(patches).flatten(0, 1), targets["patch"].flatten(), weight=weight)
        if not cls:
            return patch
        per_shape = self.per_shape(pooled).view(-1, 3, MAX_SHAPES + 1)
        return (
            patch
            + torch.nn.functional.binary_cross_entropy_with_logits(self.presence(pooled), targets["presence"]) * 4
            + cross(self.count(pooled), targets["count"])
            + cross(self.label(pooled), targets["label"])
            + cross(per_shape.flatten(0, 1), targets["per_shape"].flatten())
        )


def _vision_batch(rng: random.Random, processor: CLIPImageProcessor, size: int):
    scenes = [sample_scene(rng) for _ in range(size)]
    pixels = processor(images=[render_scene(s) for s in scenes], return_tensors="pt")["pixel_values"]
    presence, count, label, per_shape = zip(*(scene_targets(s) for s in scenes))
    centre = PATCH_SIZE // 2  # each patch's class is the item under its centre pixel
    patch = [render_item_mask(s)[centre::PATCH_SIZE, centre::PATCH_SIZE].reshape(-1) for s in scenes]
    return pixels, {
        "centres": torch.stack([item_centres(s) for s in scenes]),
        "patch": torch.tensor(np.stack(patch), dtype=torch.long),
        "presence": torch.tensor(presence),
        "count": torch.tensor(count),
        "label": torch.tensor(label),
        "per_shape": torch.tensor(per_shape),
    }


def item_centres(scene) -> torch.Tensor:
    """``[PATCHES]``: 1 at the patch holding the centre of each shape and of the label, 0 elsewhere."""
    grid = SCENE_IMAGE_SIZE // PATCH_SIZE
    centres = torch.zeros(grid * grid)
    points = [(o.x + o.side / 2, o.y + o.side / 2) for o in scene.objects]
    if scene.text_box is not None:
        x0, y0, x1, y1 = scene.text_box
        points.append(((x0 + x1) / 2, (y0 + y1) / 2))
    for x, y in points:
        centres[int(y // PATCH_SIZE) * grid + int(x // PATCH_SIZE)] = 1.0
    return centres


def attention_loss(tower: CLIPVisionModel, features: torch.Tensor, centres: torch.Tensor) -> torch.Tensor:
    """Cross entropy from the CLS attention PruMerge reads to the items' centre patches.

    The attention is :func:`~llava_prumerge.reduction.cls_attention` (single head, spec Sec. 1) of
    the block consuming ``features`` (LLaVA's layer -2), CLS first; the target spreads one unit
    evenly over the patches marked in ``centres`` ``[B, N]`` (:func:`item_centres`). One patch
    per item, not every item patch: then the IQR outliers are about one per item and their count
    rises with clutter; with every item patch as target, a cluttered scene's items filled the
    upper quartile and the fence rose with them (Pearson r of kept tokens and items about -0.07).
    """
    block = tower.encoder.layers[-1]
    normed = block.layer_norm1(features)
    attention = cls_attention(block.self_attn.q_proj(normed), block.self_attn.k_proj(normed))
    target = centres / centres.sum(dim=1, keepdim=True).clamp_min(1.0)
    return -(target * attention.clamp_min(1e-12).log()).sum(dim=1).mean()


def pretrain_vision_tower(steps: int, batch: int = 64, seed: int = 0, log_every: int = 100) -> CLIPVisionModel:
    """Train a fresh tower (:func:`vision_config`) for ``steps`` on freshly drawn scenes.

    Two phases. The first half trains the patches alone; the second adds the CLS heads. Trained
    on everything from the start, the CLS losses dominated: after 600 steps a linear probe on the
    patches told the item under a patch for only about 60% of object patches (the colour right,
    the shape at chance). The CLS presence heads were then barely above always "absent". Trained
    patches-first, the patches reached about 95%. The CLS heads then learnt on top, but weakly:
    about 87% per-object presence after 600 steps, close to always saying "absent". A shape is
    only told apart by its outline, so a patch needs its neighbours: at about 200 steps the
    patches begin to tell shapes apart.

    The second phase also trains the CLS attention onto one patch per item
    (:func:`attention_loss`, weight :data:`ATTENTION_WEIGHT`). Measured on 256 fresh scenes
    (``scripts/visualize.py`` shows the same): without it (400 steps), 12% of the attention on
    the shapes, 34% on the label, 52% on the background, PruMerge's kept tokens on a third of the
    shapes; with it (600 steps, the default), 86% / 9% / 5%, kept tokens on 99% of the shapes,
    12.4 tokens kept, Pearson r 0.54 between kept tokens and items in the scene.
    """
    from tqdm.auto import tqdm

    torch.manual_seed(seed)
    rng = random.Random(f"scenes-vision-{seed}")
    tower = CLIPVisionModel(vision_config())
    probe = SceneProbe(tower.config.hidden_size)
    parameters = list(tower.parameters()) + list(probe.parameters())
    optimizer = torch.optim.AdamW(parameters, lr=2e-3, weight_decay=0.01)
    schedule = torch.optim.lr_scheduler.OneCycleLR(optimizer, max_lr=2e-3, total_steps=steps, pct_start=0.1)
    processor = image_processor()
    tower.train()
    progress = tqdm(range(steps), desc="vision tower pretraining", mininterval=5)
    for step in progress:
        pixels, targets = _vision_batch(rng, processor, batch)
        output = tower(pixel_values=pixels, output_hidden_states=True)
        # the CLS output (CLIP's image embedding) and LLaVA's feature layer (-2), patch by patch
        loss = probe.loss(output.pooler_output, output.hidden_states[-2][:, 1:], targets, cls=step >= steps // 2)
        if step >= steps // 2:
            loss = loss + ATTENTION_WEIGHT * attention_loss(tower, output.hidden_states[-2], targets["centres"])
        loss.backward()
        torch.nn.utils.clip_grad_norm_(parameters, 1.0)
        optimizer.step()
        schedule.step()
        optimizer.zero_grad()
        if step % log_every == 0 or step == steps - 1:
            progress.set_postfix(loss=f"{loss.item():.3f}")
    return tower.eval()


def write_start_point(root: str | Path, sizes: TestbedSizes | None = None, seed: int = 0) -> dict[str, Path]:
    """Everything stage 1 starts from, under ``root``: data, tokenizer + random Llama, pretrained
    tower + image processor, random projector. Returns the paths; skips work already done."""
    sizes = sizes or TestbedSizes()
    root = Path(root)
    stamp = root / "start" / "VERSION"
    expected = f"{TESTBED_VERSION} {sizes} seed={seed}"
    paths = {
        "data": root / "data",
        "language_model": root / "start" / "llama-scenes",
        "vision_tower": root / "start" / "clip-scenes",
        "mm_projector": root / "start" / "mm_projector.bin",
    }
    if stamp.is_file() and stamp.read_text().strip() == expected:
        return paths
    data = write_scene_training_data(paths["data"], sizes.train_scenes, seed=seed)
    tokenizer = train_scene_tokenizer(scene_corpus(data), sizes.vocab_size)
    torch.manual_seed(seed)
    language = LlamaForCausalLM(text_config(tokenizer))
    language.save_pretrained(paths["language_model"])
    tokenizer.save_pretrained(paths["language_model"])
    tower = pretrain_vision_tower(sizes.vision_steps, sizes.vision_batch, seed=seed)
    tower.save_pretrained(paths["vision_tower"])
    image_processor().save_pretrained(paths["vision_tower"])
    width, hidden = tower.config.hidden_size, language.config.hidden_size
    first, second = torch.nn.Linear(width, hidden), torch.nn.Linear(hidden, hidden)
    torch.save(
        {
            "model.mm_projector.0.weight": first.weight.detach(),
            "model.mm_projector.0.bias": first.bias.detach(),
            "model.mm_projector.2.weight": second.weight.detach(),
            "model.mm_projector.2.bias": second.bias.detach(),
        },
        paths["mm_projector"],
    )
    stamp.write_text(expected + "\n")
    return paths
