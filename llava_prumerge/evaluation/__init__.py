"""Evaluation through lmms-eval: ``lmms_eval_model`` (the registered model), ``plugin`` (its entry
point), ``tasks`` (the paper's benchmarks as lmms-eval tasks), ``rules`` (LLaVA-1.5's scoring rules
where lmms-eval differs), ``results`` (result folders → the paper's tables); for Table 3 ``video_tasks``
(local video QA tasks), ``judge`` (the GPT judge) and ``video_results`` (Table 3)."""
