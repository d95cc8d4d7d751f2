"""Prompts, labels and batched generation with LLaVA-1.5's real tokenizer (Llama 2 SentencePiece).

The checkpoint is the llava-hf-format fixture of ``tests/llava_hf_fixture.py`` (real tokenizer and
processor, narrow random model), loaded back through ``from_pretrained``. Expected ids are written
from LLaVA's rules (``llava/conversation.py`` ``conv_vicuna_v1``, ``llava/train/train.py``
``preprocess_multimodal``/``preprocess_v1``, ``llava/mm_utils.py`` ``tokenizer_image_token``).
"""

from __future__ import annotations

import pytest
import torch
from PIL import Image
from transformers import AutoProcessor

from llava_prumerge import LlavaPruMergeForConditionalGeneration, pad_to_square
from llava_prumerge.conversation import VICUNA_V1_SYSTEM, normalise_turns, tokenize_conversation
from llava_prumerge.evaluation.lmms_eval_model import LlavaPruMerge

# LLaVA's conv_vicuna_v1.system, copied from llava/conversation.py
SYSTEM = (
    "A chat between a curious user and an artificial intelligence assistant. "
    "The assistant gives helpful, detailed, and polite answers to the user's questions."
)
BOS, EOS, IMAGE, PAD, SPACE, NEWLINE = 1, 2, 32000, 32001, 29871, 13  # SPACE is the lone piece "▁"
ASSISTANT_TAG = ["▁A", "SS", "IST", "ANT", ":"]  # " ASSISTANT:" in Llama 2's pieces
IGNORE = -100


@pytest.fixture(scope="module")
def llava_processor(llava_hf_checkpoint):
    return AutoProcessor.from_pretrained(llava_hf_checkpoint)


@pytest.fixture(scope="module")
def llava_tokenizer(llava_processor):
    return llava_processor.tokenizer


@pytest.fixture(scope="module")
def llava_model(llava_hf_checkpoint):
    return LlavaPruMergeForConditionalGeneration.from_pretrained(llava_hf_checkpoint).eval()


def photo(name: str) -> Image.Image:
    from skimage import data

    array = getattr(data, name)()
    return Image.fromarray(array).convert("RGB")


def occurrences(ids: list[int], sub: list[int]) -> list[int]:
    return [i for i in range(len(ids) - len(sub) + 1) if ids[i : i + len(sub)] == sub]


def test_system_prompt_is_llavas_conv_vicuna_v1():
    assert VICUNA_V1_SYSTEM == SYSTEM


def test_checkpoint_has_llava_hf_special_tokens(llava_tokenizer, llava_model):
    assert len(llava_tokenizer) == 32002
    assert llava_tokenizer.convert_tokens_to_ids(["<unk>", "<s>", "</s>", "<image>", "<pad>"]) == [0, 1, 2, IMAGE, PAD]
    assert llava_tokenizer.pad_token == "<pad>" and llava_tokenizer.pad_token_id == PAD
    assert llava_tokenizer("Hello this is a test").input_ids == [BOS, 15043, 445, 338, 263, 1243]
    config = llava_model.config
    assert (config.image_token_id, config.text_config.pad_token_id) == (IMAGE, PAD)
    assert config.text_config.vocab_size == 32064
    assert (config.vision_config.image_size, config.vision_config.patch_size, config.image_seq_length) == (336, 14, 576)


def test_training_ids_and_labels_follow_llava(llava_tokenizer):
    """Ids are the whole prompt's; each answer from its first piece through ``</s>`` is one supervised run."""
    answers = ["There are 2 cats, both asleep.\nOne is grey.", "Red (dark red).", "Night: the lamp is on!"]
    conversations = [
        {"from": "human", "value": "How many cats are on the sofa?\n<image>"},
        {"from": "gpt", "value": answers[0]},
        {"from": "human", "value": "What colour is the sofa?"},
        {"from": "gpt", "value": answers[1]},
        {"from": "human", "value": "Is it day or night?"},
        {"from": "gpt", "value": answers[2]},
    ]
    prompt = (
        f"{SYSTEM} USER: <image>\nHow many cats are on the sofa? ASSISTANT: {answers[0]}</s>"
        f"USER: What colour is the sofa? ASSISTANT: {answers[1]}</s>"
        f"USER: Is it day or night? ASSISTANT: {answers[2]}</s>"
    )
    tokens = tokenize_conversation(normalise_turns(conversations, num_images=1), llava_tokenizer, max_length=4096)
    ids, labels = tokens.input_ids, tokens.labels

    # (i) the ids are the whole prompt tokenized at once, <s> first
    assert ids == llava_tokenizer(prompt).input_ids
    assert ids[0] == BOS

    # (ii) expected labels: for each answer, the run "▁<answer pieces> </s>" right after "ASSISTANT:".
    # Alone, SentencePiece gives an answer a leading "▁" on its first piece; inside the prompt that
    # "▁" is the space after "ASSISTANT:", so the standalone pieces are exactly the in-prompt ones.
    tag = llava_tokenizer.convert_tokens_to_ids(ASSISTANT_TAG)
    expected = [IGNORE] * len(ids)
    runs = []
    for answer in answers:
        run = llava_tokenizer(answer, add_special_tokens=False).input_ids + [EOS]
        (start,) = occurrences(ids, tag + run)
        start += len(tag)
        expected[start : start + len(run)] = run
        runs.append((start, start + len(run)))
        assert llava_tokenizer.decode(ids[start : start + len(run)], skip_special_tokens=False) == answer + "</s>"
    assert labels == expected
    # the first answer piece by piece: digits split off a lone "▁", "\n" by byte fallback, "</s>" last
    assert llava_tokenizer.convert_ids_to_tokens(ids[runs[0][0] : runs[0][1]]) == [
        "▁There", "▁are", "▁", "2", "▁c", "ats", ",", "▁both", "▁as", "leep", ".", "<0x0A>", "One", "▁is", "▁grey", ".",
        "</s>",
    ]  # fmt: skip
    supervised = [i for i, label in enumerate(labels) if label != IGNORE]
    assert supervised == [i for start, end in runs for i in range(start, end)]
    # nothing of the system line, "USER", "ASSISTANT" or ":" is supervised; "USER" follows each "</s>"
    for start, _ in runs:
        assert llava_tokenizer.convert_ids_to_tokens(ids[start - 5 : start]) == ASSISTANT_TAG
        assert labels[start - 5 : start] == [IGNORE] * 5
    for _, end in runs[:-1]:
        assert llava_tokenizer.convert_ids_to_tokens(ids[end : end + 2]) == ["USER", ":"]
    assert labels[: runs[0][0]] == [IGNORE] * runs[0][0]

    # (iii) one <image> (32000), unsupervised, after "USER: " and before the question's "\n"
    assert ids.count(IMAGE) == 1
    position = ids.index(IMAGE)
    assert labels[position] == IGNORE
    assert llava_tokenizer.convert_ids_to_tokens(ids[position - 4 : position + 3]) == [
        "▁US",
        "ER",
        ":",
        "▁",
        "<image>",
        "<0x0A>",
        "How",
    ]


def test_image_in_a_later_turn_moves_to_the_front_of_that_turn(llava_tokenizer):
    """LLaVA's ``preprocess_multimodal``: the turn holding ``<image>`` loses it and gets ``"<image>\\n"`` first."""
    conversations = [
        {"from": "human", "value": "Hello, can you help me?"},
        {"from": "gpt", "value": "Of course."},
        {"from": "human", "value": "What is in this photo? <image>"},
        {"from": "gpt", "value": "A rocket, ready for launch."},
    ]
    turns = normalise_turns(conversations, num_images=1)
    assert turns == [
        ("human", "Hello, can you help me?"),
        ("gpt", "Of course."),
        ("human", "<image>\nWhat is in this photo?"),
        ("gpt", "A rocket, ready for launch."),
    ]
    prompt = (
        f"{SYSTEM} USER: Hello, can you help me? ASSISTANT: Of course.</s>"
        "USER: <image>\nWhat is in this photo? ASSISTANT: A rocket, ready for launch.</s>"
    )
    tokens = tokenize_conversation(turns, llava_tokenizer, max_length=4096)
    assert tokens.input_ids == llava_tokenizer(prompt).input_ids
    assert tokens.input_ids.count(IMAGE) == 1
    position = tokens.input_ids.index(IMAGE)
    assert tokens.labels[position] == IGNORE
    assert llava_tokenizer.convert_ids_to_tokens(tokens.input_ids[position - 4 : position + 3]) == [
        "</s>",
        "USER",
        ":",
        "▁",
        "<image>",
        "<0x0A>",
        "What",
    ]


@pytest.mark.parametrize(
    "context",
    [
        # lmms-eval 0.7.3 pope.yaml: pre_prompt "", post_prompt "\nAnswer the question using a single word or phrase."
        "Is there a dog in the image?\nAnswer the question using a single word or phrase.",
        # lmms-eval 0.7.3 scienceqa_img (sqa_doc_to_text, format default): "Context: {hint}\n{question}\n"
        # + "A. ...\nB. ..." + "\nAnswer with the option's letter from the given choices directly."
        "Context: Figure: a garden.\nWhich animal is a mammal?\nA. a frog\nB. a fox\n"
        "Answer with the option's letter from the given choices directly.",
    ],
    ids=["pope", "sqa-img"],
)
def test_evaluation_prompt_token_by_token(llava_processor, llava_tokenizer, context):
    """The eval prompt against LLaVA's ``tokenizer_image_token`` splice, with 576 placeholders for the image.

    LLaVA tokenizes the text before and after ``<image>`` separately (each with SentencePiece's dummy
    prefix) and splices ``IMAGE_TOKEN_INDEX`` (-200) between them, dropping the second chunk's ``<s>``.
    Our ids (llava-hf's processor: the whole text at once, ``<image>`` a special token, ``legacy: false``)
    equal that splice with -200 expanded to 576 x 32000 EXCEPT right after the image: LLaVA's second
    chunk starts with the dummy-prefix piece "▁" (29871) before "\\n" (13); ours has no 29871 there,
    so our prompt is one token shorter and "\\n" follows the last image token directly.
    """
    prompt = f"{SYSTEM} USER: <image>\n{context} ASSISTANT:"
    assert LlavaPruMerge.build_prompt(None, context, 1) == prompt

    before, after = prompt.split("<image>")
    first, second = llava_tokenizer(before).input_ids, llava_tokenizer(after).input_ids
    assert first[0] == BOS and llava_tokenizer.convert_ids_to_tokens(first[-4:]) == ["▁US", "ER", ":", "▁"]
    assert second[:3] == [BOS, SPACE, NEWLINE]
    assert llava_tokenizer.convert_ids_to_tokens(second[-5:]) == ASSISTANT_TAG
    llava_splice = first + [-200] + second[1:]

    inputs = llava_processor(
        text=prompt, images=pad_to_square(photo("astronaut"), llava_processor), return_tensors="pt"
    )
    ours = inputs["input_ids"][0].tolist()
    assert tuple(inputs["pixel_values"].shape) == (1, 3, 336, 336)
    assert ours == first + [IMAGE] * 576 + second[2:]
    # the one difference from LLaVA: the "▁" (29871) LLaVA has right after the image
    image_at = llava_splice.index(-200)
    assert llava_splice[image_at + 1 : image_at + 3] == [SPACE, NEWLINE]
    assert ours[: image_at + 576] == llava_splice[:image_at] + [IMAGE] * 576
    assert ours[image_at + 576 :] == llava_splice[image_at + 2 :]


@pytest.mark.parametrize("method", ["prumerge", "none"])
def test_batched_greedy_generation_equals_one_by_one(llava_processor, llava_model, method):
    """Left-padded batch of 4 prompts/photos (several aspect ratios, padded square) vs each alone."""
    llava_model.set_token_reduction(method)
    questions = [
        "What is this?",
        "Describe the picture in one short sentence, please.",
        "Is there a cat?\nAnswer the question using a single word or phrase.",
        "Which colour dominates the image, and why do you think so? Give two reasons.",
    ]
    prompts = [LlavaPruMerge.build_prompt(None, question, 1) for question in questions]
    images = pad_to_square([photo(name) for name in ("astronaut", "coffee", "chelsea", "rocket")], llava_processor)
    settings = dict(do_sample=False, max_new_tokens=5, pad_token_id=PAD, return_dict_in_generate=True)

    batch = llava_processor(text=prompts, images=images, padding=True, padding_side="left", return_tensors="pt")
    assert tuple(batch["pixel_values"].shape) == (4, 3, 336, 336)
    assert (batch["input_ids"] == IMAGE).sum(dim=1).tolist() == [576] * 4
    assert len(set(batch["attention_mask"].sum(dim=1).tolist())) == 4  # four different lengths
    assert batch["attention_mask"][:, -1].tolist() == [1, 1, 1, 1]  # left padding
    with torch.no_grad():
        batched = llava_model.generate(**batch, **settings)
    new_batched = batched.sequences[:, batch["input_ids"].shape[1] :].tolist()
    batch_counts = batched.visual_token_counts.tolist()

    single_counts = []
    for prompt, image, row in zip(prompts, images, new_batched):
        single = llava_processor(text=[prompt], images=[image], return_tensors="pt")
        with torch.no_grad():
            alone = llava_model.generate(**single, **settings)
        new_alone = alone.sequences[0, single["input_ids"].shape[1] :].tolist()
        assert row[: len(new_alone)] == new_alone
        assert row[len(new_alone) :] == [PAD] * (5 - len(new_alone))  # stopped early at </s>
        single_counts += alone.visual_token_counts.tolist()

    assert batch_counts == single_counts
    if method == "none":
        assert batch_counts == [576] * 4
    else:
        assert all(0 < count < 576 for count in batch_counts)
        side = llava_model.config.vision_config.image_size // llava_model.config.vision_config.patch_size
        assert side == 24
