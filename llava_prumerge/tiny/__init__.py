"""The embedded tiny setting, the README's default main job and the tests' fixture: ``setting`` (a
LLaVA-1.5-shaped model, tokenizer and processor built locally, real photos, a tiny dataset) and
``benchmarks`` (tiny local copies of the seven benchmarks in their Hub schemas)."""
