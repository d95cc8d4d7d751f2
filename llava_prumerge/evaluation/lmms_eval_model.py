"""The ``llava_prumerge`` model for lmms-eval (0.7.3): LLaVA-1.5 / Video-LLaVA with token reduction, batched.

Registered through the ``lmms_eval.models`` entry point (see ``setup.py`` and
:mod:`llava_prumerge.evaluation.plugin`), so the stock harness finds it::

    accelerate launch -m lmms_eval --model llava_prumerge \\
        --model_args pretrained=llava-hf/llava-1.5-7b-hf,reduction=prumerge,batch_size=16 \\
        --tasks mme --output_path outputs/eval --log_samples

Evaluation protocol (LLaVA-1.5's ``model_vqa_loader.py``, which the released PruMerge code reuses):

- prompt: the ``vicuna_v1`` template, one turn,
  ``{system} USER: <image>\\n{task prompt} ASSISTANT:``; the task's own pre/post prompt (from
  lmms-eval's task YAML) is the question text, so lmms-eval's prompt and metric code is what runs;
- images padded to a square with the image processor's mean colour before the processor
  (LLaVA-1.5's ``image_aspect_ratio: pad``); ``image_aspect_ratio=crop`` gives the llava-hf
  processor's resize + centre crop instead;
- greedy decoding (``temperature 0``, one beam); the task's ``max_new_tokens`` unless the
  ``max_new_tokens`` model argument overrides it; the task's ``until`` strings cut the answer.

LLaVA-NeXT checkpoints (``model_type: llava_next``, e.g. ``llava-hf/llava-v1.6-vicuna-7b-hf``) load
:class:`~llava_prumerge.models.llava_next.LlavaNextPruMergeForConditionalGeneration` (every AnyRes
crop reduced; images not padded to a square). Video-LLaVA checkpoints (``model_type: video_llava``, e.g. ``LanguageBind/Video-LLaVA-7B-hf``; paper
Sec. 4.3) load :class:`~llava_prumerge.models.video_llava.VideoLlavaPruMergeForConditionalGeneration`.
A visual that is a file path is a video: ``num_frames`` (8) frames by Video-LLaVA's rule
(:func:`llava_prumerge.video.read_video`, PyAV), one ``<video>`` placeholder in the same
``vicuna_v1`` prompt (``USER: <video>\\n{question} ASSISTANT:``), as Video-LLaVA's
``run_inference_video_qa.py`` (there: 8 ``<image>`` frame placeholders, then ``\\n``).

Batches (``batch_size`` > 1) are left-padded and mix images freely: each image keeps its own
adaptive number of tokens. Answers equal batch size 1 (tested). With ``accelerate launch`` each
process loads its own copy on ``cuda:{local rank}`` and lmms-eval splits the requests by rank.

Per request the number of visual tokens fed to the language model is recorded
(``visual_token_records``) and, when ``visual_token_log`` is set, appended to that JSONL file
(one line per sample: task, doc_id, visual_tokens per image or video, and for videos
frame_tokens, the tokens of each frame); :mod:`llava_prumerge.evaluation.results`
turns it into per-task mean/min/max next to the scores. Beside the log, ``run_settings.json``
records what produced the results: the full resolved :class:`TokenReductionConfig`, the
checkpoint or the adapter (with its ``base_model.json``), dtype, batch size and process count.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import numpy as np
import torch
from lmms_eval import utils as lmms_utils
from lmms_eval.api.instance import Instance
from lmms_eval.api.model import lmms
from loguru import logger
from PIL import Image
from tqdm import tqdm

from ..config import TokenReductionConfig
from ..config import resolve_reduction as resolve_config
from ..conversation import IMAGE_TOKEN, VIDEO_TOKEN, generation_prompt
from ..images import pad_to_square
from ..models import model_class_for
from ..models.llava import LlavaPruMergeForConditionalGeneration
from ..models.video_llava import VideoLlavaPruMergeForConditionalGeneration
from ..training.checkpoints import BASE_MODEL_FILE, TOKEN_REDUCTION_FILE, load_finetuned
from ..video import DEFAULT_NUM_FRAMES, read_video
from .results import RUN_SETTINGS_FILE

DTYPES = {"float32": torch.float32, "float16": torch.float16, "bfloat16": torch.bfloat16}


def resolve_reduction(
    reduction: str | None, budget: int | None, base: TokenReductionConfig | None = None
) -> TokenReductionConfig | None:
    """The model arguments ``reduction``/``budget`` as a config (:func:`llava_prumerge.config.resolve_reduction`).

    ``None`` is returned when neither is given, so that an adapter keeps its saved reduction.
    """
    if reduction is None and budget is None:
        return None
    try:
        return resolve_config(reduction, budget, base)
    except (ValueError, FileNotFoundError) as error:
        raise ValueError(f"llava_prumerge: {error}") from error


def truncate_at_stops(text: str, until: list[str]) -> str:
    """Cut ``text`` at the first occurrence of any stop string (lmms-eval's ``until``)."""
    for stop in until:
        if stop:
            text = text.split(stop)[0]
    return text


def process_layout(device: str | None) -> tuple[int, int, torch.device]:
    """``(rank, world size, device)`` as lmms-eval's evaluator reads them (``RANK``/``WORLD_SIZE``/
    ``LOCAL_RANK`` from the launcher); accelerate's own state reports one process for a CPU launch,
    whose ranks would then share (and truncate) one visual-token log. ``cuda`` becomes each
    process's own ``cuda:{local rank}``."""
    rank, world_size = int(os.environ.get("RANK", 0)), int(os.environ.get("WORLD_SIZE", 1))
    if device in (None, "", "None"):
        device = "cuda" if torch.cuda.is_available() else "cpu"
    if world_size > 1 and str(device) == "cuda":
        device = f"cuda:{int(os.environ.get('LOCAL_RANK', 0))}"
    return rank, world_size, torch.device(device)


def resolve_dtype(dtype: str, device: torch.device) -> torch.dtype:
    """``auto`` is float16 on a GPU (LLaVA-1.5's evaluation) and float32 on the CPU."""
    if dtype == "auto":
        return torch.float16 if device.type == "cuda" else torch.float32
    if dtype in DTYPES:
        return DTYPES[dtype]
    raise ValueError(f"llava_prumerge: dtype={dtype!r}: expected auto or one of {sorted(DTYPES)}")


def load_model(
    pretrained: str,
    adapter: str | None,
    reduction: str | None,
    budget: int | str | None,
    dtype: torch.dtype,
    attn_implementation: str | None,
):
    """``(model, processor)``: a llava-hf (or Video-LLaVA-hf) checkpoint, or an adapter merged into its
    base; the reduction is ``reduction``/``budget`` if given, else the adapter's saved one, else PruMerge."""
    budget = None if budget in (None, "", "None") else int(budget)
    saved = None
    if adapter and (Path(adapter) / TOKEN_REDUCTION_FILE).is_file():
        saved = TokenReductionConfig.from_dict(json.loads((Path(adapter) / TOKEN_REDUCTION_FILE).read_text()))
    config = resolve_reduction(reduction, budget, base=saved)
    if adapter:
        return load_finetuned(
            adapter, token_reduction=config, dtype=dtype, attn_implementation=attn_implementation, merge=True
        )
    from transformers import AutoConfig, AutoProcessor

    model_type = AutoConfig.from_pretrained(pretrained).model_type
    model = model_class_for(model_type).from_pretrained(
        pretrained,
        token_reduction=config or TokenReductionConfig(),
        dtype=dtype,
        attn_implementation=attn_implementation,
    )
    processor = AutoProcessor.from_pretrained(pretrained)
    if model_type == "llava_next" and model.config.vision_feature_select_strategy == "default":
        if getattr(processor, "num_additional_image_tokens", 1) == 0:
            # LlavaNextProcessor's default; with a CLS tower the placeholders would be one short per view
            logger.warning("llava_prumerge: the processor had num_additional_image_tokens=0; using 1 (CLS tower)")
            processor.num_additional_image_tokens = 1
    return model, processor


class LlavaPruMerge(lmms):
    """lmms-eval model: :class:`LlavaPruMergeForConditionalGeneration` with batched greedy decoding.

    Model arguments (``--model_args k=v,...``; anything else is an error):

    - ``pretrained``: a llava-hf or Video-LLaVA-hf checkpoint (Hub id or local dir); ignored with ``adapter``,
      whose ``base_model.json`` names the base;
    - ``adapter``: a LoRA output directory of ``scripts/finetune_lora.sh``; its saved
      ``token_reduction.json`` is used unless ``reduction`` replaces it (``budget`` alone
      applies to the saved method). The LoRA weights are merged for inference;
    - ``reduction``: a method (``none``, ``prumerge``, ``prumerge_plus``, ``aits``, ``sequential``,
      ``spatial``), a YAML path, or a named config of ``llava_prumerge/configs/reduction/``; default PruMerge;
    - ``budget``: exactly this many visual tokens per image (the equal-budget comparisons);
    - ``batch_size``, ``device`` (default ``cuda`` when available), ``dtype`` (``auto`` =
      float16 on GPU, float32 on CPU; or ``float16``/``bfloat16``/``float32``),
      ``attn_implementation`` (``sdpa``, ``eager``, ``flash_attention_2``), ``max_new_tokens``
      (overrides the task's), ``image_aspect_ratio`` (``pad`` as LLaVA-1.5, or ``crop``),
      ``visual_token_log`` (a JSONL path for the per-sample visual-token counts), ``num_frames``
      (frames per video, 8 as Video-LLaVA).
    """

    is_simple = True

    def __init__(
        self,
        pretrained: str = "llava-hf/llava-1.5-7b-hf",
        adapter: str | None = None,
        reduction: str | None = None,
        budget: int | None = None,
        batch_size: int | str = 1,
        device: str | None = None,
        dtype: str = "auto",
        attn_implementation: str | None = None,
        max_new_tokens: int | None = None,
        image_aspect_ratio: str = "pad",
        visual_token_log: str | None = None,
        num_frames: int | str = DEFAULT_NUM_FRAMES,
        **unknown: Any,
    ) -> None:
        super().__init__()
        if unknown:
            raise ValueError(
                f"llava_prumerge: unknown model argument(s) {sorted(unknown)}; accepted: pretrained, adapter, "
                "reduction, budget, batch_size, device, dtype, attn_implementation, max_new_tokens, "
                "image_aspect_ratio, visual_token_log, num_frames"
            )
        if image_aspect_ratio not in ("pad", "crop"):
            raise ValueError(f"llava_prumerge: image_aspect_ratio={image_aspect_ratio!r}: expected 'pad' or 'crop'")
        self.batch_size_per_gpu = int(batch_size)
        if self.batch_size_per_gpu < 1:
            raise ValueError(f"llava_prumerge: batch_size={batch_size!r} must be >= 1")
        self._rank, self._world_size, self._device = process_layout(device)
        torch_dtype = resolve_dtype(dtype, self._device)
        model, processor = load_model(pretrained, adapter, reduction, budget, torch_dtype, attn_implementation)
        self._model = model.to(self._device).eval()
        self.processor = processor
        self._tokenizer = processor.tokenizer
        self._tokenizer.padding_side = "left"
        self.max_new_tokens = None if max_new_tokens in (None, "", "None") else int(max_new_tokens)
        self.image_aspect_ratio = image_aspect_ratio
        self.num_frames = int(num_frames)
        if self.num_frames < 1:
            raise ValueError(f"llava_prumerge: num_frames={num_frames!r} must be >= 1")
        self.is_video_model = isinstance(self._model, VideoLlavaPruMergeForConditionalGeneration)
        self.pretrained = adapter or pretrained
        self.visual_token_records: list[dict[str, Any]] = []
        self.run_settings = self._run_settings(pretrained, adapter, torch_dtype, attn_implementation)
        self.visual_token_log = self._start_logs(visual_token_log)
        self._warned_sampling = False
        logger.info(
            f"llava_prumerge: {self.pretrained} on {self._device} ({torch_dtype}), "
            f"reduction {self._model.token_reduction.to_dict()}, batch size {self.batch_size_per_gpu}"
        )

    def _start_logs(self, visual_token_log: str | None) -> Path | None:
        """This process's visual-token log (``.rank{r}`` with several), emptied for this run, and the
        run's ``run_settings.json`` beside it (written by rank 0)."""
        if not visual_token_log:
            return None
        path = Path(visual_token_log)
        if self._world_size > 1:
            path = path.with_name(f"{path.stem}.rank{self._rank}{path.suffix}")
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text("")  # one log per lmms-eval invocation: a re-run into the same folder starts afresh
        if self._rank == 0:
            (path.parent / RUN_SETTINGS_FILE).write_text(json.dumps(self.run_settings, indent=2) + "\n")
        return path

    def _run_settings(
        self, pretrained: str, adapter: str | None, dtype: torch.dtype, attn_implementation: str | None
    ) -> dict[str, Any]:
        """What produced this run's answers: the resolved reduction, the model, the adapter and its base."""
        from .. import __version__

        base_model = None
        if adapter and (Path(adapter) / BASE_MODEL_FILE).is_file():
            base_model = json.loads((Path(adapter) / BASE_MODEL_FILE).read_text())
        return {
            "token_reduction": self._model.token_reduction.to_dict(),
            "pretrained": None if adapter else pretrained,
            "adapter": str(Path(adapter).resolve()) if adapter else None,
            "base_model": base_model,
            "dtype": str(dtype).removeprefix("torch."),
            "attn_implementation": attn_implementation,
            "batch_size": self.batch_size_per_gpu,
            "processes": self._world_size,
            "image_aspect_ratio": self.image_aspect_ratio,
            "max_new_tokens": self.max_new_tokens,
            "num_frames": self.num_frames,
            "llava_prumerge_version": __version__,
        }

    @classmethod
    def create_from_arg_string(cls, arg_string: str, additional_config: dict | None = None) -> LlavaPruMerge:
        """As lmms-eval's, except that ``batch_size`` in ``--model_args`` wins over ``--batch_size``.

        lmms-eval always passes ``--batch_size`` (default 1), so the stock classmethod fails with
        "multiple values for batch_size" when the model arguments name it too.
        """
        args = lmms_utils.simple_parse_args_string(arg_string)
        extra = {k: v for k, v in (additional_config or {}).items() if v is not None}
        for key in set(args) & set(extra):
            if str(args[key]) != str(extra[key]):
                logger.info(f"llava_prumerge: {key}={args[key]} from --model_args overrides --{key} {extra[key]}")
            extra.pop(key)
        return cls(**args, **extra)

    # lmms-eval reads these
    @property
    def model(self) -> LlavaPruMergeForConditionalGeneration:
        return self._model

    @property
    def tokenizer(self):
        return self._tokenizer

    @property
    def batch_size(self) -> int:
        return self.batch_size_per_gpu

    @property
    def device(self) -> torch.device:
        return self._device

    @property
    def token_reduction(self) -> TokenReductionConfig:
        return self._model.token_reduction

    def loglikelihood(self, requests: list[Instance]) -> list[tuple[float, bool]]:
        raise NotImplementedError("llava_prumerge evaluates generation tasks only (LLaVA-1.5's benchmarks)")

    def generate_until_multi_round(self, requests) -> list[str]:
        raise NotImplementedError("llava_prumerge evaluates single-turn generation tasks only")

    # ------------------------------------------------------------------------------------------
    def _prepare_image(self, image: Image.Image) -> Image.Image:
        """LLaVA-1.5's pad to a square; LLaVA-NeXT's AnyRes takes the image as it is (its own
        crops and unpadding handle the aspect ratio), as its evaluation does."""
        model = getattr(self, "_model", None)
        anyres = model is not None and model.config.model_type == "llava_next"
        if self.image_aspect_ratio == "pad" and not anyres:
            return pad_to_square(image, self.processor)
        return image.convert("RGB")

    def build_prompt(self, context: str, num_images: int, num_videos: int = 0) -> str:
        """LLaVA-1.5's ``vicuna_v1`` prompt; the task's own ``<image>``/``<video>`` placement is kept
        if present, else the placeholders go first (videos, then images), each followed by a newline."""
        if IMAGE_TOKEN in context or VIDEO_TOKEN in context:
            return generation_prompt(context, num_images=0)
        return generation_prompt(context, placeholders=[VIDEO_TOKEN] * num_videos + [IMAGE_TOKEN] * num_images)

    def _generation_settings(self, gen_kwargs: dict[str, Any]) -> tuple[int, list[str]]:
        until = gen_kwargs.get("until", [])
        if isinstance(until, str):
            until = [until]
        if not isinstance(until, list):
            raise ValueError(f"gen_kwargs['until'] must be a string or a list, got {type(until).__name__}")
        if float(gen_kwargs.get("temperature", 0) or 0) > 0 or int(gen_kwargs.get("num_beams", 1) or 1) > 1:
            if not self._warned_sampling:
                logger.warning(
                    "llava_prumerge decodes greedily (LLaVA-1.5's protocol); the task's sampling/beam settings are ignored"
                )
                self._warned_sampling = True
        max_new_tokens = self.max_new_tokens or int(gen_kwargs.get("max_new_tokens", 128))
        return max_new_tokens, until

    def _load_visual(self, visual: Any, where: str) -> Image.Image | np.ndarray:
        """A PIL image as it is; a path is a video (``num_frames`` RGB frames ``[F, H, W, 3]``)."""
        if isinstance(visual, Image.Image):
            return visual
        if isinstance(visual, (str, Path)):
            if not self.is_video_model:
                raise ValueError(
                    f"llava_prumerge: {where}: a video ({visual}) needs a Video-LLaVA checkpoint, got "
                    f"{type(self._model).__name__}"
                )
            try:
                return read_video(visual, self.num_frames)
            except (FileNotFoundError, ValueError) as error:
                raise ValueError(f"llava_prumerge: {where}: {error}") from error
        raise ValueError(f"llava_prumerge: {where}: expected PIL images or video paths, got {type(visual).__name__}")

    @torch.inference_mode()
    def generate_batch(self, prompts: list[str], visuals: list[list[Image.Image | np.ndarray]], max_new_tokens: int):
        """Greedy answers and visual-token counts per prompt (``visuals[i]`` belongs to ``prompts[i]``:
        PIL images, or videos as ``[F, H, W, 3]`` frame arrays).

        Returns ``(texts, counts)``; ``counts[i]`` is ``(tokens per visual, tokens per frame of each
        video)`` for prompt ``i``, visuals in their order.
        """
        images = [self._prepare_image(v) for row in visuals for v in row if isinstance(v, Image.Image)]
        videos = [v for row in visuals for v in row if not isinstance(v, Image.Image)]
        extra = {"videos": videos} if videos else {}
        inputs = self.processor(text=prompts, images=images or None, return_tensors="pt", padding=True, **extra)
        inputs = inputs.to(self._device)
        for key in ("pixel_values", "pixel_values_images", "pixel_values_videos"):
            if key in inputs:
                inputs[key] = inputs[key].to(self._model.dtype)
        pad_id = (
            self._tokenizer.pad_token_id if self._tokenizer.pad_token_id is not None else self._tokenizer.eos_token_id
        )
        output = self._model.generate(
            **inputs,
            do_sample=False,
            num_beams=1,
            max_new_tokens=max_new_tokens,
            pad_token_id=pad_id,
            eos_token_id=self._tokenizer.eos_token_id,
            return_dict_in_generate=True,
        )
        new_tokens = output.sequences[:, inputs["input_ids"].shape[1] :]
        texts = self._tokenizer.batch_decode(new_tokens, skip_special_tokens=True)
        image_counts = getattr(output, "image_token_counts", getattr(output, "visual_token_counts", None))
        image_counts = iter([] if image_counts is None else image_counts.tolist())
        video_counts = getattr(output, "video_token_counts", None)
        video_counts = iter([] if video_counts is None else video_counts.tolist())
        frame_counts = getattr(output, "frame_token_counts", None)
        frame_counts = iter([] if frame_counts is None else frame_counts.tolist())
        per_prompt = []
        for row in visuals:
            totals, frames = [], []
            for visual in row:
                if isinstance(visual, Image.Image):
                    totals.append(next(image_counts))
                else:
                    totals.append(next(video_counts))
                    frames.append(next(frame_counts))
            per_prompt.append((totals, frames))
        return texts, per_prompt

    def generate_until(self, requests: list[Instance]) -> list[str]:
        """Answer lmms-eval's requests in batches of ``batch_size``, longest prompts first."""

        def sort_key(args):
            return -len(self._tokenizer.encode(args[0])), args[0]

        ordered = lmms_utils.Collator([request.args for request in requests], sort_key, grouping=True)
        chunks = ordered.get_batched(n=self.batch_size_per_gpu, batch_fn=None)
        progress = tqdm(total=len(requests), disable=self.rank != 0, desc="llava_prumerge answering")
        answers: list[str] = []
        for chunk in chunks:
            contexts, all_gen_kwargs, doc_to_visuals, doc_ids, tasks, splits = zip(*chunk)
            max_new_tokens, until = self._generation_settings(dict(all_gen_kwargs[0]))
            visuals = []
            for doc_to_visual, doc_id, task, split in zip(doc_to_visuals, doc_ids, tasks, splits):
                row = doc_to_visual(self.task_dict[task][split][doc_id]) or []
                visuals.append([self._load_visual(v, f"task {task} doc {doc_id}") for v in row])
            prompts = [
                self.build_prompt(
                    context,
                    num_images=sum(isinstance(v, Image.Image) for v in row),
                    num_videos=sum(not isinstance(v, Image.Image) for v in row),
                )
                for context, row in zip(contexts, visuals)
            ]
            texts, counts = self.generate_batch(prompts, visuals, max_new_tokens)
            for text, (totals, frames), context, gen_kwargs, doc_id, task in zip(
                texts, counts, contexts, all_gen_kwargs, doc_ids, tasks
            ):
                answer = truncate_at_stops(text, until).strip()
                answers.append(answer)
                self._record(task, doc_id, totals, frames)
                self.cache_hook.add_partial("generate_until", (context, gen_kwargs), answer)
            progress.update(len(chunk))
        progress.close()
        return ordered.get_original(answers)

    def _record(self, task: str, doc_id: int, counts: list[int], frames: list[list[int]] | None = None) -> None:
        record = {"task": task, "doc_id": int(doc_id), "visual_tokens": [int(c) for c in counts]}
        if frames:
            record["frame_tokens"] = [[int(c) for c in video] for video in frames]
        self.visual_token_records.append(record)
        if self.visual_token_log is not None:
            with self.visual_token_log.open("a") as handle:
                handle.write(json.dumps(record) + "\n")
