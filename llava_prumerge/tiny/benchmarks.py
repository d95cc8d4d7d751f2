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

from PIL import Image

from .setting import demo_images

TINY_BENCHMARKS_VERSION = "1"
MAX_SIDE = 160
"""Photos are shrunk to this longest side: the processor resizes anyway, and the files stay small."""


def _photos() -> dict[str, Image.Image]:
    names = ("astronaut", "chelsea", "coffee", "rocket", "text", "camera", "coins", "horse", "page", "clock")
    photos = {}
    for name, image in zip(names, demo_images(names)):
        image.thumbnail((MAX_SIDE, MAX_SIDE))
        photos[name] = image
    return photos


def _write(root: Path, repo: str, config: str, splits: dict[str, list[dict]], features) -> None:
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
    given = list(alternatives) + [answer] * (10 - len(alternatives))
    return [{"answer": a, "answer_confidence": "yes", "answer_id": i + 1} for i, a in enumerate(given)]


def write_tiny_benchmarks(root: str | Path) -> Path:
    """Write VQAv2, ScienceQA, TextVQA, POPE, MME, MMBench and GQA tiny copies under ``root``."""
    from datasets import Features, Sequence, Value
    from datasets import Image as ImageFeature

    root = Path(root)
    root.mkdir(parents=True, exist_ok=True)
    photos = _photos()

    # VQAv2 (lmms-lab/VQAv2, config default): validation is scored locally, test feeds EvalAI.
    vqa_features = Features(
        {
            "question_type": Value("string"),
            "multiple_choice_answer": Value("string"),
            "answers": [{"answer": Value("string"), "answer_confidence": Value("string"), "answer_id": Value("int64")}],
            "image_id": Value("int64"),
            "answer_type": Value("string"),
            "question_id": Value("int64"),
            "question": Value("string"),
            "image": ImageFeature(),
        }
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
            {
                "question_type": qtype,
                "multiple_choice_answer": answer,
                "answers": _vqa_answers(answer, alternatives),
                "image_id": i,
                "answer_type": atype,
                "question_id": 1000 + i,
                "question": question,
                "image": photos[name],
            }
            for i, (name, question, answer, alternatives, qtype, atype) in enumerate(validation)
        ],
        "test": [
            {
                "question_type": None,
                "multiple_choice_answer": None,
                "answers": None,
                "image_id": 100 + i,
                "answer_type": None,
                "question_id": 2000 + i,
                "question": question,
                "image": photos[name],
            }
            for i, (name, question) in enumerate(test)
        ],
    }
    _write(root, "VQAv2", "default", splits, vqa_features)

    # ScienceQA (lmms-lab/ScienceQA, config ScienceQA-IMG, split test).
    sqa_features = Features(
        {
            "image": ImageFeature(),
            "question": Value("string"),
            "choices": Sequence(Value("string")),
            "answer": Value("int8"),
            "hint": Value("string"),
            "task": Value("string"),
            "grade": Value("string"),
            "subject": Value("string"),
            "topic": Value("string"),
            "category": Value("string"),
            "skill": Value("string"),
            "lecture": Value("string"),
            "solution": Value("string"),
        }
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
    _write(root, "ScienceQA", "ScienceQA-IMG", {"test": rows}, sqa_features)

    # TextVQA (lmms-lab/textvqa, config default, split validation); OCR tokens as the dataset ships them.
    text_features = Features(
        {
            "image_id": Value("string"),
            "question_id": Value("int32"),
            "question": Value("string"),
            "question_tokens": Sequence(Value("string")),
            "image": ImageFeature(),
            "image_width": Value("int32"),
            "image_height": Value("int32"),
            "flickr_original_url": Value("string"),
            "flickr_300k_url": Value("string"),
            "answers": Sequence(Value("string")),
            "image_classes": Sequence(Value("string")),
            "set_name": Value("string"),
            "ocr_tokens": Sequence(Value("string")),
        }
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
    _write(root, "textvqa", "default", {"validation": rows}, text_features)

    # POPE (lmms-lab/POPE, config Full, splits adversarial / popular / random).
    pope_features = Features(
        {
            "id": Value("string"),
            "question_id": Value("string"),
            "question": Value("string"),
            "answer": Value("string"),
            "image_source": Value("string"),
            "image": ImageFeature(),
            "category": Value("string"),
        }
    )
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
    _write(root, "POPE", "Full", splits, pope_features)

    # MME (lmms-lab/MME, config default, split test): yes/no question pairs per image.
    mme_features = Features(
        {
            "question_id": Value("string"),
            "image": ImageFeature(),
            "question": Value("string"),
            "answer": Value("string"),
            "category": Value("string"),
        }
    )
    mme = [
        ("existence", "chelsea", "Is there a cat in this image?", "Is there a dog in this image?"),
        ("existence", "rocket", "Is there a rocket in this image?", "Is there a boat in this image?"),
        ("color", "coffee", "Is the cup in the image white?", "Is the cup in the image green?"),
        ("commonsense_reasoning", "clock", "Can this object tell the time?", "Can this object be eaten?"),
    ]
    rows = []
    for category, name, yes_question, no_question in mme:
        for question, answer in ((yes_question, "Yes"), (no_question, "No")):
            rows.append(
                {
                    "question_id": f"{category}/{name}.png",
                    "image": photos[name],
                    "question": f"{question} Please answer yes or no.",
                    "answer": answer,
                    "category": category,
                }
            )
    _write(root, "MME", "default", {"test": rows}, mme_features)

    # MMBench (lmms-lab/MMBench, config en, splits dev / test; no answers on test).
    mmb_features = Features(
        {
            "index": Value("int64"),
            "question": Value("string"),
            "hint": Value("string"),
            "answer": Value("string"),
            "A": Value("string"),
            "B": Value("string"),
            "C": Value("string"),
            "D": Value("string"),
            "category": Value("string"),
            "image": ImageFeature(),
            "source": Value("string"),
            "L2-category": Value("string"),
            "comment": Value("string"),
            "split": Value("string"),
        }
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
                "A": options[0],
                "B": options[1],
                "C": options[2],
                "D": options[3],
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
    _write(root, "MMBench", "en", splits, mmb_features)

    # GQA (lmms-lab/GQA): the instructions config with each question's image joined in an `image`
    # column (the Hub splits images into another config, which lmms-eval's task fetches from the Hub).
    gqa_features = Features(
        {
            "id": Value("string"),
            "imageId": Value("string"),
            "question": Value("string"),
            "answer": Value("string"),
            "fullAnswer": Value("string"),
            "isBalanced": Value("bool"),
            "image": ImageFeature(),
        }
    )
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
    _write(root, "GQA", "testdev_balanced_instructions", {"testdev": rows}, gqa_features)

    (root / "VERSION").write_text(TINY_BENCHMARKS_VERSION + "\n")
    return root


def tiny_benchmarks_current(root: str | Path) -> bool:
    """Whether ``root`` holds tiny benchmarks written by this version of the code."""
    stamp = Path(root) / "VERSION"
    return stamp.is_file() and stamp.read_text().strip() == TINY_BENCHMARKS_VERSION
