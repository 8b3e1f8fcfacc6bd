"""`python -m pipeline reproduce-glue`: the paper's comparison and ablations, over seeds, as one resumable command.

    python -m pipeline reproduce-glue --config configs/glue-small.yaml --data-dir ../shared/data/glue \\
        --seeds 3 --out results/repro
    python -m pipeline reproduce-glue ... --dry-run                  # the plan, what is done, the time it expects
    python -m pipeline reproduce-glue ... --variants single,multi,bam
    python -m pipeline reproduce-glue ... --seeds 1 --variants bam,summed,pcgrad,fgm,supcon   # multitask options
    python -m pipeline reproduce-glue ... --tune student.lr=5e-5,1e-4,2e-4   # each student variant tuned on dev
    python -m pipeline reproduce-glue ... --tune teachers.lr=2e-5,5e-5,1e-4  # each task's teacher tuned on dev
    python -m pipeline reproduce-glue ... --seeds 3 --only-seeds 2       # one seed of three; another process: 3
    python -m pipeline reproduce-glue --config configs/custom-tasks.yaml --seeds 1 --variants single,bam  # own tasks

Every (variant, seed) is an ordinary run folder, `OUT/runs/seed-<s>/<variant>/`, driven by the staged DAG, so a
killed call resumes where it stopped (finished runs are skipped, an interrupted student resumes from its checkpoint).
Teachers are trained once per seed in `OUT/runs/seed-<s>/teachers/` and hard-linked into each variant's folder.
Seed s sets `teachers.seed` and `student.seed`; the data (and SST-2's capped subset) are the same for every seed.
Several calls (processes, or machines sharing the folder) can fill one OUT with different seeds (`--only-seeds`) or
different variants of a seed: each claims its (seed, variant) runs (and the first seed, while tuning is pending,
with OUT/locks/tuning.lock until the choice is made) for its whole run (OUT/locks/, the kernel's locks, released
when the process ends, also when it dies); calls of one seed take turns on its shared stages (the first runs them,
the others wait, then find them done); results.json and OUT/tuning/ are rewritten under a lock of their own.

Writes OUT/results.json (every run's metrics, config, seed, wall time and where it ran, and the tasks' specs),
OUT/table.md (median over seeds per task with the min–max spread, gains over Single and Multi, paired t-tests across
seeds with Holm–Bonferroni over tasks), OUT/plots/scores.png and OUT/plots/training.png, and, when the GLUE folder has
test files, leaderboard submission files for the best variant in OUT/submission/.

The modules, each importing only those before it:

    variants.py   the variants, the tuning grids, the configs made from the seed's config (pure)
    folders.py    where each run lives; hard links between run folders; adopting a finished teacher
    results.py    run keys, results.json (finished runs survive their folders), OUT's locks
    choices.py    tuning records: whether one holds, what it chose, each run's config with the choice in it
    runs.py       one run: running it, its record once finished
    tuning.py     tuning on dev, one mechanism for the teachers and the student variants
    plan.py       --dry-run: the steps, what is done, the expected time
    stats.py      medians, gains, paired t-tests with Holm–Bonferroni
    table.py      table.md
    plots.py      plots/*.png
    run.py        reproduce(): the whole call; write_results()
"""
