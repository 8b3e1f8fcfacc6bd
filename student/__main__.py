"""`accelerate launch -m student --config FILE --out DIR [--report-to tensorboard] [--section.key=value ...]`: the
student stage, after whatever it needs (data, teachers, soft targets) when those are missing or stale."""

import sys

from pipeline.cli import main

sys.exit(main(["run", "--stage", "student", *sys.argv[1:]]))
