#!/usr/bin/env bash
# The runs behind benchmarks/README.md's paper tables (2 Dask workers; logs in benchmarks/paper/logs).
# Cut from --full (5 evaluation chips x 3 seeds, the paper's epochs) to 5 chips x 1 seed (microring 2 chips) and fewer epochs
# (MZI 40 -> 10, microring 20 -> 10, free space 20 -> 5) to fit a shared 2-core machine (load ~15).
# The sweep store makes a longer run extend this one: --seeds 3 computes only the missing seeds.
set -u
cd "$(dirname "$0")/../.."
export OMP_NUM_THREADS=1
OUT=benchmarks/paper/results
run() {
  name=$1; shift
  /usr/bin/time -f "$name wall %e s" .venv/bin/labsat experiment $name "$@" --scheduler local --workers 2 \
    --out $OUT > benchmarks/paper/logs/$name.log 2>&1
}
run paper-microring --chips 2 --seeds 1 --set epochs=10 --set offset_sigmas=0.08,0
run paper-transfer --chips 5 --seeds 1 --set epochs=10
run paper-mzi --chips 5 --seeds 1 --set epochs=10   # the same trained models (cache): own-chip table only
# free space ran beside the MZI runs, serially, into its own store:
# OMP_NUM_THREADS=1 .venv/bin/labsat experiment paper-freespace --seeds 1 --set epochs=5 --set d2nn_train=200 --set d2nn_test=200 --out benchmarks/paper/results/freespace
