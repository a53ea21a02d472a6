#!/usr/bin/env bash
# The --full runs behind benchmarks/README.md's paper tables (2 Dask workers; logs in benchmarks/paper/logs).
set -u
cd "$(dirname "$0")/../.."
export OMP_NUM_THREADS=1
OUT=benchmarks/paper/results
for args in "paper-transfer --full" "paper-mzi --full" "paper-microring --full" "paper-freespace --full --seeds 3"; do
  name=${args%% *}
  /usr/bin/time -f "$name wall %e s" .venv/bin/labsat experiment $args --scheduler local --workers 2 --out $OUT \
    > benchmarks/paper/logs/$name.log 2>&1
done
