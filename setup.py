"""Install: ``pip install -e ".[train,eval,dev]"`` (see README for the tested versions)."""

from setuptools import find_packages, setup

# Versions tested together (README, "Tested versions"), pinned so that a fresh install reproduces
# the tested environment. torch/torchvision are pinned too: an unpinned resolve picks the newest
# (CUDA) torch, a multi-GB download that this code was not tested with.
CORE = [
    "torch==2.14.1",
    "torchvision==0.29.1",
    "transformers==5.24.0",
    "tokenizers==0.23.3",
    "pillow==13.0.0",
    "numpy==2.4.6",
    "pyyaml==6.0.4",
    "scikit-image==0.26.0",  # real photos for the embedded demo and the tests
    "tqdm==4.70.1",
    "matplotlib==3.11.2",  # figures (scripts/visualize.py, scripts/benchmark.py)
]
EXTRAS = {
    "train": [
        "peft==0.21.2",
        "deepspeed==0.19.8",
        "accelerate==1.15.0",
        "datasets==5.2.0",
        "wandb==0.25.0",
    ],
    "eval": [
        "lmms-eval==0.7.3",
        "av==15.1.0",  # PyAV: video decoding for the Video-LLaVA tasks (llava_prumerge/video.py)
        "accelerate==1.15.0",
        "datasets==5.2.0",
        "filelock<4.3",
        "wandb==0.25.0",
    ],
    "dev": [
        "pytest==9.2.0",
        "ruff==0.17.6",
        # the real Llama-2 / Vicuna-v1.5 SentencePiece tokenizer in tests (shared/fixtures). 0.2.1: the
        # generated proto module of 0.2.2+ needs protobuf >= 7, and wandb 0.25 needs protobuf < 7
        "sentencepiece==0.2.1",
        "protobuf==6.33.6",
    ],
}

setup(
    name="llava-prumerge",
    version="0.1.0",
    description="PruMerge and PruMerge+ adaptive visual-token reduction for LLaVA-1.5 on Hugging Face transformers",
    long_description=open("README.md", encoding="utf-8").read(),
    long_description_content_type="text/markdown",
    license="Apache-2.0",
    python_requires=">=3.10",
    packages=find_packages(include=["llava_prumerge", "llava_prumerge.*"]),
    package_data={"llava_prumerge": ["configs/reduction/*.yaml"]},  # named reduction configs
    install_requires=CORE,
    extras_require=EXTRAS,
    # lmms-eval finds `--model llava_prumerge` through this group (lmms-eval >= 0.7: a ModelManifest).
    entry_points={"lmms_eval.models": ["llava_prumerge = llava_prumerge.evaluation.plugin:MANIFEST"]},
)
