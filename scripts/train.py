"""LoRA-finetune LLaVA-1.5 on reduced visual tokens. Launch through scripts/finetune_lora.sh:

    bash scripts/finetune_lora.sh                                   # configs/train/llava15_7b_lora.yaml
    bash scripts/finetune_lora.sh configs/train/tiny.yaml           # CPU, a couple of minutes
    deepspeed --num_gpus 8 scripts/train.py configs/train/llava15_7b_lora.yaml --token_reduction prumerge_plus
    accelerate launch --use_deepspeed --deepspeed_config_file configs/deepspeed/zero3.json \\
        --num_processes 8 scripts/train.py configs/train/llava15_7b_lora.yaml

Every setting is a field of ModelSettings, DataSettings, LoraSettings or PruMergeTrainingArguments
(``python scripts/train.py --help``); the YAML gives defaults and ``--key value`` overrides them.
"""

from llava_prumerge.training.run import run

if __name__ == "__main__":
    run()
