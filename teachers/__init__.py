"""Single-task teachers: fine-tuning (`train.py`) and the soft-target cache writer (`distill.py`)."""
