"""Write the small generated sample files that configs/custom-tasks.yaml reads, beside this script.

    python examples/custom-tasks/generate.py
    python -m pipeline run --config configs/custom-tasks.yaml

Five-class review sentiment (CSV, some rows quoted), question-pair duplicates (TSV with an index column) and
sentence-pair similarity scored 0-5 (JSON Lines), from templates (`pipeline.core.synthetic.write_custom_examples`).
"""

from pathlib import Path

from pipeline.core.synthetic import write_custom_examples

if __name__ == "__main__":
    for path in write_custom_examples(Path(__file__).resolve().parent):
        print(f"wrote {path}")
