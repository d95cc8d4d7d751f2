"""One-epoch LoRA finetuning on reduced visual tokens (paper Sec. 4.1), one concern per module:
``dataset`` (LLaVA-format samples → tokenized examples, bad-sample policy), ``collator``,
``sampler`` (modality/length grouping), ``validation`` (check a dataset before a run),
``checkpoints`` (start points, adapters), ``settings`` (recipe YAML + flags), ``trainer`` (the
``Trainer``), ``run`` (the entry point).

Imported by module (``from llava_prumerge.training.run import run``): this package's ``__init__``
imports nothing, so evaluation does not pay for training imports.
"""
