"""Synthetic scenes and questions: the data of the trained tiny testbed (seeded, deterministic).

A scene is a few coloured shapes (circle, square, triangle; small or large) on a varied muted
background (plain, noise, gradient or stripes), some with a light label holding a digit or a short
word. Scenes vary in clutter (1 to 6 shapes), so PruMerge's adaptive token count has something to
adapt to. Colours and shapes are drawn from fixed non-uniform frequencies, so "popular" objects
exist, as in POPE.

Question families, each written in the prompt format of the benchmark it stands for (the exact
text lmms-eval's task builds from a row; ``tests/test_scenes.py`` checks it against lmms-eval's
own ``doc_to_text``):

- **existence** (POPE, MME ``existence``): ``Is there a red circle in the image?``; negatives are
  random (any absent object), popular (the most frequent absent object) or adversarial (an absent
  object that shares a colour or a shape with a present one), as POPE's three splits;
- **counting** (VQAv2 ``number``, MME ``count``, MMBench), **attributes** (VQAv2 colour/shape,
  ScienceQA multiple choice, MME ``color``), **position** (MMBench, MME ``position``: left/right);
- **reading** (TextVQA): the label's digit or word.

:func:`write_scene_training_data` writes LLaVA-1.5-format JSON (stage-1 captions, stage-2
multi-turn instructions); :func:`write_scene_benchmarks` writes the test sets as local copies of
the benchmarks in their Hub schemas (:mod:`llava_prumerge.tiny.benchmarks`), plus
``scene_objects.json``, the number of drawn items (shapes + label) of every test sample's scene.
Training and test scenes come from disjoint seeds.
"""

from __future__ import annotations

import json
import random
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw, ImageFont

from ..evaluation.rules import textvqa_doc_to_text
from ..evaluation.tasks import LLAVA15_SHORT_ANSWER

SCENE_IMAGE_SIZE = 48
SHAPES = {"circle": 0.4, "square": 0.35, "triangle": 0.25}
"""Shape frequencies (POPE's "popular" negatives are the most frequent absent objects)."""
COLOURS = {"red": 0.3, "blue": 0.25, "green": 0.2, "yellow": 0.15, "white": 0.1}
RGB = {"red": (225, 35, 35), "blue": (40, 90, 235), "green": (30, 200, 60), "yellow": (240, 220, 30), "white": (250, 250, 250)}  # fmt: skip
SIDES = {"small": 8, "large": 13}
"""Object side in pixels at 48 px."""
TEXTS = ("1", "2", "3", "4", "5", "7", "8", "9", "cat", "dog", "sun", "box")
"""What a label may say (TextVQA-style reading)."""
BACKGROUNDS = ("plain", "noise", "gradient", "stripes")
MAX_SHAPES = 6
TEXT_SHARE = 0.35
"""Share of scenes with a label (every reading question's scene has one)."""
LEFT_RIGHT_MARGIN = 5
"""A shape whose centre is this close to the vertical midline gets no left/right question."""
SHORT = LLAVA15_SHORT_ANSWER
SQA_LETTER = "\nAnswer with the option's letter from the given choices directly."
MMBENCH_SYSTEM = "There are several options:"
MME_SUFFIX = " Please answer yes or no."
MME_CATEGORIES = ("existence", "count", "color", "position")
ALL_OBJECTS = [(c, s) for c in COLOURS for s in SHAPES]
POPULARITY = sorted(ALL_OBJECTS, key=lambda o: -COLOURS[o[0]] * SHAPES[o[1]])
"""Objects by expected frequency, most frequent first."""


@dataclass(frozen=True)
class SceneObject:
    shape: str
    colour: str
    size: str
    x: int
    """Top-left corner, pixels."""
    y: int

    @property
    def side(self) -> int:
        return SIDES[self.size]

    @property
    def name(self) -> str:
        return f"{self.colour} {self.shape}"

    @property
    def centre_x(self) -> float:
        return self.x + self.side / 2


@dataclass(frozen=True)
class Scene:
    objects: tuple[SceneObject, ...]
    background: str
    background_colours: tuple[tuple[int, int, int], tuple[int, int, int]]
    text: str | None
    text_box: tuple[int, int, int, int] | None
    """(x0, y0, x1, y1) of the label."""
    seed: int
    """Seeds the background noise."""

    @property
    def item_count(self) -> int:
        """Drawn items: shapes plus the label (what the adaptive token count should follow)."""
        return len(self.objects) + (self.text is not None)

    def has(self, colour: str, shape: str) -> bool:
        return any(o.colour == colour and o.shape == shape for o in self.objects)

    def of_shape(self, shape: str) -> list[SceneObject]:
        return [o for o in self.objects if o.shape == shape]

    def of_colour(self, colour: str) -> list[SceneObject]:
        return [o for o in self.objects if o.colour == colour]

    def caption(self) -> str:
        """``a red circle, a red circle, a blue square and the word "cat"`` (stage-1 target).

        Objects come in a fixed colour-then-shape order, not left to right: each next word then
        depends on what the image holds, not on where, so the alignment step can learn it from
        the patch features alone (a left-to-right caption needs positions first).
        """
        ordered = sorted(self.objects, key=lambda o: ALL_OBJECTS.index((o.colour, o.shape)))
        parts = [f"a {o.colour} {o.shape}" for o in ordered]
        if self.text is not None:
            parts.append(f'the {"number" if self.text.isdigit() else "word"} "{self.text}"')
        return parts[0] if len(parts) == 1 else ", ".join(parts[:-1]) + " and " + parts[-1]


def _font(size: int = 13) -> ImageFont.ImageFont:
    return ImageFont.load_default(size=size)


def _weighted(rng: random.Random, weights: dict[str, float]) -> str:
    return rng.choices(list(weights), weights=list(weights.values()))[0]


def _muted(rng: random.Random) -> tuple[int, int, int]:
    """A dull background colour: dark to mid grey with a slight tint (never an object colour)."""
    base = rng.randint(35, 115)
    return tuple(int(np.clip(base + rng.randint(-18, 18), 0, 255)) for _ in range(3))


def _overlaps(box: tuple[int, int, int, int], boxes: list[tuple[int, int, int, int]], gap: int = 1) -> bool:
    x0, y0, x1, y1 = box
    return any(x0 < b[2] + gap and b[0] < x1 + gap and y0 < b[3] + gap and b[1] < y1 + gap for b in boxes)


def sample_scene(
    rng: random.Random, shapes: int | None = None, with_text: bool | None = None, size: int = SCENE_IMAGE_SIZE
) -> Scene:
    """One random scene: ``shapes`` objects (1..6, uniform when None), a label when ``with_text``."""
    with_text = rng.random() < TEXT_SHARE if with_text is None else with_text
    wanted = rng.randint(1, MAX_SHAPES) if shapes is None else shapes
    boxes: list[tuple[int, int, int, int]] = []
    text = text_box = None
    if with_text:
        text = rng.choice(TEXTS)
        left, top, right, bottom = _font().getbbox(text)
        width, height = right - left + 4, bottom - top + 4
        x, y = rng.randint(0, size - width), rng.randint(0, size - height)
        text_box = (x, y, x + width, y + height)
        boxes.append(text_box)
    objects = []
    for _ in range(200):
        if len(objects) == wanted:
            break
        item_size = rng.choice(list(SIDES))
        side = SIDES[item_size]
        x, y = rng.randint(0, size - side), rng.randint(0, size - side)
        if _overlaps((x, y, x + side, y + side), boxes):
            continue
        boxes.append((x, y, x + side, y + side))
        objects.append(SceneObject(_weighted(rng, SHAPES), _weighted(rng, COLOURS), item_size, x, y))
    if not objects:
        return sample_scene(rng, shapes, with_text, size)
    background = rng.choice(BACKGROUNDS)
    return Scene(tuple(objects), background, (_muted(rng), _muted(rng)), text, text_box, rng.randrange(2**31))


def _draw_item(draw: ImageDraw.ImageDraw, item: SceneObject, fill) -> None:
    """One shape in its box (the one drawing rule of the image and of the item mask)."""
    x0, y0, x1, y1 = item.x, item.y, item.x + item.side - 1, item.y + item.side - 1
    if item.shape == "circle":
        draw.ellipse((x0, y0, x1, y1), fill=fill)
    elif item.shape == "square":
        draw.rectangle((x0, y0, x1, y1), fill=fill)
    else:
        draw.polygon([((x0 + x1) / 2, y0), (x1, y1), (x0, y1)], fill=fill)


def render_scene(scene: Scene, size: int = SCENE_IMAGE_SIZE) -> Image.Image:
    """The scene as an RGB image of ``size`` × ``size`` pixels."""
    first, second = (np.array(c, dtype=np.float32) for c in scene.background_colours)
    noise = np.random.default_rng(scene.seed)
    if scene.background == "plain":
        pixels = np.broadcast_to(first, (size, size, 3)).copy()
    elif scene.background == "noise":
        pixels = first + noise.normal(0, 14, (size, size, 3)).astype(np.float32)
    elif scene.background == "gradient":
        ramp = np.linspace(0, 1, size, dtype=np.float32)[:, None, None]
        pixels = np.broadcast_to(first + (second - first) * ramp, (size, size, 3))
        pixels = pixels.transpose(1, 0, 2).copy() if scene.seed % 2 else pixels.copy()
    else:
        width = 3 + scene.seed % 4
        bands = (np.arange(size) // width) % 2
        pixels = np.where(bands[:, None, None] == 1, second, first) * np.ones((1, size, 3), dtype=np.float32)
        pixels = pixels.transpose(1, 0, 2).copy() if (scene.seed // 4) % 2 else pixels
    image = Image.fromarray(np.clip(pixels, 0, 255).astype(np.uint8))
    draw = ImageDraw.Draw(image)
    for item in scene.objects:
        _draw_item(draw, item, RGB[item.colour])
    if scene.text is not None:
        x0, y0, x1, y1 = scene.text_box
        draw.rectangle((x0, y0, x1 - 1, y1 - 1), fill=(225, 225, 215))
        left, top, _, _ = _font().getbbox(scene.text)
        draw.text((x0 + 2 - left, y0 + 2 - top), scene.text, fill=(10, 10, 10), font=_font())
    return image


def render_item_mask(scene: Scene, size: int = SCENE_IMAGE_SIZE) -> np.ndarray:
    """``[size, size]`` uint8: 0 background, ``1 + ALL_OBJECTS.index((colour, shape))`` where a shape is
    drawn, ``1 + len(ALL_OBJECTS)`` on the label (the same drawing calls as :func:`render_scene`)."""
    mask = Image.new("L", (size, size), 0)
    draw = ImageDraw.Draw(mask)
    for item in scene.objects:
        _draw_item(draw, item, 1 + ALL_OBJECTS.index((item.colour, item.shape)))
    if scene.text is not None:
        x0, y0, x1, y1 = scene.text_box
        draw.rectangle((x0, y0, x1 - 1, y1 - 1), fill=1 + len(ALL_OBJECTS))
    return np.asarray(mask)


# ---- questions ------------------------------------------------------------------------------


@dataclass(frozen=True)
class Question:
    """One question about a scene: the family, the bare question, the answer and (MC) the options."""

    family: str
    text: str
    answer: str
    options: tuple[str, ...] = ()
    """Multiple choice: the option texts; ``answer`` is then the correct option's text."""


def absent_object(scene: Scene, rng: random.Random, kind: str) -> tuple[str, str] | None:
    """An object not in ``scene``: ``random``, ``popular`` (most frequent) or ``adversarial``
    (shares a colour or shape with a present object, most frequent first)."""
    absent = [o for o in ALL_OBJECTS if not scene.has(*o)]
    if kind == "random":
        return rng.choice(absent) if absent else None
    if kind == "popular":
        return next((o for o in POPULARITY if o in absent), None)
    related = [o for o in POPULARITY if o in absent and any(o[0] == p.colour or o[1] == p.shape for p in scene.objects)]
    return related[0] if related else None


def existence(scene: Scene, rng: random.Random, present: bool, negatives: str = "random") -> Question | None:
    if present:
        item = rng.choice(scene.objects)
        return Question("existence", f"Is there a {item.name} in the image?", "Yes")
    item = absent_object(scene, rng, negatives)
    return None if item is None else Question("existence", f"Is there a {item[0]} {item[1]} in the image?", "No")


def counting(scene: Scene, rng: random.Random) -> Question:
    if rng.random() < 0.5:
        return Question("count", "How many shapes are there?", str(len(scene.objects)))
    shape = rng.choice(list(SHAPES))
    return Question("count", f"How many {shape}s are there?", str(len(scene.of_shape(shape))))


def colour_of(scene: Scene, rng: random.Random) -> Question | None:
    unique = [o for o in scene.objects if len(scene.of_shape(o.shape)) == 1]
    if not unique:
        return None
    item = rng.choice(unique)
    return Question("colour", f"What color is the {item.shape}?", item.colour)


def shape_of(scene: Scene, rng: random.Random) -> Question | None:
    unique = [o for o in scene.objects if len(scene.of_colour(o.colour)) == 1]
    if not unique:
        return None
    item = rng.choice(unique)
    return Question("shape", f"What shape is the {item.colour} object?", item.shape)


def position(scene: Scene, rng: random.Random, size: int = SCENE_IMAGE_SIZE) -> Question | None:
    clear = [
        o
        for o in scene.objects
        if abs(o.centre_x - size / 2) >= LEFT_RIGHT_MARGIN and sum(p.name == o.name for p in scene.objects) == 1
    ]
    if not clear:
        return None
    item = rng.choice(clear)
    side = "left" if item.centre_x < size / 2 else "right"
    return Question("position", f"Is the {item.name} on the left or the right?", side)


def reading(scene: Scene, rng: random.Random) -> Question | None:
    if scene.text is None:
        return None
    question = "what number is written in the image?" if scene.text.isdigit() else "what word is written in the image?"
    return Question("reading", question, scene.text)


def mme_pair(category: str, scene: Scene, rng: random.Random) -> tuple[str, str] | None:
    """MME-style perception pair (the yes question, the no question) of ``category``, or None."""
    if category == "existence":
        yes, no = existence(scene, rng, True), existence(scene, rng, False, "adversarial")
        return (
            None
            if no is None
            else (yes.text.replace("the image", "this image"), no.text.replace("the image", "this image"))
        )
    if category == "count":
        n = len(scene.objects)
        wrong = rng.choice([m for m in range(1, MAX_SHAPES + 1) if m != n])
        return f"Are there {n} shapes in this image?", f"Are there {wrong} shapes in this image?"
    if category == "color":
        q = colour_of(scene, rng)
        if q is None:
            return None
        wrong = rng.choice([c for c in COLOURS if c != q.answer])
        shape = q.text.removeprefix("What color is the ").removesuffix("?")
        return f"Is the {shape} {q.answer}?", f"Is the {shape} {wrong}?"
    q = position(scene, rng)
    if q is None:
        return None
    name = q.text.removeprefix("Is the ").removesuffix(" on the left or the right?")
    other = "right" if q.answer == "left" else "left"
    return f"Is the {name} on the {q.answer} of the image?", f"Is the {name} on the {other} of the image?"


def with_options(question: Question, rng: random.Random, pool: list[str], count: int) -> Question:
    """``question`` as multiple choice: the answer among ``count`` options drawn from ``pool``."""
    others = [p for p in pool if p != question.answer]
    options = [question.answer] + rng.sample(others, min(count - 1, len(others)))
    rng.shuffle(options)
    return Question(question.family, question.text, question.answer, tuple(options))


# ---- prompts (the text lmms-eval's tasks build from a row) -----------------------------------


def short_answer_prompt(question: str) -> str:
    """VQAv2 / POPE / MME (LLaVA-1.5's short-answer suffix)."""
    return f"{question}{SHORT}"


def textvqa_prompt(question: str) -> str:
    """Our ``textvqa_val_llava15`` task: OCR tokens in the prompt (scenes ship none)."""
    return textvqa_doc_to_text(
        {"question": question, "ocr_tokens": []}, {"pre_prompt": "", "post_prompt": SHORT, "ocr": True}
    )


def sqa_prompt(question: str, options: tuple[str, ...], hint: str) -> str:
    """lmms-eval's ``scienceqa_img`` (format ``default``)."""
    choices = "\n".join(f"{chr(65 + i)}. {option}" for i, option in enumerate(options))
    context = f"Context: {hint}\n" if hint else ""
    return f"{context}{question}\n{choices}{SQA_LETTER}"


def mmbench_prompt(question: str, options: tuple[str, ...], hint: str | None) -> str:
    """lmms-eval's ``mmbench_en`` prompt."""
    listed = "\n".join(f"{chr(65 + i)}. {option}" for i, option in enumerate(options))
    query = f"{question} {MMBENCH_SYSTEM}\n{listed}"
    query = f"{hint} {query}" if hint else query
    return f"{query}\n{SQA_LETTER}"


def letter(question: Question) -> str:
    return chr(65 + question.options.index(question.answer))


# ---- training data --------------------------------------------------------------------------

CAPTION_INSTRUCTIONS = ("Describe the image briefly.", "What is in the picture?", "List what you see.")
COUNT_OPTIONS = [str(n) for n in range(0, MAX_SHAPES + 1)]
HINTS = ("", "The picture shows shapes on a background.", "Look at the shapes.")


def _choice_turns(scene: Scene, rng: random.Random, count: int) -> list[tuple[str, str]]:
    """Up to ``count`` lettered multiple-choice (prompt, letter) pairs about ``scene``, ScienceQA's or
    MMBench's format at random."""
    multiple = [
        q
        for q in (
            colour_of(scene, rng) and with_options(colour_of(scene, rng), rng, list(COLOURS), rng.randint(2, 4)),
            shape_of(scene, rng) and with_options(shape_of(scene, rng), rng, list(SHAPES), rng.randint(2, 3)),
            with_options(counting(scene, rng), rng, COUNT_OPTIONS, 4),
            position(scene, rng) and with_options(position(scene, rng), rng, ["left", "right"], 2),
        )
        if q
    ]
    turns = []
    for q in rng.sample(multiple, min(count, len(multiple))):
        if rng.random() < 0.5:
            turns.append((sqa_prompt(q.text, q.options, rng.choice(HINTS)), letter(q)))
        else:
            turns.append((mmbench_prompt(q.text, q.options, rng.choice(HINTS) or None), letter(q)))
    return turns


def _instruction_turns(scene: Scene, rng: random.Random) -> list[tuple[str, str]]:
    """A few (prompt, answer) pairs about ``scene`` in the benchmarks' formats."""
    candidates: list[tuple[str, str]] = []
    for present, negatives in ((True, "random"), (False, rng.choice(("random", "popular", "adversarial")))):
        q = existence(scene, rng, present, negatives)
        if q:
            candidates.append((short_answer_prompt(q.text), q.answer))
    q = counting(scene, rng)
    candidates.append((short_answer_prompt(q.text), q.answer))
    for make in (colour_of, shape_of):
        q = make(scene, rng)
        if q:
            candidates.append((short_answer_prompt(q.text), q.answer))
    q = reading(scene, rng)
    if q:
        candidates.append((textvqa_prompt(q.text), q.answer))
    candidates.extend(_choice_turns(scene, rng, 2))
    pair = mme_pair(rng.choice(MME_CATEGORIES), scene, rng)
    if pair:
        yes = rng.random() < 0.5
        candidates.append((short_answer_prompt(pair[0] if yes else pair[1]), "Yes" if yes else "No"))
    rng.shuffle(candidates)
    return candidates[: rng.randint(4, 6)]


def _sample(sample_id: str, image: str, turns: list[tuple[str, str]]) -> dict:
    values = [f"<image>\n{turns[0][0]}", turns[0][1]] + [v for turn in turns[1:] for v in turn]
    conversations = [{"from": ("human", "gpt")[i % 2], "value": value} for i, value in enumerate(values)]
    return {"id": sample_id, "image": image, "conversations": conversations}


def write_scene_training_data(directory: str | Path, scenes: int, seed: int = 0) -> dict[str, Path]:
    """Training scenes under ``directory/images`` and two LLaVA-1.5-format files.

    ``captions.json`` (stage 1: one caption per scene, as LLaVA's LCS-558K) and ``instruct.json``
    (stage 2: 4-6 questions per scene in the benchmarks' prompt formats, as LLaVA-1.5's mix665k
    holds VQAv2/ScienceQA/TextVQA-style questions). Returns the two paths.

    Each question is its own single-turn sample (``instruct-{scene}-{k}``), unlike LLaVA's
    multi-turn conversations. On these scenes the turns of one conversation give each other's
    answers away: "What shape is the blue object? circle" answers "Is there a blue circle?". A
    4-layer model learnt to answer from the earlier turns instead of the image. Teacher-forced on
    held-out conversations it scored about 80% on existence. On single questions, which is what
    every benchmark asks, it was at chance or below: 30% on POPE-random, nearly always "Yes" to
    absent objects. Single questions cost more visual tokens per answer, but each one can only
    be answered from the image.
    """
    directory = Path(directory)
    (directory / "images").mkdir(parents=True, exist_ok=True)
    rng = random.Random(f"scenes-train-{seed}")
    captions, instruct = [], []
    for index in range(scenes):
        scene = sample_scene(rng)
        name = f"scene{index:05d}.png"
        render_scene(scene).save(directory / "images" / name)
        instruction = f"<image>\n{rng.choice(CAPTION_INSTRUCTIONS)}"
        captions.append(
            {
                "id": f"caption-{index}",
                "image": name,
                "conversations": [{"from": "human", "value": instruction}, {"from": "gpt", "value": scene.caption()}],
            }
        )
        for turn, question in enumerate(_instruction_turns(scene, rng)):
            instruct.append(_sample(f"instruct-{index}-{turn}", name, [question]))
    paths = {"captions": directory / "captions.json", "instruct": directory / "instruct.json"}
    paths["captions"].write_text(json.dumps(captions) + "\n")
    paths["instruct"].write_text(json.dumps(instruct) + "\n")
    return paths


# ---- test sets in the benchmarks' Hub schemas -----------------------------------------------


@dataclass(frozen=True)
class SceneSetSizes:
    """Questions per test set (one fresh scene each; MME: scenes, two questions each)."""

    pope: int = 60
    """Per split (adversarial, popular, random), half yes, half no."""
    vqav2: int = 100
    textvqa: int = 60
    sqa: int = 80
    mmbench: int = 80
    mme: int = 15
    """Scenes per MME category (existence, count, color, position)."""

    @classmethod
    def small(cls) -> SceneSetSizes:
        """The shortened testbed's sets (the CI regression test): fewer questions, but more VQAv2
        ones, the set a broken reducer moves most (answers are cheap; lmms-eval's start is not)."""
        return cls(pope=40, vqav2=300, textvqa=30, sqa=40, mmbench=30, mme=15)


def _until(make, rng: random.Random, **scene_args):
    """Draw scenes until ``make(scene)`` gives a question; returns ``(scene, question)``."""
    while True:
        scene = sample_scene(rng, **scene_args)
        question = make(scene)
        if question is not None:
            return scene, question


def write_scene_benchmarks(root: str | Path, sizes: SceneSetSizes | None = None, seed: int = 0) -> Path:
    """VQAv2, ScienceQA-IMG, TextVQA, POPE, MME and MMBench test sets of fresh scenes under ``root``
    (the Hub schemas of :mod:`llava_prumerge.tiny.benchmarks`), and ``scene_objects.json``:
    canonical task name → {doc_id: drawn items of that row's scene}."""
    from . import benchmarks as hub

    sizes = sizes or SceneSetSizes()
    root = Path(root)
    root.mkdir(parents=True, exist_ok=True)
    rng = random.Random(f"scenes-test-{seed}")
    items: dict[str, dict[str, int]] = {}

    # POPE: three splits of balanced yes/no existence questions.
    pope_splits = {}
    for split, negatives, task in (
        ("adversarial", "adversarial", "pope_adv_llava15"),
        ("popular", "popular", "pope_pop_llava15"),
        ("random", "random", "pope_random_llava15"),
    ):
        rows = []
        for i in range(sizes.pope):
            present = i % 2 == 0
            scene, q = _until(
                lambda s, present=present, negatives=negatives: existence(s, rng, present, negatives), rng
            )
            rows.append(
                {
                    "id": str(i),
                    "question_id": str(i + 1),
                    "question": q.text,
                    "answer": q.answer.lower(),
                    "image_source": f"{split}-{i}",
                    "image": render_scene(scene),
                    "category": split,
                }
            )
            items.setdefault(task, {})[str(i)] = scene.item_count
        pope_splits[split] = rows
    hub._write(
        root, "POPE", "Full", pope_splits, hub._features("id question_id question answer image_source image category")
    )

    # VQAv2: counting, colour, shape and existence questions; a few unscored test rows.
    from datasets import Sequence, Value

    answer_feature = {"answer": Value("string"), "answer_confidence": Value("string"), "answer_id": Value("int64")}
    features = hub._features(
        "question_type multiple_choice_answer answers image_id answer_type question_id question image",
        {"answers": [answer_feature], "image_id": "int64", "question_id": "int64"},
    )
    kinds = {
        "count": (lambda s: counting(s, rng), "how many", "number"),
        "colour": (lambda s: colour_of(s, rng), "what color is the", "other"),
        "shape": (lambda s: shape_of(s, rng), "what shape is the", "other"),
        "existence": (lambda s: existence(s, rng, rng.random() < 0.5), "is there a", "yes/no"),
    }
    validation = []
    for i in range(sizes.vqav2):
        make, question_type, answer_type = kinds[list(kinds)[i % len(kinds)]]
        scene, q = _until(make, rng)
        answer = q.answer.lower()
        validation.append(
            hub._vqav2_row(render_scene(scene), i, 1000 + i, q.text, (answer, (), question_type, answer_type))
        )
        items.setdefault("vqav2_val", {})[str(i)] = scene.item_count
    test = [
        hub._vqav2_row(render_scene(sample_scene(rng)), 10_000 + i, 20_000 + i, "How many shapes are there?")
        for i in range(2)
    ]
    hub._write(root, "VQAv2", "default", {"validation": validation, "test": test}, features)

    # TextVQA: reading the label.
    strings = Sequence(Value("string"))
    features = hub._features(
        "image_id question_id question question_tokens image image_width image_height flickr_original_url "
        "flickr_300k_url answers image_classes set_name ocr_tokens",
        {"question_id": "int32", "image_width": "int32", "image_height": "int32"}
        | {name: strings for name in ("question_tokens", "answers", "image_classes", "ocr_tokens")},
    )
    rows = []
    for i in range(sizes.textvqa):
        scene, q = _until(lambda s: reading(s, rng), rng, with_text=True)
        image = render_scene(scene)
        rows.append(
            {
                "image_id": f"scene{i}",
                "question_id": 50_000 + i,
                "question": q.text,
                "question_tokens": q.text.rstrip("?").split(),
                "image": image,
                "image_width": image.width,
                "image_height": image.height,
                "flickr_original_url": "",
                "flickr_300k_url": "",
                "answers": [q.answer] * 10,
                "image_classes": ["shapes"],
                "set_name": "val",
                "ocr_tokens": [],
            }
        )
        items.setdefault("textvqa_val_llava15", {})[str(i)] = scene.item_count
    hub._write(root, "textvqa", "default", {"validation": rows}, features)

    # ScienceQA-IMG and MMBench: lettered multiple choice.
    def multiple_choice(i: int):
        family = i % 4
        if family == 0:
            return _until(lambda s: (q := colour_of(s, rng)) and with_options(q, rng, list(COLOURS), 4), rng)
        if family == 1:
            return _until(lambda s: (q := shape_of(s, rng)) and with_options(q, rng, list(SHAPES), 3), rng)
        if family == 2:
            return _until(lambda s: with_options(counting(s, rng), rng, COUNT_OPTIONS, 4), rng)
        return _until(lambda s: (q := position(s, rng)) and with_options(q, rng, ["left", "right"], 2), rng)

    features = hub._features(
        "image question choices answer hint task grade subject topic category skill lecture solution",
        {"choices": Sequence(Value("string")), "answer": "int8"},
    )
    rows = []
    for i in range(sizes.sqa):
        scene, q = multiple_choice(i)
        rows.append(
            {
                "image": render_scene(scene),
                "question": q.text,
                "choices": list(q.options),
                "answer": q.options.index(q.answer),
                "hint": HINTS[i % len(HINTS)],
                "task": "closed choice",
                "grade": "grade1",
                "subject": "natural science",
                "topic": "shapes",
                "category": q.family,
                "skill": q.family,
                "lecture": "",
                "solution": "",
            }
        )
        items.setdefault("scienceqa_img_llava15", {})[str(i)] = scene.item_count
    hub._write(root, "ScienceQA", "ScienceQA-IMG", {"test": rows}, features)

    features = hub._features(
        "index question hint answer A B C D category image source L2-category comment split", {"index": "int64"}
    )
    categories = {"colour": "attribute_recognition", "shape": "attribute_recognition", "count": "object_localization",
                  "position": "spatial_relationship"}  # fmt: skip
    mmbench = {"dev": [], "test": []}
    for split, count in (("dev", sizes.mmbench), ("test", 2)):
        for i in range(count):
            scene, q = multiple_choice(i + 1)
            options = list(q.options) + [None] * (4 - len(q.options))
            hint = HINTS[i % len(HINTS)] or None
            mmbench[split].append(
                {
                    "index": i,
                    "question": q.text,
                    "hint": hint,
                    "answer": letter(q) if split == "dev" else None,
                    **dict(zip("ABCD", options)),
                    "category": categories[q.family],
                    "image": render_scene(scene),
                    "source": "scenes",
                    "L2-category": "fine-grained_perception (instance-level)",
                    "comment": None,
                    "split": split,
                }
            )
            if split == "dev":
                items.setdefault("mmbench_en_dev_static", {})[str(i)] = scene.item_count
    hub._write(root, "MMBench", "en", mmbench, features)

    # MME: per scene a yes and a no question of one perception category.
    rows = []
    for category in MME_CATEGORIES:
        for i in range(sizes.mme):
            scene, pair = _until(lambda s, category=category: mme_pair(category, s, rng), rng)
            image = render_scene(scene)
            for text, answer in zip(pair, ("Yes", "No")):
                items.setdefault("mme", {})[str(len(rows))] = scene.item_count
                rows.append(
                    {
                        "question_id": f"{category}/scene{i}.png",
                        "image": image,
                        "question": f"{text}{MME_SUFFIX}",
                        "answer": answer,
                        "category": category,
                    }
                )
    hub._write(root, "MME", "default", {"test": rows}, hub._features("question_id image question answer category"))

    (root / "scene_objects.json").write_text(json.dumps(items, indent=1) + "\n")
    (root / "VERSION").write_text(_stamp(sizes, seed) + "\n")
    return root


SCENES_VERSION = "1"
"""Bumped whenever scenes or questions change, so stale test sets get rewritten."""


def _stamp(sizes: SceneSetSizes, seed: int) -> str:
    return f"{SCENES_VERSION} {sizes} seed={seed}"


def scene_benchmarks_current(root: str | Path, sizes: SceneSetSizes | None = None, seed: int = 0) -> bool:
    """Whether ``root`` holds the test sets this code writes for ``sizes`` and ``seed``."""
    stamp = Path(root) / "VERSION"
    return stamp.is_file() and stamp.read_text().strip() == _stamp(sizes or SceneSetSizes(), seed)
