"""Tiny local copies of the paper's benchmarks, in the Hub schemas lmms-eval's tasks read.

Each benchmark is written the way a ``huggingface-cli download <repo> --local-dir`` snapshot of
its Hub dataset looks (a ``README.md`` whose ``configs:`` name the parquet files, the same config
and split names), so the local task overrides of :mod:`llava_prumerge.evaluation.tasks` treat these and
a user's real local copies identically. The images are real photos shipped by scikit-image; the
questions are about what the photos show. A handful of rows per split: enough for lmms-eval's
prompt and metric code to run end to end on a CPU, far too few for a meaningful score.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

from PIL import Image

from .setting import demo_images

if TYPE_CHECKING:
    from datasets import Features

TINY_BENCHMARKS_VERSION = "1"
MAX_SIDE = 160
"""Photos are shrunk to this longest side: the processor resizes anyway, and the files stay small."""

Photos = dict[str, Image.Image]


def _photos() -> Photos:
    """The scikit-image photos the benchmarks ask about, by name, shrunk to ``MAX_SIDE``."""
    names = ("astronaut", "chelsea", "coffee", "rocket", "text", "camera", "coins", "horse", "page", "clock")
    photos = {}
    for name, image in zip(names, demo_images(names)):
        image.thumbnail((MAX_SIDE, MAX_SIDE))
        photos[name] = image
    return photos


def _features(columns: str, types: dict[str, Any] | None = None) -> Features:
    """The schema of the space-separated ``columns``, in order: strings but ``image`` and those in ``types``.

    A type in ``types`` is a ``datasets.Value`` dtype name or a ``datasets`` feature.
    """
    from datasets import Features, Value
    from datasets import Image as ImageFeature

    types = {"image": ImageFeature(), **(types or {})}
    kinds = {name: types.get(name, "string") for name in columns.split()}
    return Features({name: Value(kind) if isinstance(kind, str) else kind for name, kind in kinds.items()})


def _write(root: Path, repo: str, config: str, splits: dict[str, list[dict]], features: Features) -> None:
    """Parquet files ``<root>/<repo>/<config>/<split>-00000-of-00001.parquet`` + the README configs."""
    from datasets import Dataset, disable_progress_bars

    disable_progress_bars()
    directory = root / repo
    for split, rows in splits.items():
        path = directory / config / f"{split}-00000-of-00001.parquet"
        path.parent.mkdir(parents=True, exist_ok=True)
        Dataset.from_list(rows, features=features).to_parquet(str(path))
    readme = directory / "README.md"
    existing = readme.read_text().split("---")[1] if readme.is_file() else "\nconfigs:\n"
    entry = f"- config_name: {config}\n  data_files:\n" + "".join(
        f"  - split: {split}\n    path: {config}/{split}-*\n" for split in splits
    )
    readme.write_text(
        f"---{existing}{entry}---\n# {repo} (tiny local copy written by llava_prumerge.tiny.benchmarks)\n"
    )


def _vqa_answers(answer: str, alternatives: tuple[str, ...] = ()) -> list[dict]:
    """VQAv2's ten annotator answers: the ``alternatives`` first, then ``answer`` for the rest."""
    given = list(alternatives) + [answer] * (10 - len(alternatives))
    return [{"answer": a, "answer_confidence": "yes", "answer_id": i + 1} for i, a in enumerate(given)]


def _vqav2_row(image: Image.Image, image_id: int, question_id: int, question: str, scored: tuple = ()) -> dict:
    """One VQAv2 row; ``scored`` is ``(answer, alternatives, question_type, answer_type)``, empty on test."""
    answer, alternatives, qtype, atype = scored or (None, None, None, None)
    return {
        "question_type": qtype,
        "multiple_choice_answer": answer,
        "answers": _vqa_answers(answer, alternatives) if scored else None,
        "image_id": image_id,
        "answer_type": atype,
        "question_id": question_id,
        "question": question,
        "image": image,
    }


def _write_vqav2(root: Path, photos: Photos) -> None:
    """VQAv2 (lmms-lab/VQAv2, config default): validation is scored locally, test feeds EvalAI."""
    from datasets import Value

    answer_feature = {"answer": Value("string"), "answer_confidence": Value("string"), "answer_id": Value("int64")}
    features = _features(
        "question_type multiple_choice_answer answers image_id answer_type question_id question image",
        {"answers": [answer_feature], "image_id": "int64", "question_id": "int64"},
    )
    validation = [
        ("chelsea", "What animal is this?", "cat", ("kitten",), "what animal is", "other"),
        ("coffee", "What drink is in the cup?", "coffee", ("latte",), "what is in the", "other"),
        ("rocket", "Is this a rocket?", "yes", (), "is this a", "yes/no"),
        ("coins", "How many coins are there?", "24", ("25",), "how many", "number"),
        ("horse", "Is the horse black?", "yes", ("no",), "is the", "yes/no"),
        ("clock", "What object is this?", "clock", (), "what is", "other"),
    ]
    test = [("astronaut", "What is the person wearing?"), ("camera", "What is the man holding?"),
            ("page", "Is this a page of text?"), ("text", "Is there text in the image?")]  # fmt: skip
    splits = {
        "validation": [
            _vqav2_row(photos[name], i, 1000 + i, question, (answer, alternatives, qtype, atype))
            for i, (name, question, answer, alternatives, qtype, atype) in enumerate(validation)
        ],
        "test": [_vqav2_row(photos[name], 100 + i, 2000 + i, question) for i, (name, question) in enumerate(test)],
    }
    _write(root, "VQAv2", "default", splits, features)


def _write_scienceqa(root: Path, photos: Photos) -> None:
    """ScienceQA (lmms-lab/ScienceQA, config ScienceQA-IMG, split test)."""
    from datasets import Sequence, Value

    features = _features(
        "image question choices answer hint task grade subject topic category skill lecture solution",
        {"choices": Sequence(Value("string")), "answer": "int8"},
    )
    sqa = [
        ("chelsea", "Which animal is shown?", ["dog", "cat", "bird"], 1, "Look at the picture."),
        ("rocket", "What is this vehicle used for?", ["space travel", "farming"], 0, ""),
        ("coins", "What are these objects made of?", ["wood", "paper", "metal"], 2, "They are coins."),
        ("horse", "Which kind of animal is this?", ["mammal", "fish"], 0, ""),
    ]
    rows = [
        {
            "image": photos[name],
            "question": question,
            "choices": choices,
            "answer": answer,
            "hint": hint,
            "task": "closed choice",
            "grade": "grade3",
            "subject": "natural science",
            "topic": "biology",
            "category": "Identify",
            "skill": "Identify objects",
            "lecture": "",
            "solution": "",
        }
        for name, question, choices, answer, hint in sqa
    ]
    _write(root, "ScienceQA", "ScienceQA-IMG", {"test": rows}, features)


def _write_textvqa(root: Path, photos: Photos) -> None:
    """TextVQA (lmms-lab/textvqa, config default, split validation); OCR tokens as the dataset ships them."""
    from datasets import Sequence, Value

    strings = Sequence(Value("string"))
    features = _features(
        "image_id question_id question question_tokens image image_width image_height flickr_original_url "
        "flickr_300k_url answers image_classes set_name ocr_tokens",
        {"question_id": "int32", "image_width": "int32", "image_height": "int32"}
        | {name: strings for name in ("question_tokens", "answers", "image_classes", "ocr_tokens")},
    )
    textvqa = [
        ("text", "what word is written in the image?", "text", ["Text", "Image", "Processing"]),
        ("page", "what is this page about?", "tests", ["Region-based", "segmentation", "tests"]),
        ("clock", "what kind of object is shown?", "clock", []),
        ("astronaut", "what agency does the flag belong to?", "nasa", ["NASA"]),
    ]
    rows = [
        {
            "image_id": f"tiny{i}",
            "question_id": 34602 + i,
            "question": question,
            "question_tokens": question.rstrip("?").split(),
            "image": photos[name],
            "image_width": photos[name].width,
            "image_height": photos[name].height,
            "flickr_original_url": "",
            "flickr_300k_url": "",
            "answers": [answer] * 10,
            "image_classes": [name],
            "set_name": "val",
            "ocr_tokens": ocr,
        }
        for i, (name, question, answer, ocr) in enumerate(textvqa)
    ]
    _write(root, "textvqa", "default", {"validation": rows}, features)


def _write_pope(root: Path, photos: Photos) -> None:
    """POPE (lmms-lab/POPE, config Full, splits adversarial / popular / random)."""
    features = _features("id question_id question answer image_source image category")
    pope = {
        "adversarial": [("chelsea", "cat", "yes"), ("chelsea", "dog", "no"), ("horse", "horse", "yes"), ("horse", "cow", "no")],
        "popular": [("astronaut", "person", "yes"), ("astronaut", "car", "no"), ("coffee", "cup", "yes"), ("coffee", "chair", "no")],
        "random": [("clock", "clock", "yes"), ("clock", "giraffe", "no"), ("camera", "person", "yes"), ("camera", "pizza", "no")],
    }  # fmt: skip
    splits = {
        split: [
            {
                "id": str(i),
                "question_id": str(i + 1),
                "question": f"Is there a {thing} in the image?",
                "answer": answer,
                "image_source": name,
                "image": photos[name],
                "category": split,
            }
            for i, (name, thing, answer) in enumerate(rows)
        ]
        for split, rows in pope.items()
    }
    _write(root, "POPE", "Full", splits, features)


def _write_mme(root: Path, photos: Photos) -> None:
    """MME (lmms-lab/MME, config default, split test): yes/no question pairs per image."""
    features = _features("question_id image question answer category")
    mme = {
        "existence": [
            ("chelsea", "Is there a cat in this image?", "Is there a dog in this image?"),
            ("rocket", "Is there a rocket in this image?", "Is there a boat in this image?"),
        ],
        "color": [("coffee", "Is the cup in the image white?", "Is the cup in the image green?")],
        "commonsense_reasoning": [("clock", "Can this object tell the time?", "Can this object be eaten?")],
    }
    rows = [
        {
            "question_id": f"{category}/{name}.png",
            "image": photos[name],
            "question": f"{question} Please answer yes or no.",
            "answer": answer,
            "category": category,
        }
        for category, questions in mme.items()
        for name, yes_question, no_question in questions
        for question, answer in ((yes_question, "Yes"), (no_question, "No"))
    ]
    _write(root, "MME", "default", {"test": rows}, features)


def _write_mmbench(root: Path, photos: Photos) -> None:
    """MMBench (lmms-lab/MMBench, config en, splits dev / test; no answers on test)."""
    features = _features(
        "index question hint answer A B C D category image source L2-category comment split", {"index": "int64"}
    )
    mmbench = {
        "dev": [
            ("chelsea", "Which animal is in the image?", None, "B", ("dog", "cat", "bird", None)),
            (
                "rocket",
                "What is shown?",
                "The photo was taken at a launch site.",
                "A",
                ("a rocket", "a tree", None, None),
            ),
            ("coffee", "What is in the cup?", None, "C", ("tea leaves", "sand", "coffee", "water")),
            ("horse", "What is the animal?", None, "A", ("horse", "cat", None, None)),
        ],
        "test": [
            ("astronaut", "Who is in the image?", None, None, ("an astronaut", "a chef", None, None)),
            ("clock", "What is this object?", None, None, ("a clock", "a shoe", "a plate", None)),
        ],
    }
    splits = {
        split: [
            {
                "index": i,
                "question": question,
                "hint": hint,
                "answer": answer,
                **dict(zip("ABCD", options)),
                "category": "object_localization" if i % 2 else "image_topic",
                "image": photos[name],
                "source": "tiny",
                "L2-category": "fine-grained_perception" if i % 2 else "coarse_perception",
                "comment": None,
                "split": split,
            }
            for i, (name, question, hint, answer, options) in enumerate(rows)
        ]
        for split, rows in mmbench.items()
    }
    _write(root, "MMBench", "en", splits, features)


def _write_gqa(root: Path, photos: Photos) -> None:
    """GQA (lmms-lab/GQA): the instructions config with each question's image joined in an ``image`` column.

    The Hub splits images into another config, which lmms-eval's task fetches from the Hub.
    """
    features = _features("id imageId question answer fullAnswer isBalanced image", {"isBalanced": "bool"})
    gqa = [
        ("chelsea", "What animal is this?", "cat", "It is a cat."),
        ("coffee", "What is in the cup?", "coffee", "The cup contains coffee."),
        ("clock", "Is this a clock or a watch?", "clock", "It is a clock."),
        ("horse", "Which animal is it?", "horse", "It is a horse."),
    ]
    rows = [
        {
            "id": f"20{i}",
            "imageId": name,
            "question": question,
            "answer": answer,
            "fullAnswer": full,
            "isBalanced": True,
            "image": photos[name],
        }
        for i, (name, question, answer, full) in enumerate(gqa)
    ]
    _write(root, "GQA", "testdev_balanced_instructions", {"testdev": rows}, features)


def write_tiny_benchmarks(root: str | Path) -> Path:
    """Write VQAv2, ScienceQA, TextVQA, POPE, MME, MMBench and GQA tiny copies under ``root``."""
    root = Path(root)
    root.mkdir(parents=True, exist_ok=True)
    photos = _photos()
    for write in (_write_vqav2, _write_scienceqa, _write_textvqa, _write_pope, _write_mme, _write_mmbench, _write_gqa):
        write(root, photos)
    (root / "VERSION").write_text(TINY_BENCHMARKS_VERSION + "\n")
    return root


def tiny_benchmarks_current(root: str | Path) -> bool:
    """Whether ``root`` holds tiny benchmarks written by this version of the code."""
    stamp = Path(root) / "VERSION"
    return stamp.is_file() and stamp.read_text().strip() == TINY_BENCHMARKS_VERSION
