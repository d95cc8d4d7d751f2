"""LLaVA-1.5's ``vicuna_v1`` conversation template and its label masking.

Prompt (LLaVA ``conv_vicuna_v1``, ``SeparatorStyle.TWO``, ``sep=" "``, ``sep2="</s>"``)::

    <s>{system} USER: <image>\\n{q1} ASSISTANT: {a1}</s>USER: {q2} ASSISTANT: {a2}</s>

Labels: only the assistant answers and their closing ``</s>`` are supervised; the system line,
every ``USER: ...`` turn, every ``ASSISTANT:`` tag and the image placeholder are ``-100`` (as
LLaVA's ``preprocess_v1``). Masking works on character spans through the fast tokenizer's offset
mapping, so it does not depend on how a tokenizer splits the text around the separators.
"""

from __future__ import annotations

from dataclasses import dataclass

IGNORE_INDEX = -100
IMAGE_TOKEN = "<image>"
VIDEO_TOKEN = "<video>"
"""Video-LLaVA-hf's video placeholder (one per video; the processor expands it to ``F × (N + 1)``)."""
VICUNA_V1_SYSTEM = (
    "A chat between a curious user and an artificial intelligence assistant. "
    "The assistant gives helpful, detailed, and polite answers to the user's questions."
)
"""LLaVA's ``conv_vicuna_v1.system`` (``llava/conversation.py``), the template of LLaVA-1.5 training
(``--version v1``) and evaluation (``--conv-mode vicuna_v1``). The only definition in the package."""
ROLES = {"human": "USER", "gpt": "ASSISTANT"}


class MalformedSample(ValueError):
    """A sample that cannot be turned into a training example (the message says why)."""


@dataclass
class TokenizedConversation:
    input_ids: list[int]
    labels: list[int]


def normalise_turns(conversations: list[dict], num_images: int) -> list[tuple[str, str]]:
    """Check alternating human/gpt turns and put each ``<image>`` first in its own turn.

    As LLaVA-1.5's ``preprocess_multimodal`` (``llava/train/train.py``): a human turn that holds
    the placeholder loses it and gets it back at its front, ``"<image>\\n" + rest.strip()``. The
    turn keeps its place in the dialogue, so a placeholder written in a later turn stays in that
    turn (never a second copy in the first turn). A placeholder in an answer (``gpt`` turn) would
    be supervised as a token, so it is refused. Raises :class:`MalformedSample` for anything else.
    """
    if not isinstance(conversations, list) or not conversations:
        raise MalformedSample("'conversations' must be a non-empty list")
    turns = []
    for position, turn in enumerate(conversations):
        if not isinstance(turn, dict) or "from" not in turn or "value" not in turn:
            raise MalformedSample(f"turn {position} needs 'from' and 'value'")
        speaker, value = turn["from"], turn["value"]
        expected = "human" if position % 2 == 0 else "gpt"
        if speaker != expected:
            raise MalformedSample(f"turn {position} is from {speaker!r}, expected {expected!r} (turns must alternate)")
        if not isinstance(value, str):
            raise MalformedSample(f"turn {position} 'value' must be a string")
        if speaker == "gpt" and IMAGE_TOKEN in value:
            raise MalformedSample(f"turn {position} is an answer ('gpt') and holds '{IMAGE_TOKEN}'")
        turns.append((speaker, value))
    if len(turns) % 2:
        raise MalformedSample("the last turn must be from 'gpt'")
    placeholders = sum(value.count(IMAGE_TOKEN) for _, value in turns)
    if placeholders != num_images:
        raise MalformedSample(f"{placeholders} '{IMAGE_TOKEN}' placeholder(s) for {num_images} image(s)")
    for position, (speaker, value) in enumerate(turns):
        count = value.count(IMAGE_TOKEN)
        if count:
            turns[position] = (speaker, (IMAGE_TOKEN + "\n") * count + value.replace(IMAGE_TOKEN, "").strip())
    return turns


def render_vicuna_v1(turns: list[tuple[str, str]], system: str = VICUNA_V1_SYSTEM) -> tuple[str, list[tuple[int, int]]]:
    """The prompt text and the character spans ``[start, end)`` that are supervised."""
    text = system + " "
    supervised = []
    for speaker, value in turns:
        if speaker == "human":
            text += f"{ROLES['human']}: {value} "
        else:
            text += f"{ROLES['gpt']}:"
            start = len(text)
            text += f" {value}</s>"
            supervised.append((start, len(text)))
    return text, supervised


def generation_prompt(
    question: str, num_images: int = 1, system: str = VICUNA_V1_SYSTEM, placeholders: list[str] | None = None
) -> str:
    """The single-turn prompt used at evaluation: ``... USER: <image>\\n{q} ASSISTANT:``.

    ``placeholders`` (e.g. ``["<video>"]``) replaces the ``num_images`` image placeholders, each
    followed by a newline: Video-LLaVA's ``run_inference_video_qa.py`` writes its 8 frame
    placeholders then ``"\\n"`` and the question in the same ``llava_v1`` template.
    """
    visuals = [IMAGE_TOKEN] * num_images if placeholders is None else list(placeholders)
    return f"{system} {ROLES['human']}: " + "".join(v + "\n" for v in visuals) + f"{question} {ROLES['gpt']}:"


def tokenize_conversation(turns: list[tuple[str, str]], tokenizer, max_length: int) -> TokenizedConversation:
    """Tokenize with ``<s>`` first, mask everything but the answers, truncate to ``max_length``.

    Truncation keeps the beginning; it never cuts an image placeholder (one token per image
    here) because it refuses samples whose placeholders would not fit, and a sample left with no
    supervised token is refused too. Both raise :class:`MalformedSample`.
    """
    text, spans = render_vicuna_v1(turns)
    encoded = tokenizer(text, add_special_tokens=False, return_offsets_mapping=True)
    ids, offsets = list(encoded["input_ids"]), encoded["offset_mapping"]
    labels = []
    for token, (start, end) in zip(ids, offsets):
        inside = end > start and any(s <= start and end <= e for s, e in spans)
        labels.append(token if inside else IGNORE_INDEX)
    if tokenizer.bos_token_id is not None:
        ids, labels = [tokenizer.bos_token_id, *ids], [IGNORE_INDEX, *labels]
    image_id = tokenizer.convert_tokens_to_ids(IMAGE_TOKEN)
    if len(ids) > max_length:
        if image_id in ids[max_length:]:
            raise MalformedSample(f"an image placeholder falls beyond max_length={max_length}")
        ids, labels = ids[:max_length], labels[:max_length]
    if all(label == IGNORE_INDEX for label in labels):
        raise MalformedSample(f"no supervised token left within max_length={max_length}")
    return TokenizedConversation(ids, labels)
