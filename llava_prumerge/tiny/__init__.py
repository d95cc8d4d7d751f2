"""The embedded tiny settings. ``scenes`` + ``testbed``: the trained testbed, the README's default
main job (synthetic scenes and questions, a tiny CLIP pretrained on them, the start point of the
LLaVA recipe). ``setting`` (a random-weight LLaVA-1.5-shaped model, tokenizer and processor built
locally, real photos, a tiny dataset), ``benchmarks`` (tiny local copies of the seven benchmarks in
their Hub schemas), ``llava_next``, ``video_llava``, ``videos``: the tests' fixtures and the
pipeline on random weights."""
