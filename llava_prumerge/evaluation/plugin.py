"""lmms-eval registration: the ``lmms_eval.models`` entry point names this manifest.

Kept separate from :mod:`llava_prumerge.evaluation.lmms_eval_model` so that lmms-eval can list models
without importing torch-heavy code; the class is imported only when ``--model llava_prumerge`` runs.
"""

from lmms_eval.models.registry_v2 import ModelManifest

MANIFEST = ModelManifest(
    model_id="llava_prumerge",
    simple_class_path="llava_prumerge.evaluation.lmms_eval_model.LlavaPruMerge",
)
