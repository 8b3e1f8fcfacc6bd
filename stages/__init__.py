"""One module per stage. Each declares `needs(cfg)` (upstream stages), `config_subset(cfg)` (the keys its
outputs depend on), `makes(cfg)` (paths under the run folder it rewrites) and `run(ctx)`; a stage that reads files
outside the run folder also declares `sources(cfg)` (their checksums, by path)."""

from stages import data, distill, evaluate, report, student, teachers

STAGES = {m.NAME: m for m in (data, teachers, distill, student, evaluate, report)}
