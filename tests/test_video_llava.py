"""Video-LLaVA with token reduction (paper Sec. 4.3): frames reduced as images, stock when ``none``."""

import numpy as np
import pytest
import torch
from transformers import VideoLlavaForConditionalGeneration

from llava_prumerge import TokenReductionConfig
from llava_prumerge.models.vision import reduce_encoded
from llava_prumerge.tiny.setting import demo_images
from llava_prumerge.tiny.video_llava import (
    TINY_VIDEO_FRAMES,
    build_tiny_video_model,
    build_tiny_video_processor,
)

PATCHES = 144  # the tiny towers: 48 px, patch 4
PROMPT = "USER: {}\nWhat happens? ASSISTANT:"


@pytest.fixture(scope="module")
def processor():
    return build_tiny_video_processor()


@pytest.fixture(scope="module")
def clips():
    """Three 8-frame clips of real photos: a pan across a photo, zoom-like crops, and a photo per frame."""
    photos = [np.asarray(image.resize((96, 72))) for image in demo_images()]
    pan = np.stack([photos[2][:, 4 * k : 4 * k + 64] for k in range(TINY_VIDEO_FRAMES)])
    crops = np.stack([photos[0][k : 64 + k, k : 64 + k] for k in range(TINY_VIDEO_FRAMES)])
    mixed = np.stack([photos[k % len(photos)][:64, :64] for k in range(TINY_VIDEO_FRAMES)])
    return [pan, crops, mixed]


def _inputs(processor, prompts, videos=None, images=None):
    return processor(text=prompts, videos=videos, images=images, return_tensors="pt", padding=True)


def _model(processor, reduction):
    return build_tiny_video_model(reduction, tokenizer=processor.tokenizer)


def _frames(processor, clip):
    return processor(text=PROMPT.format("<video>"), videos=[clip], return_tensors="pt")["pixel_values_videos"]


def test_none_is_bit_identical_to_the_stock_class(processor, clips):
    model = _model(processor, "none")
    stock = VideoLlavaForConditionalGeneration(model.config).eval()
    stock.load_state_dict(model.state_dict())
    photo = demo_images(("coffee",))
    inputs = _inputs(
        processor,
        [PROMPT.format("<video>"), PROMPT.format("<image>"), "USER: Say hello. ASSISTANT:"],
        videos=clips[:1],
        images=photo,
    )
    with torch.no_grad():
        assert torch.equal(model(**inputs).logits, stock(**inputs).logits)
    ours = model.generate(**inputs, max_new_tokens=4, do_sample=False, return_dict_in_generate=True)
    theirs = stock.generate(**inputs, max_new_tokens=4, do_sample=False)
    assert torch.equal(ours.sequences, theirs)
    assert ours.video_token_counts.tolist() == [TINY_VIDEO_FRAMES * (PATCHES + 1)]
    assert ours.image_token_counts.tolist() == [PATCHES]
    video_only = _inputs(processor, [PROMPT.format("<video>")], videos=clips[1:2])  # no image input at all
    ours = model.generate(**video_only, max_new_tokens=4, do_sample=False)
    assert torch.equal(ours, stock.generate(**video_only, max_new_tokens=4, do_sample=False))


REDUCTIONS = [
    TokenReductionConfig(method="prumerge"),
    TokenReductionConfig(method="prumerge_plus"),
    TokenReductionConfig(method="aits"),
    TokenReductionConfig(method="prumerge", budget=12, merge="mean", attention="per_head"),
    TokenReductionConfig(method="prumerge_plus", budget=17),
    TokenReductionConfig(method="sequential", budget=9),
    TokenReductionConfig(method="spatial", grid=(3, 4)),
    TokenReductionConfig(method="prumerge", keep_frame_cls=False),
]


@pytest.mark.parametrize("config", REDUCTIONS, ids=lambda c: f"{c.method}-{c.budget}-{c.keep_frame_cls}")
def test_each_frame_is_reduced_as_an_image_by_the_same_reducer(processor, clips, config):
    model = _model(processor, config)
    pixels = torch.cat([_frames(processor, clip) for clip in clips[:2]])  # [2, 8, 3, H, W]
    with torch.no_grad():
        features = model.get_video_features(pixel_values_videos=pixels)
        expected, frame_counts = [], []
        for frame in pixels.flatten(0, 1):  # one frame at a time, as an image
            reduced, cls = reduce_encoded(model.model.video_tower, frame[None], -2, config)
            tokens = reduced.tokens[0, : int(reduced.lengths[0])]
            if config.keep_frame_cls:
                tokens = torch.cat([cls, tokens])
            expected.append(model.model.multi_modal_projector(tokens))
            frame_counts.append(len(tokens))
    torch.testing.assert_close(features.pooler_output[0], torch.cat(expected), rtol=1e-5, atol=1e-5)
    assert features.frame_token_counts.flatten().tolist() == frame_counts
    assert features.token_counts.tolist() == [sum(frame_counts[:8]), sum(frame_counts[8:])]
    if config.output_count is not None:  # budgets are per frame, exact
        assert set(frame_counts) == {config.output_count + config.keep_frame_cls}


def test_adaptive_counts_differ_between_frames_and_follow_the_frame_content(processor, clips):
    model = _model(processor, "prumerge")
    with torch.no_grad():
        counts = model.get_video_features(pixel_values_videos=_frames(processor, clips[2])).frame_token_counts[0]
    assert len(set(counts.tolist())) > 1, counts  # eight different photos: eight different counts
    # the same photo in every frame gives the same count in every frame
    still = np.stack([clips[2][0]] * TINY_VIDEO_FRAMES)
    with torch.no_grad():
        same = model.get_video_features(pixel_values_videos=_frames(processor, still)).frame_token_counts[0]
    assert len(set(same.tolist())) == 1 and int(same[0]) == int(counts[0])


@pytest.mark.parametrize("scope", ["image", "video"])
def test_video_features_are_batch_invariant(processor, clips, scope):
    model = _model(processor, TokenReductionConfig(scope=scope))
    pixels = [_frames(processor, clip) for clip in clips]
    with torch.no_grad():
        together = model.get_video_features(pixel_values_videos=torch.cat(pixels))
        alone = [model.get_video_features(pixel_values_videos=p) for p in pixels]
    assert together.token_counts.tolist() == [int(a.token_counts[0]) for a in alone]
    torch.testing.assert_close(
        together.pooler_output[0], torch.cat([a.pooler_output[0] for a in alone]), rtol=1e-5, atol=1e-5
    )


def test_video_scope_uses_one_iqr_fence_per_video(processor, clips):
    model = _model(processor, TokenReductionConfig(scope="video"))
    pixels = torch.cat([_frames(processor, clip) for clip in clips])
    with torch.no_grad():
        features = model.get_video_features(pixel_values_videos=pixels)
    scores = features.cls_attention.double().numpy().reshape(len(clips), TINY_VIDEO_FRAMES, PATCHES)
    for video, frames in enumerate(scores):
        q1, q3 = np.percentile(frames, [25, 75])  # over all of the video's 8 x 144 scores
        fence = q3 + 1.5 * (q3 - q1)
        expected = np.maximum((frames > fence).sum(axis=1), 1)
        got = features.attentive_counts.view(len(clips), TINY_VIDEO_FRAMES)[video]
        assert got.tolist() == expected.tolist()
    per_frame = _model(processor, TokenReductionConfig(scope="image"))
    with torch.no_grad():
        frame_counts = per_frame.get_video_features(pixel_values_videos=pixels).attentive_counts
    assert not torch.equal(frame_counts, features.attentive_counts)  # the two fences really differ here


@pytest.mark.parametrize("reduction", ["prumerge_plus", "none"])
def test_one_placeholder_per_video_and_per_image_gives_the_same_logits(processor, clips, reduction):
    model = _model(processor, reduction)
    photo = demo_images(("rocket",))
    prompts = [PROMPT.format("<video>"), PROMPT.format("<image>")]
    tokenizer = processor.tokenizer
    tokenizer.padding_side = "right"  # both layouts padded on the same side
    expanded = _inputs(processor, prompts, videos=clips[:1], images=photo)
    single = tokenizer(prompts, return_tensors="pt", padding=True)
    assert int((single.input_ids == model.config.video_token_id).sum()) == 1
    with torch.no_grad():
        a = model(**expanded)
        b = model(
            input_ids=single.input_ids,
            attention_mask=single.attention_mask,
            pixel_values=expanded["pixel_values_images"],
            pixel_values_videos=expanded["pixel_values_videos"],
        )
    stock_mask = expanded["attention_mask"] if reduction == "none" else a.attention_mask  # none: the stock output
    assert torch.equal(stock_mask, b.attention_mask)
    attended = b.attention_mask.bool()  # padding positions carry no meaning (stock and re-laid differ there)
    torch.testing.assert_close(a.logits[attended], b.logits[attended], rtol=1e-5, atol=1e-5)
    assert b.video_token_counts.tolist() == b.frame_token_counts.sum(dim=1).tolist()


@pytest.mark.parametrize("reduction", ["prumerge", "prumerge_plus"])
def test_batched_greedy_generate_equals_one_by_one(processor, clips, reduction):
    model = _model(processor, reduction)
    photo = demo_images(("chelsea",))
    rows = [
        (PROMPT.format("<video>"), [clips[0]], None),
        ("USER: Say hello. ASSISTANT:", None, None),
        (PROMPT.format("<image>"), None, photo),
        ("USER: <video>\nAnd this one, what is it about? ASSISTANT:", [clips[1]], None),
    ]
    processor.tokenizer.padding_side = "left"
    batch = _inputs(
        processor,
        [r[0] for r in rows],
        videos=[v for r in rows if r[1] for v in r[1]],
        images=[i for r in rows if r[2] for i in r[2]],
    )
    settings = dict(max_new_tokens=6, do_sample=False, return_dict_in_generate=True)
    together = model.generate(**batch, **settings)
    new = together.sequences[:, batch["input_ids"].shape[1] :]
    video_counts = []
    for index, (prompt, videos, images) in enumerate(rows):
        alone = _inputs(processor, [prompt], videos=videos, images=images)
        out = model.generate(**alone, **settings)
        assert torch.equal(out.sequences[0, alone["input_ids"].shape[1] :], new[index]), prompt
        if videos:
            video_counts.append(int(out.video_token_counts[0]))
    assert together.video_token_counts.tolist() == video_counts
    assert torch.equal(together.sequences[:, : batch["input_ids"].shape[1]], batch["input_ids"])


def test_placeholder_count_mismatch_is_a_clear_error(processor, clips):
    model = _model(processor, "prumerge")
    inputs = _inputs(processor, [PROMPT.format("<video>")], videos=clips[:1])
    two = torch.cat([inputs["pixel_values_videos"]] * 2)
    with pytest.raises(ValueError, match="placeholder"):
        model(input_ids=inputs["input_ids"], attention_mask=inputs["attention_mask"], pixel_values_videos=two)


def test_reduction_saved_and_reloaded(processor, tmp_path):
    from llava_prumerge.models.video_llava import VideoLlavaPruMergeForConditionalGeneration

    model = _model(processor, TokenReductionConfig(method="prumerge_plus", scope="video", keep_frame_cls=False))
    model.save_pretrained(tmp_path)
    loaded = VideoLlavaPruMergeForConditionalGeneration.from_pretrained(tmp_path)
    assert loaded.token_reduction == model.token_reduction
    assert VideoLlavaPruMergeForConditionalGeneration.from_pretrained(
        tmp_path, token_reduction="none"
    ).token_reduction == TokenReductionConfig(method="none")
