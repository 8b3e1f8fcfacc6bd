"""`accelerate launch -m student --config FILE --out DIR [--report-to tensorboard] [--section.key=value ...]`: the
student stage, after whatever it needs (data, teachers, soft targets) when those are missing or stale.

    python -m student --config configs/smoke.yaml --out /tmp/smoke                     # CPU, one process
    accelerate launch --config_file accelerate_config.yaml -m student --config configs/bam-paper.yaml   # GPUs, bf16

Overrides are `--section.key=value` (e.g. --student.lr=2e-4); docs/configuration.md lists every key."""

import argparse
import sys

from pipeline.cli import add_run_arguments, main

parser = argparse.ArgumentParser(
    prog="python -m student", description=__doc__.split("\n\n")[0], epilog=__doc__.split("\n\n", 1)[1],
    formatter_class=argparse.RawDescriptionHelpFormatter,
)  # fmt: skip
add_run_arguments(parser, stage=False)
parser.parse_known_args()  # --help: this command's own
sys.exit(main(["run", "--stage", "student", *sys.argv[1:]]))
