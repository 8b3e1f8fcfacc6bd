"""The multitask student: task sampler (`sampling.py`), annealed loss (`loss.py`), training loop (`train.py`), and
the options' PCGrad (`pcgrad.py`) and adversarial training (`adversarial.py`).

accelerate launch --config_file accelerate_config.yaml -m student --config configs/bam-paper.yaml    # GPUs, bf16
"""
