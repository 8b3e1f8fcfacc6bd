"""BAM! pipeline: born-again multitask distillation for BERT-family encoders."""

__version__ = "0.1.0"
