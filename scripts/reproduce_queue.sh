#!/usr/bin/env bash
# Run reproduce-glue calls one after another, one SEED:VARIANT each, into one OUT; every call resumes what an
# earlier one left, so the queue can be started again after a crash. Extra reproduce-glue options (precision,
# overrides) go in REPRO_ARGS, split at spaces (no value with a space). Run it from the repository's root. Example, one
# queue per core:
#   OMP_NUM_THREADS=1 OUT=artifacts/regression DATA=PATH_TO_GLUE REPRO_ARGS="--model.precision=bf16" \
#       scripts/reproduce_queue.sh 1:standardised-0.6 1:multi
set -euo pipefail
: "${OUT:?set OUT to the --out of reproduce-glue}" "${DATA:?set DATA to the GLUE folder}"
PYTHON="${PYTHON:-python}"
for item in "$@"; do
    if [[ "$item" != *:* ]]; then echo "reproduce_queue.sh: '$item' is not SEED:VARIANT" >&2; exit 2; fi
    seed="${item%%:*}"; variant="${item#*:}"
    echo "== $(date -u '+%F %T') seed $seed $variant"
    # shellcheck disable=SC2086
    "$PYTHON" -m pipeline reproduce-glue --config "${CONFIG:-configs/glue-small.yaml}" --data-dir "$DATA" \
        --seeds "${SEEDS:-3}" --only-seeds "$seed" --variants "$variant" --out "$OUT" ${REPRO_ARGS:-}
done
echo "== $(date -u '+%F %T') queue done"
