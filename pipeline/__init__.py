"""BAM! pipeline: born-again multitask distillation for BERT-family encoders."""

__version__ = "0.1.0"
__all__ = ["load_student"]


def __getattr__(name: str):
    # `from pipeline import load_student` loads torch and transformers on first use only, so that importing any
    # module of the package (the CLI's --help, the config) stays light.
    if name == "load_student":
        from pipeline.core.predict import load_student

        return load_student
    raise AttributeError(f"module 'pipeline' has no attribute {name!r}")
