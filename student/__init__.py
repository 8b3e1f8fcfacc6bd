"""The multitask student: the BAM training loop (`train.py`) and its options, one module each (`options/`).

accelerate launch --config_file accelerate_config.yaml -m student --config configs/bam-paper.yaml    # GPUs, bf16
"""
