#!/usr/bin/env bash
# The --full runs behind benchmarks/README.md's paper tables (2 Dask workers; logs in benchmarks/paper/logs).
# Epochs are cut from the paper's (MZI 40 -> 10, microring 20 -> 10, free space 20 -> 5) to fit a shared 2-core machine.
set -u
cd "$(dirname "$0")/../.."
export OMP_NUM_THREADS=1
OUT=benchmarks/paper/results
run() {
  name=$1; shift
  /usr/bin/time -f "$name wall %e s" .venv/bin/labsat experiment $name --full "$@" --scheduler local --workers 2 \
    --out $OUT > benchmarks/paper/logs/$name.log 2>&1
}
run paper-transfer --set epochs=10
run paper-mzi --set epochs=10            # the same trained models (cache), own-chip table only
run paper-microring --set epochs=10
run paper-freespace --seeds 3 --set epochs=5 --set d2nn_train=200 --set d2nn_test=200
